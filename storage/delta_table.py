"""Delta tables committed by delta-rs from Parquet files written by anyone (Spark executors, pyarrow).

Why not ``format("delta")``: Delta's Spark JARs come from Maven, which is not reachable here, so the
writers produce plain Parquet and the driver commits the files atomically with delta-rs add/remove
actions. The result is a standard Delta table that any Delta reader opens.

A write goes through a :class:`Transaction`:

1. files are written under ``<table>/.staging/<txn_id>/`` (hidden: no reader looks there);
2. on commit they are moved to ``<table>/<col>=<value>/<txn_id>-<n>.parquet`` and one Delta commit
   adds them (and, for a replace, removes the partition's previous files);
3. the commit info carries ``sluice.txn_id`` and the caller's lineage (run ids, asset, git sha).

A writer killed at any point leaves the table at its previous version. Its leftovers (the staging
folder, moved-but-uncommitted files) are recognised by their txn id, which is neither committed nor
held by a live writer's lock, and deleted by the next write to the table. Files of older versions are
never touched, so reads at a pinned version keep working.

Each write targets exactly one partition (or the whole table when it is unpartitioned): that is what
makes "replace one crawl partition" a single atomic commit.

One module on purpose, though long: reading a pinned version, the add actions' statistics, the
clean-up of strays and the transaction all follow the one commit protocol above (txn-id file names,
the staging folder, the commit lock, purged versions); split, each part would have to know the
others' file layout.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, Schema
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions

from storage.tables import RESUME, STAGING  # the folder names live in the table contract
from storage.tables import TAKEDOWNS as _TAKEDOWNS

TAKEDOWNS_TABLE = _TAKEDOWNS.name
_TXN_FILE = re.compile(r"^([0-9a-f]{32})-\d+\.(?:[a-z0-9]+\.)?parquet$")


class LakehouseError(RuntimeError):
    pass


# ---- reading -------------------------------------------------------------------------------------


def table_exists(uri: str | Path) -> bool:
    return DeltaTable.is_deltatable(str(uri))


def open_table(uri: str | Path, version: int | None = None) -> DeltaTable:
    """A table, at ``version`` if given. An older version whose files a takedown purged cannot be
    read: that raises :class:`LakehouseError` naming the takedown (see :func:`check_not_purged`)."""
    try:
        dt = DeltaTable(str(uri), version=version)
    except TableNotFoundError as e:
        raise LakehouseError(f"no Delta table at {uri}") from e
    if version is not None:
        check_not_purged(uri, dt)
    return dt


def check_not_purged(uri: str | Path, dt: DeltaTable) -> None:
    """Refuse a pinned version that references files a takedown purged. Time travel must not
    bring removed documents back, and a version with files missing would be silently incomplete;
    so reading it fails and says which takedown, and from which version on the table reads again."""
    root = Path(uri)
    takedowns = root.parent / TAKEDOWNS_TABLE
    if root.name == TAKEDOWNS_TABLE or not DeltaTable.is_deltatable(str(takedowns)):
        return
    prefix = str(root.resolve()).rstrip("/") + "/"
    missing = [u for u in dt.file_uris() if not os.path.exists(u.replace("file://", "", 1))]
    if not missing:
        return
    culprits = []
    for r in DeltaTable(str(takedowns)).to_pyarrow_table().to_pylist():
        removed = json.loads(r.get("rows_removed") or "{}").get(root.name)
        if removed and removed.get("version", -1) > dt.version():
            culprits.append((removed["version"], r))
    if not culprits:
        raise LakehouseError(
            f"{root.name}@v{dt.version()}: {len(missing)} of its files are missing "
            f"(e.g. {missing[0].split(prefix, 1)[-1]}); it cannot be read"
        )
    v_after, r = max(culprits, key=lambda c: c[0])
    raise LakehouseError(
        f"{root.name}@v{dt.version()} can no longer be read: takedown {r['takedown_id']} ({r['reason']}"
        + (f", ticket {r['ticket']}" if r.get("ticket") else "")
        + f", {r['requested_at']}) purged {len(missing)} of its files so that "
        f"the removed documents cannot come back through time travel. Read version {v_after} or later."
    )


def current_version(uri: str | Path) -> int | None:
    return open_table(uri).version() if table_exists(uri) else None


@dataclass(frozen=True)
class DataFile:
    path: str  # absolute local path
    partition: dict[str, str | None]
    num_records: int | None
    size: int


def snapshot_files(uri: str | Path, version: int | None = None, partition: dict[str, str] | None = None) -> list[DataFile]:
    """The data files of a pinned table version, optionally of one partition."""
    dt = open_table(uri, version)
    actions = pa.table(dt.get_add_actions(flatten=False)).to_pylist()
    root = Path(uri)
    out = []
    for a in actions:
        pv = a.get("partition") or {}
        if partition and any(pv.get(k) != v for k, v in partition.items()):
            continue
        out.append(
            DataFile(
                path=str(root / a["path"]),
                partition=dict(pv),
                num_records=a.get("num_records"),
                size=a.get("size_bytes", 0),
            )
        )
    return out


def row_count(uri: str | Path, version: int | None = None, partition: dict[str, str] | None = None) -> int:
    """Rows of a version from the files' statistics (no scan)."""
    return sum(f.num_records or 0 for f in snapshot_files(uri, version, partition))


def read_arrow(
    uri: str | Path, version: int | None = None, partition: dict[str, str] | None = None, columns: list[str] | None = None
) -> pa.Table:
    """Small reads (gates, previews, tests) without Spark."""
    dt = open_table(uri, version)
    filters = [(k, "=", v) for k, v in (partition or {}).items()] or None
    return dt.to_pyarrow_table(partitions=filters, columns=columns)


def last_commit_info(uri: str | Path) -> dict[str, Any]:
    hist = open_table(uri).history(limit=1)
    return hist[0] if hist else {}


def commit_info(uri: str | Path, version: int) -> dict[str, Any]:
    """The ``sluice`` commit info of one version: runs, asset, code version, input versions."""
    for c in open_table(uri).history():
        if c.get("version") == version:
            meta = c.get("sluice") or {}
            return json.loads(meta) if isinstance(meta, str) else meta
    return {}


def committed_txn_ids(uri: str | Path) -> set[str]:
    ids = set()
    for c in open_table(uri).history():
        meta = c.get("sluice")
        if isinstance(meta, str):
            meta = json.loads(meta)
        if isinstance(meta, dict) and meta.get("txn_id"):
            ids.add(meta["txn_id"])
    return ids


# ---- statistics for add actions ------------------------------------------------------------------


def _stat_value(v: Any) -> Any:
    if isinstance(v, datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        return v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bytes):
        return None
    return v


def parquet_stats(path: str | Path) -> tuple[int, str, pa.Schema]:
    """numRecords / minValues / maxValues / nullCount from the Parquet footer (no data read).

    Min/max are kept for numbers, dates, timestamps and short strings only: Delta readers use them
    for data skipping, and a truncated string maximum would be wrong.
    """
    md = pq.ParquetFile(path).metadata
    schema = pq.read_schema(path)
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for ci in range(md.num_columns):
        name = md.schema.column(ci).path
        if "." in name:  # nested: leave out
            continue
        typ = schema.field(name).type
        ok_minmax = not (pa.types.is_binary(typ) or pa.types.is_large_binary(typ))
        lo = hi = None
        nc = 0
        for rg in range(md.num_row_groups):
            if md.row_group(rg).num_rows == 0:  # an empty row group has no statistics and holds nothing
                continue
            st = md.row_group(rg).column(ci).statistics
            if st is None:
                ok_minmax = False
                nc = None
                break
            if st.has_null_count and nc is not None:
                nc += st.null_count
            if st.has_min_max:
                lo = st.min if lo is None else min(lo, st.min)
                hi = st.max if hi is None else max(hi, st.max)
        if nc is not None:
            nulls[name] = nc
        if ok_minmax and lo is not None:
            if isinstance(lo, str) and (len(lo) > 64 or len(hi) > 64):
                continue
            lo, hi = _stat_value(lo), _stat_value(hi)
            if lo is not None and hi is not None:
                mins[name], maxs[name] = lo, hi
    stats = {"numRecords": md.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}
    return md.num_rows, json.dumps(stats, default=str), schema


# ---- writing -------------------------------------------------------------------------------------


def _lock_is_free(lock_path: Path) -> bool:
    """True when no live process holds the writer lock (the writer died or finished)."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def clean_strays(uri: str | Path, grace_seconds: float = 0.0) -> list[str]:
    """Delete what killed writers left behind; returns the deleted paths."""
    root = Path(uri)
    staging = root / STAGING
    removed: list[str] = []
    now = time.time()
    dead: set[str] = set()
    if staging.is_dir():
        for entry in staging.iterdir():
            txn = entry.name.split(".")[0]
            if entry.name.endswith(".lock"):
                continue
            if _lock_is_free(staging / f"{txn}.lock") and now - entry.stat().st_mtime >= grace_seconds:
                dead.add(txn)
    committed: set[str] | None = None
    if table_exists(root):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in ("_delta_log", STAGING, RESUME)]  # RESUME: GPU jobs' finished chunks
            for fn in filenames:
                m = _TXN_FILE.match(fn)
                if not m:
                    continue
                txn = m.group(1)
                if not _lock_is_free(staging / f"{txn}.lock"):
                    continue
                if committed is None:
                    committed = committed_txn_ids(root)
                p = Path(dirpath) / fn
                if txn not in committed and now - p.stat().st_mtime >= grace_seconds:
                    p.unlink()
                    removed.append(str(p))
    for txn in dead:
        shutil.rmtree(staging / txn, ignore_errors=True)
        removed.append(str(staging / txn))
        (staging / f"{txn}.lock").unlink(missing_ok=True)
    return removed


def _partition_dir(partition: dict[str, str]) -> str:
    from urllib.parse import quote

    return "/".join(f"{k}={quote(str(v), safe='')}" for k, v in partition.items())


@dataclass
class CommitResult:
    version: int
    rows: int
    files: int
    bytes: int
    removed_stray: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _commit_lock(root: Path):
    """One commit at a time per table on this file system. delta-rs's optimistic commit already
    refuses a second log entry for the same version, but two writers creating a new table, or
    replacing the same partition from the same snapshot, then fail half-way; taken in turn, each
    reads the version the other wrote, so a replace replaces and an append appends. (An object
    store needs delta-rs's own conditional put instead; see #14.)"""
    (root / STAGING).mkdir(parents=True, exist_ok=True)
    fd = os.open(root / STAGING / "commit.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class Transaction:
    """One atomic write of one partition. Use as a context manager::

    with Transaction(uri, partition={"crawl_id": c}, partition_by=["crawl_id"]) as txn:
        spark_df.write.parquet(txn.staging_uri)   # or txn.write_arrow(table)
        txn.commit(mode="replace", commit_info={...})
    """

    def __init__(
        self,
        uri: str | Path,
        partition: dict[str, str] | None = None,
        partition_by: list[str] | None = None,
        grace_seconds: float = 0.0,
    ) -> None:
        self.root = Path(uri).resolve()
        self.partition = dict(partition or {})
        self.partition_by = list(partition_by or list(self.partition))
        if set(self.partition) != set(self.partition_by):
            raise LakehouseError(
                f"a write targets one whole partition: got values for {sorted(self.partition)} "
                f"but the table is partitioned by {self.partition_by}"
            )
        self.txn_id = uuid.uuid4().hex
        self.staging_dir = self.root / STAGING / self.txn_id
        self._grace = grace_seconds
        self._lock_fd: int | None = None
        self.removed_stray: list[str] = []
        self._committed = False

    # context management: the lock marks this txn as alive for other writers' stray cleanup
    def __enter__(self) -> Transaction:
        (self.root / STAGING).mkdir(parents=True, exist_ok=True)
        self.removed_stray = clean_strays(self.root, self._grace)
        lock = self.root / STAGING / f"{self.txn_id}.lock"
        self._lock_fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self.staging_dir.mkdir(parents=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        # On success the staging folder is empty; on failure its files are garbage.
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            (self.root / STAGING / f"{self.txn_id}.lock").unlink(missing_ok=True)

    @property
    def staging_uri(self) -> str:
        return str(self.staging_dir / "data")

    def write_arrow(
        self, table: pa.Table | Iterable[pa.RecordBatch], schema: pa.Schema | None = None, max_rows_per_file: int = 1_000_000
    ) -> None:
        """Write Arrow data (without partition columns) into the staging area."""
        out = Path(self.staging_uri)
        out.mkdir(parents=True, exist_ok=True)
        if isinstance(table, pa.Table):
            batches: Iterable[pa.RecordBatch] = table.to_batches(max_chunksize=max_rows_per_file)
            schema = table.schema
        else:
            batches = table
        writer = None
        n = rows = 0
        for b in batches:
            if b.num_rows == 0 and writer is not None:
                continue
            if writer is None or rows >= max_rows_per_file:
                if writer is not None:
                    writer.close()
                writer = pq.ParquetWriter(out / f"part-{n:05d}.parquet", schema or b.schema, compression="zstd")
                n += 1
                rows = 0
            writer.write_batch(b)
            rows += b.num_rows
        if writer is not None:
            writer.close()

    def staged_files(self) -> list[Path]:
        """The Parquet files staged so far: exactly what a commit would publish."""
        return sorted(p for p in self.staging_dir.rglob("*.parquet") if p.is_file())

    def planned_paths(self) -> dict[Path, str]:
        """Each staged file and the path (relative to the table) a commit will give it."""
        part_dir = _partition_dir(self.partition)
        names = (f"{self.txn_id}-{i:05d}.parquet" for i in range(len(self.staged_files())))
        return {src: (f"{part_dir}/{n}" if part_dir else n) for src, n in zip(self.staged_files(), names)}

    def staged_rows(self) -> int:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.staged_files())

    def add_files(self, paths: Iterable[str | Path]) -> None:
        """Stage existing Parquet files (a GPU job's finished chunks): hard links where the file
        system allows, else copies, so the originals stay until the caller deletes them."""
        out = Path(self.staging_uri)
        out.mkdir(parents=True, exist_ok=True)
        for i, src in enumerate(paths):
            dst = out / f"part-{i:05d}.parquet"
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

    def quarantine(self, dest: str | Path, note: dict[str, Any]) -> Path:
        """Keep the staged files for audit instead of publishing them: moved to ``dest`` with a
        ``candidate.json`` saying why. The table does not change."""
        if self._committed:
            raise LakehouseError("transaction already committed")
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for i, src in enumerate(self.staged_files()):
            os.replace(src, dest / f"part-{i:05d}.parquet")
        payload = {
            **note,
            "table": self.root.name,
            "partition": self.partition,
            "txn_id": self.txn_id,
            "quarantined_at": datetime.now(UTC).isoformat(),
        }
        (dest / "candidate.json").write_text(json.dumps(payload, indent=1, default=str))
        self._committed = True  # nothing more may be done with this transaction
        return dest

    def commit(
        self,
        mode: str = "append",
        commit_info: dict[str, Any] | None = None,
        empty_schema: pa.Schema | None = None,
    ) -> CommitResult:
        """Move staged files into place and commit them in one Delta transaction.

        ``mode="replace"`` removes the target partition's previous files in the same commit, so
        re-running a partition is idempotent. ``empty_schema`` is the data schema to use when the
        write produced no file (an empty partition is still a committed, versioned state).
        """
        if mode not in ("append", "replace"):
            raise LakehouseError(f"unknown write mode {mode!r}")
        if self._committed:
            raise LakehouseError("transaction already committed")
        with _commit_lock(self.root):
            return self._commit(mode, commit_info, empty_schema)

    def _commit(self, mode: str, commit_info: dict[str, Any] | None, empty_schema: pa.Schema | None) -> CommitResult:
        part_dir = _partition_dir(self.partition)
        dest_dir = self.root / part_dir if part_dir else self.root
        dest_dir.mkdir(parents=True, exist_ok=True)
        adds: list[AddAction] = []
        data_schema: pa.Schema | None = None
        rows = size = 0
        now_ms = int(time.time() * 1000)
        for src, rel in self.planned_paths().items():
            n, stats, schema = parquet_stats(src)
            if data_schema is None:
                data_schema = schema
            elif not schema.equals(data_schema, check_metadata=False):
                raise LakehouseError(f"staged files disagree on schema: {src.name}")
            dst = self.root / rel
            os.replace(src, dst)
            fsize = dst.stat().st_size
            adds.append(AddAction(rel, fsize, {k: str(v) for k, v in self.partition.items()}, now_ms, True, stats))
            rows += n
            size += fsize
        if data_schema is None:
            if empty_schema is None:
                if not table_exists(self.root):
                    raise LakehouseError("nothing was written and the table does not exist yet: pass empty_schema")
                data_schema = None
            else:
                data_schema = empty_schema
        table_schema = self._table_schema(data_schema)
        info = {"sluice": {**(commit_info or {}), "txn_id": self.txn_id, "rows": rows, "partition": self.partition}}
        props = CommitProperties(custom_metadata=info)
        if not table_exists(self.root):
            create_table_with_add_actions(
                str(self.root),
                Schema.from_arrow(table_schema),
                adds,
                mode="append",
                partition_by=self.partition_by or None,
                commit_properties=props,
            )
        else:
            dt = DeltaTable(str(self.root))
            if self.partition_by != list(dt.metadata().partition_columns):
                raise LakehouseError(f"{self.root.name} is partitioned by {dt.metadata().partition_columns}, not {self.partition_by}")
            filters = [(k, "=", str(v)) for k, v in self.partition.items()] or None
            dt.create_write_transaction(
                adds,
                mode="overwrite" if mode == "replace" else "append",
                schema=Schema.from_arrow(table_schema),
                partition_by=self.partition_by or None,
                partition_filters=filters if mode == "replace" else None,
                commit_properties=props,
            )
        self._committed = True
        return CommitResult(DeltaTable(str(self.root)).version(), rows, len(adds), size, self.removed_stray)

    def _table_schema(self, data_schema: pa.Schema | None) -> pa.Schema:
        if data_schema is None:
            return DeltaTable(str(self.root)).schema().to_arrow()  # type: ignore[return-value]
        fields = [f for f in data_schema if f.name not in self.partition_by]
        fields += [pa.field(c, pa.string()) for c in self.partition_by]
        return pa.schema(fields)
