"""Pass 2 of the dedup job on the driver: exact groups, LSH candidate pairs, Jaccard verification,
connected components and the keep policy over Arrow columns and NumPy arrays.

``spark_jobs.dedup_clusters`` takes this path when the crawl's and the earlier crawls' signatures
fit the driver (``LOCAL_MAX_DOCS``), and the DataFrame path above that. Both give the same
decisions row for row (``tests/test_dedup_paths.py``). Why a second path: the DataFrame path is
about 60 Spark jobs, whose fixed costs made most of a small crawl's dedup (a 150-document crawl:
17 s in a fresh process, 4.5 s warm; 10.5 and 1.4 s with this path) and half of it at 100,000
documents (34 s; 16 s with this path).

Every document is a node: the current crawl's first, then the earlier crawls' kept documents.
``pos`` is a node's place in the keep policy's order (earlier crawls first, best quality, earliest
date, smallest id), so "the kept document of a group" is the member with the smallest ``pos``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from documents.minhash import DedupOptions, exact_jaccards
from spark_jobs.components import component_labels
from spark_jobs.dedup_clusters import DECISION_SCHEMA, STAGE, DedupStats

# What a missing warc_date sorts as: the DataFrame path's "9999-12-31" cast in the session's UTC.
_NO_DATE = np.datetime64("9999-12-31T00:00:00", "us").astype(np.int64)
# Candidate pairs verified per batch: bounds the texts and shingles held at once.
_VERIFY_BATCH = 1024

COLUMNS = ["doc_id", "quality", "warc_date", "exact_hash", "minhash", "band_keys"]


def _col(t: pa.Table, name: str) -> pa.Array:
    return t.column(name).combine_chunks()


def _order(prio: np.ndarray, quality: pa.Array, dates: pa.Array, ids: pa.Array) -> np.ndarray:
    """Each node's place in the keep policy's order, as the DataFrame path's ``rank`` struct sorts."""
    q = -quality.to_numpy(zero_copy_only=False).astype(np.float64)  # NaN stays NaN: sorts last, as in Spark
    q[~np.asarray(quality.is_valid())] = np.inf
    d = pc.fill_null(dates.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()), int(_NO_DATE)).to_numpy()
    id_rank = np.empty(len(ids), np.int64)
    id_rank[pc.sort_indices(ids).to_numpy()] = np.arange(len(ids))  # byte order, as Spark compares strings
    pos = np.empty(len(ids), np.int64)
    pos[np.lexsort((id_rank, d, q, prio))] = np.arange(len(ids))
    return pos


def _group_starts(*keys: np.ndarray) -> np.ndarray:
    """Where a new group begins in arrays sorted by ``keys``."""
    n = len(keys[0])
    new = np.zeros(n, bool)
    if n:
        new[0] = True
        for k in keys:
            new[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(new)


def _band_entries(lists: pa.Array, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(band, key, node) of every band key of the given rows; null lists (no shingles) give none."""
    lists = lists.take(pa.array(rows, pa.int64()))
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy().astype(np.int64)
    keys = lists.flatten().to_numpy()
    ends = np.cumsum(lengths)
    band = (np.arange(len(keys), dtype=np.int64) - np.repeat(ends - lengths, lengths)).astype(np.int16)  # ≤ 1024 bands
    node = np.repeat(rows.astype(np.int32), lengths)
    return band, keys, node


def _candidate_pairs(band: np.ndarray, key: np.ndarray, node: np.ndarray, pos: np.ndarray, is_cur: np.ndarray, max_bucket: int):
    """Distinct (better-ranked, worse-ranked) node pairs sharing a bucket with a current document:
    every pair in buckets up to ``max_bucket`` members, a star from the best-ranked member above."""
    order = np.lexsort((pos[node], key, band))
    node = node[order]
    starts = _group_starts(band[order], key[order])
    sizes = np.diff(np.append(starts, len(node)))
    has_cur = np.maximum.reduceat(is_cur[node].astype(np.int8), starts) if len(starts) else np.zeros(0, np.int8)
    keep = (sizes > 1) & (has_cur > 0)
    starts, sizes = starts[keep], sizes[keep]
    a_parts, b_parts = [], []
    for n in np.unique(sizes[sizes <= max_bucket]):
        s = starts[sizes == n]
        i, j = np.triu_indices(int(n), 1)
        a_parts.append(node[(s[:, None] + i).ravel()])
        b_parts.append(node[(s[:, None] + j).ravel()])
    big, big_sizes = starts[sizes > max_bucket], sizes[sizes > max_bucket]
    if len(big):
        a_parts.append(node[np.repeat(big, big_sizes - 1)])
        firsts = np.repeat(big - np.cumsum(np.r_[0, big_sizes[:-1] - 1]), big_sizes - 1)
        b_parts.append(node[firsts + np.arange(int((big_sizes - 1).sum())) + 1])
    if not a_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = np.concatenate(a_parts).astype(np.int64), np.concatenate(b_parts).astype(np.int64)
    touch = is_cur[a] | is_cur[b]  # pairs of two earlier documents were settled by their own crawl
    code = np.unique(a[touch] * len(pos) + b[touch])
    return code // len(pos), code % len(pos)


def verified(a: pa.Array, b: pa.Array, texts: pa.Table, o: DedupOptions) -> np.ndarray:
    """Which pairs of doc_ids ``(a[i], b[i])`` have an exact shingle Jaccard ≥ the threshold, given
    ``texts`` (doc_id, text) holding theirs; a pair with a missing text fails, as a join drops it.
    Both paths use it on the driver: this one always, the DataFrame path up to ``LOCAL_MAX_PAIRS``."""
    got_ids, got_texts = _col(texts, "doc_id"), _col(texts, "text")
    if not len(got_ids):  # no text found at all: nothing to take from
        return np.zeros(len(a), bool)
    ia, ib = pc.index_in(a, value_set=got_ids), pc.index_in(b, value_set=got_ids)
    ok = np.asarray(pc.and_(pc.is_valid(ia), pc.is_valid(ib)))
    ia, ib = pc.fill_null(ia, 0).to_numpy(), pc.fill_null(ib, 0).to_numpy()
    for s in range(0, len(ok), _VERIFY_BATCH):
        sl = slice(s, s + _VERIFY_BATCH)
        j = exact_jaccards(got_texts.take(pa.array(ia[sl])), got_texts.take(pa.array(ib[sl])), o.ngram)
        ok[sl] &= j >= o.verify_threshold
    return ok


def _jaccard_estimates(mh: pa.Array, doc: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Share of equal MinHash slots between each document and its kept document, over the
    document's slots (NaN where the kept document has no signature)."""
    lengths = pc.list_value_length(mh).to_numpy(zero_copy_only=False)
    out = np.full(len(doc), np.nan)
    if not len(doc):
        return out
    valid = np.asarray(mh.is_valid())
    width = int(lengths[valid].max()) if valid.any() else 0
    if valid.all() and (lengths == width).all():
        m = mh.flatten().to_numpy().reshape(len(mh), width)
        return (m[doc] == m[kept]).sum(axis=1) / width
    rows = mh.to_pylist()  # signatures of different widths (options changed between crawls): row by row
    for i, (d, k) in enumerate(zip(doc.tolist(), kept.tolist())):
        if rows[k] is not None and rows[d]:
            out[i] = sum(x == y for x, y in zip(rows[d], rows[k])) / len(rows[d])
    return out


def decide(cur: pa.Table, prev: pa.Table | None, o: DedupOptions, texts_of: Callable[[pa.Array], pa.Table], stats: DedupStats) -> pa.Table:
    """The decision of every current document (``DECISION_SCHEMA`` plus ``unit``).

    ``cur``: the current crawl's signatures (``unit`` and ``COLUMNS``); ``prev``: the earlier
    crawls' kept documents (``COLUMNS``) or None; ``texts_of``: the texts of the given doc_ids
    (current or earlier), for verification. Fills the pass's counts and seconds in ``stats``."""
    t0 = time.time()
    if prev is None:
        prev = pa.table({c: pa.array([], cur.schema.field(c).type) for c in COLUMNS})
    prev = prev.select(COLUMNS)
    # The same WARC record ingested again: an exact duplicate of the copy an earlier crawl kept.
    seen_mask = np.asarray(pc.is_in(_col(cur, "doc_id"), value_set=_col(prev, "doc_id")))
    seen = cur.filter(seen_mask)
    if seen.num_rows:  # (a filter copies every column, signatures included)
        cur = cur.filter(~seen_mask)
    nc, n = cur.num_rows, cur.num_rows + prev.num_rows
    both = pa.concat_tables([cur.select(COLUMNS), prev.cast(cur.select(COLUMNS).schema)])  # chunks, not copied
    ids = _col(both, "doc_id")
    is_cur = np.arange(n) < nc
    pos = _order(is_cur.astype(np.int8), _col(both, "quality"), _col(both, "warc_date"), ids)
    hashes = _col(both, "exact_hash")
    hash_ok = np.asarray(hashes.is_valid())
    h = pc.fill_null(hashes, 0).to_numpy()

    # Exact: every document points at the best-ranked document with its hash.
    rep = np.arange(nc)
    if o.exact:
        order = np.lexsort((pos, h, ~hash_ok))
        starts = _group_starts(h[order], hash_ok[order])
        first = np.repeat(order[starts], np.diff(np.append(starts, n)))
        rep_all = np.empty(n, np.int64)
        rep_all[order] = first
        rep = rep_all[:nc]
    stats.seconds["exact"] = time.time() - t0

    # Near: LSH buckets among the exact representatives (and the earlier documents they hit).
    t0 = time.time()
    ea = eb = np.zeros(0, np.int64)
    if o.fuzzy:
        bands = _col(both, "band_keys")
        survivors = np.flatnonzero(rep == np.arange(nc))
        cb, ck, cn = _band_entries(bands, survivors)
        pb, pk, pn = _band_entries(bands, np.arange(nc, n))
        a, b = _candidate_pairs(np.r_[cb, pb], np.r_[ck, pk], np.r_[cn, pn], pos, is_cur, o.max_bucket_pairs)
        del bands, cb, ck, cn, pb, pk, pn
        stats.candidate_pairs = len(a)
        if o.verify and len(a):
            ok = verified(ids.take(pa.array(a)), ids.take(pa.array(b)), texts_of(ids.take(pa.array(np.union1d(a, b)))), o)
            a, b = a[ok], b[ok]
        ea, eb = a, b
    stats.verified_pairs = len(ea)
    stats.cc_rounds = 0
    stats.seconds["near"] = time.time() - t0

    # Assemble: each document → its exact representative → that one's component → the component's
    # best-ranked member is the cluster's kept document.
    t0 = time.time()
    label = component_labels(n, ea, eb)
    by_pos = np.argsort(pos)
    labels, first = np.unique(label[by_pos], return_index=True)
    kept_of_label = np.empty(len(labels), np.int64)
    kept_of_label[labels] = by_pos[first]  # scipy numbers the components 0..k-1
    node_kept = kept_of_label[label]
    cur_kept = node_kept[rep]
    # Earlier documents in a current document's cluster: exact representatives and graph members.
    prev_nodes = np.unique(np.concatenate([rep[rep >= nc], ea[ea >= nc], eb[eb >= nc]]))
    sizes = np.bincount(np.concatenate([cur_kept, node_kept[prev_nodes]]), minlength=n)
    kept = cur_kept == np.arange(nc)
    own = np.arange(nc)
    k_ok = hash_ok[cur_kept]
    reason = np.where(
        kept,
        None,
        np.where(~k_ok, f"{STAGE}.missing_kept", np.where(hash_ok[:nc] & (h[:nc] == h[cur_kept]), f"{STAGE}.exact", f"{STAGE}.near")),
    )
    jac = np.ones(nc)
    removed = ~kept
    minhash = _col(both, "minhash")
    jac[removed] = _jaccard_estimates(minhash, own[removed], cur_kept[removed])
    mh_ok = np.asarray(minhash.is_valid())
    del minhash, both
    decisions = pa.table(
        {
            "doc_id": ids.slice(0, nc),
            "kept": pa.array(kept),
            "cluster_id": ids.take(pa.array(cur_kept)),
            "cluster_size": pa.array(sizes[cur_kept], pa.int64()),
            "reason": pa.array(reason.tolist(), pa.string()),
            "jaccard": pa.array(jac, pa.float64(), mask=removed & ~mh_ok[cur_kept]),
            "unit": _col(cur, "unit"),
        }
    )
    if seen.num_rows:
        k = seen.num_rows
        decisions = pa.concat_tables(
            [
                decisions,
                pa.table(
                    {
                        "doc_id": _col(seen, "doc_id"),
                        "kept": pa.array(np.zeros(k, bool)),
                        "cluster_id": _col(seen, "doc_id"),
                        "cluster_size": pa.array(np.full(k, 2), pa.int64()),
                        "reason": pa.array([f"{STAGE}.exact"] * k, pa.string()),
                        "jaccard": pa.array(np.ones(k)),
                        "unit": _col(seen, "unit"),
                    }
                ),
            ]
        )
    if prev.num_rows and o.exact:
        prev_hashes = pc.drop_null(_col(prev, "exact_hash"))
        stats.hash_clashes = int(np.count_nonzero(kept & hash_ok[:nc] & np.isin(h[:nc], prev_hashes.to_numpy())))
    stats.seconds["assemble"] = time.time() - t0
    return decisions.cast(pa.schema([*DECISION_SCHEMA, decisions.schema.field("unit")]))
