"""Read-only access to a lakehouse for audits: point lookups in any table at a version, and which
commit (and so which Dagster run, MLflow run and code version) wrote each data file.

Lookups go through delta-rs's PyArrow dataset with the predicate pushed down (partition pruning,
file and row-group statistics, then a column scan of ``doc_id``/``url`` only): no Spark, and the
text and HTML columns are never read unless asked for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from storage import tables as T
from storage.delta_table import open_table, table_exists


@dataclass(frozen=True)
class Commit:
    """One Delta commit: its version, time, operation and Sluice's lineage (runs, asset, code)."""

    table: str
    version: int
    timestamp_ms: int
    operation: str
    info: dict[str, Any]

    @property
    def runs(self) -> dict[str, Any]:
        keys = ("asset", "dagster_partition", "dagster_run_id", "mlflow_run_id", "code_version", "git_sha", "takedown_id")
        return {k: self.info[k] for k in keys if self.info.get(k) is not None}


def _log_entries(uri: Path) -> Iterable[tuple[int, list[dict[str, Any]]]]:
    log = uri / "_delta_log"
    for f in sorted(log.glob("*.json")):
        if f.stem.isdigit():
            yield int(f.stem), [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


class TableLog:
    """A table's commit history, and for each data file path the version that added it."""

    def __init__(self, name: str, uri: Path) -> None:
        self.name = name
        self.uri = uri
        self.commits: dict[int, Commit] = {}
        self.added_in: dict[str, int] = {}
        self.removed_in: dict[str, int] = {}
        self.rows_of: dict[str, int] = {}  # path -> rows (from its add action's statistics)
        self.actions: dict[int, tuple[list[dict], list[dict]]] = {}  # version -> (adds, removes)
        for version, entries in _log_entries(uri):
            adds, removes = [], []
            info: dict[str, Any] = {}
            for e in entries:
                if "add" in e:
                    adds.append(e["add"])
                    self.added_in[e["add"]["path"]] = version
                    try:
                        self.rows_of[e["add"]["path"]] = int(json.loads(e["add"].get("stats") or "{}").get("numRecords") or 0)
                    except (TypeError, ValueError):
                        pass
                elif "remove" in e:
                    removes.append(e["remove"])
                    self.removed_in[e["remove"]["path"]] = version
                elif "commitInfo" in e:
                    info = e["commitInfo"]
            meta = info.get("sluice") or {}
            meta = json.loads(meta) if isinstance(meta, str) else meta
            self.commits[version] = Commit(name, version, int(info.get("timestamp") or 0), str(info.get("operation") or ""), meta)
            self.actions[version] = (adds, removes)

    def commit_of_file(self, path: str) -> Commit | None:
        """The commit whose run wrote this file's rows: a file a takedown carried over unchanged
        (a hard link under a new name, see ``audit.takedown``) is followed to its original."""
        rel = path.split(str(self.uri).rstrip("/") + "/", 1)[-1]
        for _ in range(100):
            v = self.added_in.get(rel)
            c = self.commits.get(v) if v is not None else None
            if c is None or rel not in (c.info.get("carried") or {}):
                return c
            rel = c.info["carried"][rel]
        return None


class Lake:
    """The tables of one lakehouse folder, opened lazily and cached for one audit."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self._logs: dict[str, TableLog] = {}
        self._datasets: dict[tuple[str, int | None], tuple[ds.Dataset, int]] = {}

    @cached_property
    def tables(self) -> list[str]:
        return [n for n in T.TABLES if table_exists(self.root / n)]

    def has(self, table: str) -> bool:
        return table in self.tables

    def log(self, table: str) -> TableLog:
        if table not in self._logs:
            self._logs[table] = TableLog(table, self.root / table)
        return self._logs[table]

    def dataset(self, table: str, version: int | None = None) -> tuple[ds.Dataset, int]:
        """The table's files at a version as a plain PyArrow dataset (hive partitions). delta-rs's
        own dataset attaches every file's min/max of every column as a guarantee, which PyArrow then
        simplifies per file and per query: twice slower here, for no pruning on hashed ids."""
        key = (table, version)
        if key not in self._datasets:
            dt = open_table(self.root / table, version)
            files = [u.replace("file://", "", 1) for u in dt.file_uris()]
            schema = pa.schema(dt.schema().to_arrow())
            parts = list(dt.metadata().partition_columns)
            part = ds.partitioning(pa.schema([(p, pa.string()) for p in parts]), flavor="hive") if parts else None
            d = ds.dataset(files, schema=schema, format="parquet", partitioning=part, partition_base_dir=str(self.root / table))
            self._datasets[key] = (d, dt.version())
        return self._datasets[key]

    def find(
        self,
        table: str,
        column: str | dict[str, Iterable[str]],
        values: Iterable[str] = (),
        columns: list[str] | None = None,
        version: int | None = None,
    ) -> tuple[pa.Table, int | None]:
        """Rows of ``table`` whose ``column`` is one of ``values`` — or, with a dict, whose any
        column is one of its values (one scan) — with ``__filename``, and the version read; an
        empty table when the table does not exist."""
        wanted = column if isinstance(column, dict) else {column: values}
        if not self.has(table):
            return pa.table({}), None
        d, v = self.dataset(table, version)
        expr = None
        for col, vals in wanted.items():
            vals = sorted({x for x in vals if x})
            if col not in d.schema.names or not vals:
                continue
            e = ds.field(col) == vals[0] if len(vals) == 1 else ds.field(col).isin(vals)
            expr = e if expr is None else expr | e
        if expr is None:
            return pa.table({}), v
        cols = [c for c in (columns or d.schema.names) if c in d.schema.names and c != "html"]
        return d.to_table(columns=cols + ["__filename"], filter=expr), v

    def rows_with_commits(self, table: str, t: pa.Table) -> list[dict[str, Any]]:
        """Each row as a dict, with the commit that wrote its file (``_commit``)."""
        if not t.num_rows:
            return []
        log = self.log(table)
        out = []
        for r in t.to_pylist():
            c = log.commit_of_file(r.pop("__filename", ""))
            r["_commit"] = {"table": table, "version": c.version, **c.runs} if c else {"table": table}
            out.append(r)
        return out
