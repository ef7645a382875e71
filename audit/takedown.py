"""``sluice takedown``: remove a URL, a domain or a document — and everything derived from it —
from every table, every older version and every other file Sluice wrote; then refuse it at ingest.

1. **Closure.** The documents fetched from the URL (or domain, or the id), then what derives from
   them: rewrites (``rewritten.source_doc_id``), decontaminated and mixed rows (``source_doc_id``),
   until nothing new is found.
2. **Dedup promotion.** Where a removed document was the kept copy of a duplicate cluster, the
   best remaining member (the dedup keep policy: quality column, then earliest fetch, then id) is
   promoted: its `filtered` row enters `deduplicated`, its MinHash signature enters the index (so
   later crawls match against it, not the removed text), and the cluster's other rows point to it.
3. **Delete** the rows from the current version of every table, one Delta commit per table with
   the takedown id, reason and ticket in its commit info.
4. **Purge** every older data file of those tables that still holds one of the rows, and strip the
   statistics of the purged files from the Delta log: time travel to a version that needed them
   fails, naming the takedown (``storage.delta_table.check_not_purged``). Versions that did not
   hold the documents stay readable.
5. **Exports**: shards holding the documents are rewritten without them; the manifest records the
   takedown (documents and tokens removed per shard) and is flagged ``rebuild_required``.
6. **Scrub** every other file (``audit.scrub``): Dagster and MLflow databases, reports, logs,
   artifacts, quarantined candidates, GPU resume chunks, caches.
7. **Record** the takedown in the ``takedowns`` table (only hashes of URLs and ids), which ingest
   applies as a blocklist to later crawls (reason ``takedown``).
8. **Prove** it: no table's current version has a removed id, and no file holds the text.

One module on purpose, though long: the steps are one command whose order is its guarantee (a step
skipped or run out of order leaves a removed document readable somewhere), so they read top to
bottom in one place. The one step that is large on its own and knows nothing of tables, scrubbing
every other file, is ``audit.scrub``.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import DeltaTable

from audit import scrub
from audit.lake import Lake
from documents.blocklist import host_of, parent_domains, sha256_hex
from documents.minhash import DedupOptions, band_keys, exact_hashes, minhash, shingles, words
from documents.mixture import file_sha256
from storage import tables as T
from storage.delta_table import Transaction, current_version, snapshot_files, table_exists
from storage.export import write_jsonl_shard

# Derived from the table contract (``TableSpec.id_columns``, ``text_column``): which columns name a
# document in each table (a row goes when any of them is a removed id), and where the text is.
ID_COLUMNS: dict[str, tuple[str, ...]] = {t.name: t.id_columns for t in T.takedown_tables()}
TEXT_SOURCES: dict[str, str] = {t.name: t.text_column for t in T.takedown_tables() if t.text_column}


@dataclass
class Request:
    kind: str  # url | domain | doc_id
    value: str
    reason: str
    ticket: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("url", "domain", "doc_id"):
            raise ValueError(f"takedown kind must be url, domain or doc_id, not {self.kind!r}")
        self.value = self.value.strip()
        if self.kind == "domain":
            self.value = self.value.lower().strip(".")
        if not self.value:
            raise ValueError("nothing to take down: empty target")
        if not self.reason.strip():
            raise ValueError("a takedown needs a --reason")


@dataclass
class Promotion:
    cluster_of: str  # the removed kept document
    promoted: str  # the member that takes its place
    crawl_id: str
    members_left: int


@dataclass
class Plan:
    ids: set[str]
    urls: set[str]
    texts: list[str]
    crawls: set[str]
    promotions: list[Promotion] = field(default_factory=list)


def _scan(lake: Lake, table: str, expr: ds.Expression, columns: list[str]) -> pa.Table:
    if not lake.has(table):
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    d, _ = lake.dataset(table)
    cols = [c for c in columns if c in d.schema.names]
    return d.to_table(columns=cols, filter=expr)


def seed_ids(lake: Lake, req: Request) -> set[str]:
    """The documents the request names that the lakehouse holds (none: the takedown still goes on
    the blocklist, for crawls to come)."""
    ids: set[str] = set()
    if req.kind == "doc_id":
        # where a document first appears: a record (raw_crawl, or rejected at ingest) or a derived row
        for table in (T.RAW_CRAWL.name, T.REJECTIONS.name, *[t.name for t in T.derived_tables()]):
            if _scan(lake, table, ds.field("doc_id") == req.value, ["doc_id"]).num_rows:
                return {req.value}
        return ids
    # the documents fetched from the URL or domain, and derived rows that carry its URL (the closure
    # finds the rest of what derives from them)
    for table in (T.RAW_CRAWL.name, T.REJECTIONS.name, T.FILTERED.name, *[t.name for t in T.derived_tables()]):
        if req.kind == "url":
            t = _scan(lake, table, ds.field("url") == req.value, ["doc_id"])
        else:
            t = _scan(lake, table, ds.field("url").is_valid(), ["doc_id", "url"])
            if t.num_rows:
                hosts = [host_of(u) for u in t.column("url").to_pylist()]
                keep = [req.value in parent_domains(h) for h in hosts]
                t = t.filter(pa.array(keep))
        ids.update(x for x in t.column("doc_id").to_pylist() if x)
    return ids


def closure(lake: Lake, seed: set[str]) -> set[str]:
    """The seed and everything derived from it (rewrites, decontaminated and mixed rows)."""
    ids = set(seed)
    while True:
        new: set[str] = set()
        for table in [t.name for t in T.derived_tables()]:
            t = _scan(lake, table, ds.field(T.SOURCE_ID).isin(sorted(ids)), ["doc_id"])
            new.update(x for x in t.column("doc_id").to_pylist() if x and x not in ids)
        if not new:
            return ids
        ids |= new


def plan(lake: Lake, req: Request, keep_column: str | None) -> Plan:
    ids = closure(lake, seed_ids(lake, req))
    urls: set[str] = set()
    texts: list[str] = []
    crawls: set[str] = set()
    if ids:
        for table in (T.RAW_CRAWL.name, T.REJECTIONS.name):
            t = _scan(lake, table, ds.field("doc_id").isin(sorted(ids)), ["url", "crawl_id"])
            urls.update(u for u in t.column("url").to_pylist() if u)
            crawls.update(c for c in t.column("crawl_id").to_pylist() if c)
        for table, col in TEXT_SOURCES.items():
            t = _scan(lake, table, ds.field("doc_id").isin(sorted(ids)), [col, "url"])
            texts += [x for x in t.column(col).to_pylist() if x] if col in t.column_names else []
            if "url" in t.column_names:
                urls.update(u for u in t.column("url").to_pylist() if u)
    if req.kind == "url":
        urls.add(req.value)
    p = Plan(ids, urls, texts, crawls)
    p.promotions = promotions(lake, ids, keep_column)
    return p


def promotions(lake: Lake, ids: set[str], keep_column: str | None) -> list[Promotion]:
    """For each removed kept copy of a cluster, the best remaining member (the dedup keep policy)."""
    if not ids or not lake.has(T.DEDUPLICATED.name):
        return []
    # Members point to their kept copy from `rejections`, also across crawls (a later crawl's copy
    # of an earlier crawl's kept document; the earlier partition's cluster size never changes).
    dropped = _scan(
        lake, T.REJECTIONS.name, ds.field("related_doc_id").isin(sorted(ids)) & (ds.field("stage") == T.DEDUP), ["doc_id", "related_doc_id"]
    ).to_pylist()
    by_kept: dict[str, list[str]] = {}
    for r in dropped:
        if r["doc_id"] not in ids:
            by_kept.setdefault(r["related_doc_id"], []).append(r["doc_id"])
    out = []
    for kept_id, members in sorted(by_kept.items()):
        cols = ["doc_id", "warc_date", "crawl_id"] + ([keep_column] if keep_column else [])
        cand = _scan(lake, T.FILTERED.name, ds.field("doc_id").isin(members), cols).to_pylist()
        if not cand:
            continue
        best = sorted(cand, key=lambda r: (-(r.get(keep_column) or 0.0) if keep_column else 0.0, r["warc_date"], r["doc_id"]))[0]
        out.append(Promotion(kept_id, best["doc_id"], best["crawl_id"], len(members)))
    return out


# ---- writing ----------------------------------------------------------------------------------------


class Writer:
    """Delta commits of one takedown, each carrying its id, reason and ticket.

    Rows are removed or changed by rewriting the partitions that hold them through the same
    :class:`Transaction` every stage writes with ("replace one partition"): a file holding an
    affected row is rewritten, every other file of the partition is carried over as a hard link
    (no copy). delta-rs's own DELETE would do it in one call, but it writes string-view Parquet
    that PyArrow datasets cannot filter on (ArrowNotImplementedError on the statistics)."""

    def __init__(self, root: Path, info: dict[str, Any]) -> None:
        self.root = root
        self.info = info
        self.versions: dict[str, int] = {}
        self.rows: dict[str, int] = {}
        self.partitions: dict[str, set[str]] = {}  # table -> partition values changed (crawl or mixture)

    def _done(self, table: str, version: int, rows: int, partition: dict[str, str] | None = None) -> None:
        self.versions[table] = version
        self.rows[table] = self.rows.get(table, 0) + rows
        if partition:
            self.partitions.setdefault(table, set()).add(next(iter(partition.values())))

    def rewrite(self, table: str, touches: ds.Expression, transform, what: str) -> int:
        """Apply ``transform`` (a PyArrow table → the table it becomes) to every file holding a row
        that ``touches`` selects; returns how many rows the transform removed."""
        uri = self.root / table
        if not table_exists(uri):
            return 0
        d = DeltaTable(str(uri)).to_pyarrow_dataset()
        hit = d.to_table(columns=["__filename"], filter=touches)
        if not hit.num_rows:
            return 0
        # delta-rs names a fragment by its path relative to the table
        files = {(uri / f).resolve() for f in set(hit.column("__filename").to_pylist())}
        spec = T.TABLES[table]
        parts = {tuple(sorted(f.partition.items())) for f in snapshot_files(uri) if Path(f.path).resolve() in files}
        removed = 0
        version = None
        for part in sorted(parts):
            partition = {k: v for k, v in part}
            with Transaction(uri, partition=partition, partition_by=list(spec.partition_by)) as txn:
                keep: list[str] = []
                origin: dict[Path, str] = {}  # staged file -> the file its rows come from
                staged = Path(txn.staging_uri)
                staged.mkdir(parents=True, exist_ok=True)
                for i, f in enumerate(snapshot_files(uri, partition=partition)):
                    if Path(f.path).resolve() not in files:
                        keep.append(f.path)
                        continue
                    t = pq.read_table(f.path)
                    new = transform(t)
                    removed += t.num_rows - new.num_rows
                    if new.num_rows:
                        pq.write_table(new.cast(t.schema), staged / f"rw-{i:05d}.parquet", compression="zstd")
                        origin[staged / f"rw-{i:05d}.parquet"] = str(Path(f.path).relative_to(uri))
                txn.add_files(keep)
                by_inode = {os.stat(p).st_ino: str(Path(p).relative_to(uri)) for p in keep}
                # Files get new names; the commit says which file each one's rows came from, so an
                # audit still finds the run that wrote them (``audit.lake.TableLog.commit_of_file``).
                carried = {dst: origin.get(src) or by_inode.get(os.stat(src).st_ino) for src, dst in txn.planned_paths().items()}
                version = txn.commit(
                    mode="replace",
                    commit_info={**self.info, "operation": what, "carried": carried},
                    empty_schema=spec.data_schema(None) if not spec.extra_columns else None,
                ).version
            self._done(table, version, 0, partition)
        self.rows[table] = self.rows.get(table, 0) + removed
        return removed

    def delete(self, table: str, ids: set[str]) -> None:
        if not ids:
            return
        cols = ID_COLUMNS[table]
        idarr = pa.array(sorted(ids))
        touches = None
        for c in cols:
            e = ds.field(c).isin(idarr)
            touches = e if touches is None else touches | e

        def drop(t: pa.Table) -> pa.Table:
            mask = pa.array([False] * t.num_rows)
            for c in cols:
                mask = pc.or_(mask, pc.fill_null(pc.is_in(t.column(c).cast(pa.string()), idarr), False))
            return t.filter(pc.invert(mask))

        self.rewrite(table, touches, drop, f"delete {len(ids)} documents")

    def set_where(self, table: str, column: str, old: str, changes, what: str) -> None:
        """Rows whose ``column`` is ``old``: ``changes(t, mask)`` returns the table with them changed."""

        def change(t: pa.Table) -> pa.Table:
            return changes(t, pc.fill_null(pc.equal(t.column(column).cast(pa.string()), old), False))

        self.rewrite(table, ds.field(column) == old, change, what)

    def append(self, table: str, crawl_id: str, rows: pa.Table, what: str) -> None:
        spec = T.TABLES[table]
        with Transaction(self.root / table, partition={"crawl_id": crawl_id}, partition_by=list(spec.partition_by)) as txn:
            txn.write_arrow(rows)
            self._done(table, txn.commit(mode="append", commit_info={**self.info, "operation": what}).version, 0, {"crawl_id": crawl_id})


def _replace(t: pa.Table, column: str, mask: pa.Array, value) -> pa.Table:
    col = t.column(column)
    new = (
        pc.if_else(mask, pa.scalar(value, col.type), col)
        if not isinstance(value, (pa.Array, pa.ChunkedArray))
        else pc.if_else(mask, value, col)
    )
    return t.set_column(t.column_names.index(column), column, new)


def promote(lake: Lake, w: Writer, p: Promotion, dedup: DedupOptions, keep_column: str | None) -> None:
    """Put ``p.promoted`` in the place of the removed kept copy ``p.cluster_of``."""
    new, old = p.promoted, p.cluster_of
    size = p.members_left
    row = _scan(lake, T.FILTERED.name, ds.field("doc_id") == new, [c for c, _ in T.FILTERED.columns])
    texts = row.column("text").combine_chunks()
    wl = words(texts)
    sig = minhash(shingles(texts, dedup.ngram, wl), dedup.num_perm, dedup.seed)
    keys = band_keys(sig, dedup.bands, dedup.rows)
    ex = exact_hashes(texts, wl)
    docs = (
        row.append_column("exact_hash", pa.array(ex, pa.int64()))
        .append_column("dup_cluster_id", pa.array([new], pa.string()))
        .append_column("dup_cluster_size", pa.array([size], pa.int64()))
    )
    w.append(
        T.DEDUPLICATED.name,
        p.crawl_id,
        docs.select([c for c, _ in T.DEDUPLICATED.columns]).cast(T.DEDUPLICATED.data_schema()),
        f"promote {new} (cluster of removed {old})",
    )
    seq_t = _scan(lake, T.DEDUP_SIGNATURES.name, ds.field("crawl_id") == p.crawl_id, ["seq"])
    seq = int(pc.max(seq_t.column("seq")).as_py()) if seq_t.num_rows else 0
    quality = row.column(keep_column).cast(pa.float64()) if keep_column and keep_column in row.column_names else pa.nulls(1, pa.float64())
    sig_t = pa.table(
        {
            "doc_id": [new],
            "seq": pa.array([seq], pa.int64()),
            "exact_hash": pa.array(ex, pa.int64()),
            "quality": quality,
            "warc_date": row.column("warc_date"),
            "minhash": pa.array([sig[0].view(np.int32).tolist()], pa.list_(pa.int32())),
            "band_keys": pa.array([keys[0].tolist()], pa.list_(pa.int64())),
            # Not embedded here: a promoted copy is not compared semantically by later crawls.
            "embedding": pa.nulls(1, pa.list_(pa.float32())),
            "embedding_model": pa.nulls(1, pa.string()),
        }
    )
    w.append(T.DEDUP_SIGNATURES.name, p.crawl_id, sig_t.cast(T.DEDUP_SIGNATURES.data_schema()), f"signature of promoted {new}")
    w.delete(T.REJECTIONS.name, {new})  # it is no longer a dropped duplicate
    w.set_where(
        T.REJECTIONS.name,
        "related_doc_id",
        old,
        lambda t, m: _replace(_replace(t, "related_doc_id", m, new), "detail", m, f"cluster of {size}"),
        f"cluster {old} now kept as {new}",
    )

    def clusters(t: pa.Table, m: pa.Array) -> pa.Table:
        is_new = pc.fill_null(pc.equal(t.column("doc_id").cast(pa.string()), new), False)
        t = _replace(_replace(t, "cluster_id", m, new), "cluster_size", m, size)
        t = _replace(t, "kept", m, pc.and_(m, is_new))
        return _replace(t, "reason", pc.and_(m, is_new), None)

    w.set_where(T.DEDUP_CLUSTERS.name, "cluster_id", old, clusters, f"cluster {old} now kept as {new}")


def purge_old_files(root: Path, table: str, ids: set[str]) -> list[str]:
    """Delete the table's data files outside its current version that hold a removed id, and
    drop their statistics (which may hold a URL) from the Delta log."""
    uri = root / table
    if not table_exists(uri):
        return []
    live = {u.replace("file://", "", 1) for u in DeltaTable(str(uri)).file_uris()}
    purged = []
    for f in uri.rglob("*.parquet"):
        if "_delta_log" in f.parts or str(f.resolve()) in live or str(f) in live:
            continue
        try:
            t = pq.read_table(f, columns=[c for c in scrub.ID_NAMES if c in pq.read_schema(f).names])
        except Exception:  # noqa: BLE001 - not ours to judge: left alone
            continue
        hit = any(
            pc.any(pc.fill_null(pc.is_in(t.column(c).cast(pa.string()), pa.array(sorted(ids))), False)).as_py() for c in t.column_names
        )
        if hit:
            purged.append(str(f.relative_to(uri)))
            f.unlink()
    if purged:
        _strip_log_stats(uri, set(purged))
    return purged


def _strip_log_stats(uri: Path, paths: set[str]) -> None:
    for log in sorted((uri / "_delta_log").glob("*.json")):
        lines = log.read_text().splitlines()
        changed = False
        out = []
        for line in lines:
            if not line.strip():
                continue
            e = json.loads(line)
            for kind in ("add", "remove"):
                a = e.get(kind)
                if a and a.get("path") in paths and a.get("stats"):
                    st = json.loads(a["stats"])
                    a["stats"] = json.dumps({"numRecords": st.get("numRecords")})
                    changed = True
            out.append(json.dumps(e, separators=(",", ":")))
        if changed:
            log.write_text("\n".join(out) + "\n")


def flag_exports(root: Path, ids: set[str], takedown: dict[str, Any]) -> list[dict[str, Any]]:
    """Rewrite each export's shards and index without the removed documents, and record it in the
    manifest (``rebuild_required``: the pinned version it names can no longer be read)."""
    flagged = []
    for index_path in sorted((root / T.EXPORTS).glob("*/*/index.parquet")):
        out = index_path.parent
        index = pq.read_table(index_path)
        hit = pc.is_in(index.column("doc_id"), pa.array(sorted(ids)))
        if not pc.any(hit).as_py():
            continue
        manifest_path = out / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        per_shard = []
        for s in manifest.get("shards", []):
            pq_name = next((n for n in s["files"] if n.endswith(".parquet")), None)
            if not pq_name:
                continue
            t = pq.read_table(out / pq_name)
            gone = pc.is_in(t.column("doc_id"), pa.array(sorted(ids)))
            n = pc.sum(pc.cast(gone, pa.int64())).as_py() or 0
            if not n:
                continue
            tokens = int(pc.sum(t.filter(gone).column("token_count")).as_py() or 0)
            kept = t.filter(pc.invert(gone))
            pq.write_table(kept, out / pq_name, compression="zstd")
            js = next((n for n in s["files"] if n.endswith(".jsonl.zst")), None)
            if js:
                write_jsonl_shard(out / js, kept)
            for name in s["files"]:
                s["files"][name] = {"sha256": file_sha256(out / name), "bytes": (out / name).stat().st_size}
            s["documents"] -= n
            s["tokens"] -= tokens
            per_shard.append({"shard": s["shard"], "documents_removed": n, "tokens_removed": tokens})
        pq.write_table(index.filter(pc.invert(hit)), index_path, compression="zstd")
        removed_docs = sum(x["documents_removed"] for x in per_shard)
        removed_tokens = sum(x["tokens_removed"] for x in per_shard)
        if manifest:
            manifest["documents"] = manifest.get("documents", 0) - removed_docs
            manifest["tokens"] = manifest.get("tokens", 0) - removed_tokens
            manifest.setdefault("index", {})["sha256"] = file_sha256(index_path)
            manifest["rebuild_required"] = True
            manifest.setdefault("takedowns", []).append(
                {**takedown, "documents_removed": removed_docs, "tokens_removed": removed_tokens, "shards": per_shard}
            )
            manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        flagged.append({"export": str(out), "documents_removed": removed_docs, "tokens_removed": removed_tokens})
    return flagged


# ---- the command --------------------------------------------------------------------------------------


def _is_table_data(root: Path, p: Path) -> bool:
    """Data and log files of the Delta tables: the takedown handles them itself (delete, purge)."""
    rel = p.relative_to(root) if p.is_relative_to(root) else None
    if rel is None or len(rel.parts) < 2 or rel.parts[0] not in T.TABLES:
        return False
    return rel.parts[1] not in (T.STAGING, T.RESUME)


def record(root: Path, row: dict[str, Any]) -> int:
    with Transaction(root / T.TAKEDOWNS.name) as txn:
        txn.write_arrow(pa.Table.from_pylist([row], schema=T.TAKEDOWNS.data_schema()))
        return txn.commit(
            mode="append",
            commit_info={"takedown_id": row["takedown_id"], "operation": "record takedown"},
            empty_schema=T.TAKEDOWNS.data_schema(),
        ).version


def verify(root: Path, ids: set[str], needles: set[str], extra_roots: list[Path]) -> dict[str, Any]:
    """The proof: no removed id in any table's current version; no needle in any file."""
    lake = Lake(root)
    in_tables = {}
    for table, cols in ID_COLUMNS.items():
        if not lake.has(table) or not ids:
            continue
        d, _ = lake.dataset(table)
        expr = None
        for c in cols + T.TABLES[table].ref_columns:
            e = ds.field(c).isin(sorted(ids))
            expr = e if expr is None else expr | e
        n = d.count_rows(filter=expr)
        if n:
            in_tables[table] = n
    files = scrub.find([root, *extra_roots], needles, ids)
    return {"clean": not in_tables and not files, "rows_left": in_tables, "files_holding_text": files}


def takedown(
    root: str | Path, req: Request, dedup: DedupOptions | None = None, extra_roots: list[Path] | None = None, progress=print
) -> dict[str, Any]:
    """Carry out a takedown on the lakehouse at ``root``; ``extra_roots``: other folders Sluice
    wrote (a Dagster home or MLflow store kept outside the lakehouse). Returns its record, with
    the verification."""
    root = Path(root).resolve()
    dedup = dedup or DedupOptions()
    keep_column = dedup.keep.quality_column
    extra_roots = [Path(p).resolve() for p in (extra_roots or []) if not Path(p).resolve().is_relative_to(root)]
    tid = f"td-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    lake = Lake(root)
    p = plan(lake, req, keep_column)
    progress(
        f"takedown {tid}: {len(p.ids)} documents ({req.kind} {req.value if req.kind == 'domain' else '…'}), "
        f"{len(p.promotions)} dedup promotions"
    )
    info = {"takedown_id": tid, "reason": req.reason, "ticket": req.ticket}
    w = Writer(root, info)
    for pr in p.promotions:
        promote(lake, w, pr, dedup, keep_column)
    for table in ID_COLUMNS:
        w.delete(table, p.ids)
    purged = {t: purge_old_files(root, t, p.ids) for t in ID_COLUMNS}
    progress(f"  rows removed: {w.rows or 'none'}; old files purged: {sum(map(len, purged.values()))}")
    needles = scrub.base_needles(p.texts, p.urls)
    exports = flag_exports(root, p.ids, info)
    rep = scrub.scrub([root, *extra_roots], needles, p.ids, mark=f"[removed by takedown {tid}]", skip=lambda f: _is_table_data(root, f))
    progress(f"  files scrubbed: {len(rep.files_scrubbed)}, deleted: {len(rep.files_deleted)}; exports flagged: {len(exports)}")
    rows_removed = {t: {"rows": w.rows.get(t, 0), "version": w.versions[t], "files_purged": len(purged.get(t, []))} for t in w.versions}
    for t, files in purged.items():  # a table with old files purged but no current row: still recorded
        if files and t not in rows_removed:
            rows_removed[t] = {"rows": 0, "version": current_version(root / t), "files_purged": len(files)}
    row = {
        "takedown_id": tid,
        "kind": req.kind,
        "target": req.value if req.kind == "domain" else None,
        "target_sha256": sha256_hex(req.value),
        "url_sha256": sorted(sha256_hex(u) for u in p.urls),
        "doc_sha256": sorted(sha256_hex(i) for i in p.ids),
        "reason": req.reason,
        "ticket": req.ticket,
        "requested_at": datetime.now(UTC),
        "documents": len(p.ids),
        "rows_removed": json.dumps(rows_removed, sort_keys=True),
        "files_purged": sum(map(len, purged.values())),
        "files_scrubbed": len(rep.files_scrubbed) + len(rep.files_deleted),
        "exports_flagged": json.dumps(exports),
    }
    version = record(root, row)
    proof = verify(root, p.ids, needles, extra_roots)
    return {
        **row,
        "requested_at": row["requested_at"].isoformat(),
        "takedowns_version": version,
        "promotions": [pr.__dict__ for pr in p.promotions],
        "crawls": sorted(p.crawls),
        "exports": exports,
        "partitions_changed": {t: sorted(v) for t, v in w.partitions.items()},
        "scrub": rep.as_dict(),
        "verification": proof,
        "rows_removed": rows_removed,
    }
