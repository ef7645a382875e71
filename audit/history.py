"""Time travel: a table's versions (``sluice tables --history``), a table read at a version or a
time, and what changed between two versions (``sluice diff``) — by row key, grouped by partition
and reason, with the commits (runs, code versions) in between.

A partition rewrite replaces every file of the partition, so file-level differences overstate the
change; the diff compares row keys of the files that differ between the two versions instead.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from audit.lake import TableLog
from storage import tables as T
from storage.delta_table import LakehouseError, open_table


def history(root: str | Path, table: str) -> list[dict[str, Any]]:
    """One entry per version: when, operation, asset, partition, runs, code, rows added/removed."""
    log = TableLog(table, Path(root) / table)
    if not log.commits:
        raise LakehouseError(f"no Delta table {table!r} in {root}")
    out = []
    for v, c in sorted(log.commits.items()):
        adds, removes = log.actions[v]
        part = c.info.get("dagster_partition") or c.info.get("partition")
        if isinstance(part, dict):
            part = "/".join(f"{k}={val}" for k, val in part.items()) or None
        out.append(
            {
                "version": v,
                "time": datetime.fromtimestamp(c.timestamp_ms / 1000, tz=UTC).isoformat(timespec="seconds"),
                "operation": c.operation,
                "asset": c.info.get("asset") or ("takedown" if c.info.get("takedown_id") else None),
                "partition": part,
                "dagster_run_id": c.info.get("dagster_run_id"),
                "mlflow_run_id": c.info.get("mlflow_run_id"),
                "code_version": c.info.get("code_version"),
                "takedown_id": c.info.get("takedown_id"),
                "rows_added": sum(log.rows_of.get(a["path"], 0) for a in adds),
                "rows_removed": sum(log.rows_of.get(r["path"], 0) for r in removes),  # a remove action has no statistics
                "files_added": len(adds),
                "files_removed": len(removes),
            }
        )
    return out


def version_at(root: str | Path, table: str, when: datetime) -> int:
    """The version current at ``when`` (the last commit at or before it)."""
    log = TableLog(table, Path(root) / table)
    ts = when.timestamp() * 1000
    before = [v for v, c in log.commits.items() if c.timestamp_ms <= ts]
    if not before:
        first = min(log.commits.values(), key=lambda c: c.version) if log.commits else None
        raise LakehouseError(
            f"{table} did not exist at {when.isoformat()}"
            + (f" (its first version is from {datetime.fromtimestamp(first.timestamp_ms / 1000, tz=UTC).isoformat()})" if first else "")
        )
    return max(before)


def read_version(
    root: str | Path,
    table: str,
    version: int | None = None,
    when: datetime | None = None,
    columns: list[str] | None = None,
    where: dict[str, str] | None = None,
    limit: int | None = None,
) -> tuple[pa.Table, int]:
    """A table at a version (or at a time): filtered by equality on ``where``, at most ``limit`` rows."""
    import pyarrow.dataset as ds

    if when is not None:
        version = version_at(root, table, when)
    # a version is checked against the takedowns when opened (storage.delta_table.check_not_purged)
    dt = open_table(Path(root) / table, version)
    d = dt.to_pyarrow_dataset()
    expr = None
    for k, v in (where or {}).items():
        e = ds.field(k) == v
        expr = e if expr is None else expr & e
    t = d.to_table(columns=columns, filter=expr) if limit is None else d.head(limit, columns=columns, filter=expr)
    return t, dt.version()


def _key_table(root: Path, files: list[str], keys: list[str], group: str | None, parts: list[str]) -> pa.Table:
    cols = list(dict.fromkeys(keys + ([group] if group else [])))
    tables = []
    for f in files:
        path = root / f
        t = pq.read_table(path, columns=[c for c in cols if c in pq.read_schema(path).names])
        # partition values live in the path (hive style), not in the file
        for seg in Path(f).parent.parts:
            k, _, v = seg.partition("=")
            if k in parts:
                t = t.append_column(k, pa.array([v] * t.num_rows, pa.string()))
        tables.append(t)
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({c: pa.array([], pa.string()) for c in cols + parts})


def diff(root: str | Path, table: str, v1: int, v2: int) -> dict[str, Any]:
    """Rows added and removed from ``v1`` to ``v2``, by partition and by reason (or source), and the
    commits in between."""
    root = Path(root)
    if table not in T.TABLES:
        raise LakehouseError(f"unknown table {table!r}; tables: {', '.join(T.TABLES)}")
    a, b = open_table(root / table, v1), open_table(root / table, v2)  # each refuses a purged version
    fa, fb = set(a.file_uris()), set(b.file_uris())
    prefix = str((root / table).resolve()).rstrip("/") + "/"
    rel = lambda uris: sorted(u.replace("file://", "").split(prefix, 1)[-1] for u in uris)  # noqa: E731
    spec = T.TABLES[table]
    keys = list(spec.row_key)  # what tells rows apart, and what changes are counted by: the table contract's
    group = spec.group_by
    parts = list(spec.partition_by)
    old = _key_table(root / table, rel(fa - fb), keys, group, parts)
    new = _key_table(root / table, rel(fb - fa), keys, group, parts)
    idx = parts + keys

    def key_set(t: pa.Table) -> dict[tuple, dict]:
        return {tuple(r[c] for c in idx): r for r in t.to_pylist()}

    ko, kn = key_set(old), key_set(new)
    added = [kn[k] for k in kn.keys() - ko.keys()]
    removed = [ko[k] for k in ko.keys() - kn.keys()]

    def grouped(rows: list[dict]) -> dict[str, dict[str, int]]:
        out: dict[str, Counter] = {}
        for r in rows:
            p = "/".join(f"{c}={r.get(c)}" for c in parts) or "(table)"
            out.setdefault(p, Counter())[str(r.get(group)) if group else "rows"] += 1
        return {p: dict(c.most_common()) for p, c in sorted(out.items())}

    lo, hi = min(v1, v2), max(v1, v2)
    commits = [h for h in history(root, table) if lo < h["version"] <= hi]
    return {
        "table": table,
        "from_version": v1,
        "to_version": v2,
        "row_key": idx,
        "rows_added": len(added),
        "rows_removed": len(removed),
        "rows_unchanged_in_rewritten_files": len(ko.keys() & kn.keys()),
        "added": grouped(added),
        "removed": grouped(removed),
        "added_sample": sorted(str(r.get(keys[0])) for r in added)[:10],
        "removed_sample": sorted(str(r.get(keys[0])) for r in removed)[:10],
        "commits": commits,
    }


def render_history(table: str, rows: list[dict[str, Any]]) -> str:
    head = ("version", "time (UTC)", "operation", "asset", "partition", "dagster run", "code", "rows +", "rows -")
    body = [
        (
            str(r["version"]),
            r["time"].replace("+00:00", ""),
            r["operation"],
            str(r["asset"] or "-"),
            str(r["partition"] or "-"),
            str(r["dagster_run_id"])[:8] if r["dagster_run_id"] else (r.get("takedown_id") or "-"),
            str(r["code_version"] or "-"),
            str(r["rows_added"]),
            str(r["rows_removed"]),
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = [f"history of {table}:", "  ".join(h.ljust(w) for h, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in body]
    return "\n".join(lines)


def render_diff(d: dict[str, Any]) -> str:
    lines = [
        f"{d['table']} v{d['from_version']} → v{d['to_version']}: +{d['rows_added']} rows, -{d['rows_removed']} rows "
        f"(key {', '.join(d['row_key'])}; {d['rows_unchanged_in_rewritten_files']} rows rewritten unchanged)"
    ]
    for label in ("added", "removed"):
        for part, groups in d[label].items():
            lines.append(f"  {label:<7} {part}: " + ", ".join(f"{g} {n}" for g, n in groups.items()))
    lines.append("commits:")
    for c in d["commits"]:
        lines.append(
            f"  v{c['version']} {c['time']} {c['operation']} by {c['asset'] or '-'} / {c['partition'] or '-'}; dagster run "
            f"{c['dagster_run_id'] or '-'}, mlflow run {c['mlflow_run_id'] or '-'}, code {c['code_version'] or '-'}"
            + (f", takedown {c['takedown_id']}" if c.get("takedown_id") else "")
        )
    return "\n".join(lines)
