"""Exact hashes, word-shingle MinHash signatures and LSH band keys, vectorized over Arrow batches.

Everything is computed for a whole batch at once: Arrow splits and trims the words, every distinct
word of the batch is hashed once (pandas' seeded SipHash, identical in every process, unlike
Python's ``hash``), shingle hashes are rolling products of word hashes, and the permutations are
one multiply-add-shift per (shingle, hash function) over cache-sized blocks, reduced per document
with ``np.minimum.reduceat``. A per-document Python loop over shingles (datasketch, DataTrove) is
what this replaces; see ``benchmarks/dedup_throughput.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field, model_validator

from documents.semantic import SemanticOptions

# Characters trimmed from both ends of every word before hashing (ASCII and common typographic
# punctuation): "end." and "end" are the same word, "don't" keeps its apostrophe.
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~«»“”„‘’‚…–—·•¡¿"
_MIX1 = np.uint64(0xFF51AFD7ED558CCD)
_ROLL = np.uint64(0x9E3779B97F4A7C15)
_S32 = np.uint64(32)
_S33 = np.uint64(33)
_BLOCK = 4096  # shingles per block: (block × hashes) uint64 stays in L2


class KeepPolicy(BaseModel):
    """Which document of a cluster is kept: best ``quality_column`` (higher is better), then the
    earliest ``warc_date``, then the smallest ``doc_id``. Documents kept by an earlier crawl always
    stay kept: published partitions are never rewritten by a later crawl."""

    quality_column: str | None = "language_score"


class DedupOptions(BaseModel):
    ngram: int = Field(5, ge=1, description="words per shingle (FineWeb: 5)")
    bands: int = Field(14, ge=1)
    rows: int = Field(8, ge=1, description="hash functions per band; bands × rows hash functions in all")
    seed: int = 1
    exact: bool = True
    fuzzy: bool = True
    # Exact Jaccard of the shingle sets of every LSH candidate pair; a pair below the threshold
    # is not an edge. LSH alone accepts band collisions far below its threshold (≈ 0.72); 0.6
    # removes those and keeps the true pairs LSH finds just under it (0.7 cost 0.25% recall on
    # benchmarks/dedup_throughput.py's planted copies).
    verify: bool = True
    verify_threshold: float = Field(0.6, ge=0.0, le=1.0)
    # Buckets up to this size give every pair as a candidate; bigger ones (boilerplate hubs) are
    # linked as a star to their best-ranked member, which keeps the pair count linear.
    max_bucket_pairs: int = Field(16, ge=2)
    keep: KeepPolicy = Field(default_factory=KeepPolicy)
    # The third pass, after exact and MinHash: embeddings, k-means, cosine (documents/semantic.py).
    semantic: SemanticOptions = Field(default_factory=SemanticOptions)

    @model_validator(mode="after")
    def _check(self) -> DedupOptions:
        if self.num_perm > 1024:
            raise ValueError("bands × rows must be ≤ 1024 hash functions")
        return self

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    @property
    def lsh_threshold(self) -> float:
        """The Jaccard at which a pair becomes a candidate with probability ~1/2: (1/b)^(1/r)."""
        return (1.0 / self.bands) ** (1.0 / self.rows)


def words(texts: pa.Array) -> pa.ListArray:
    """Lower-cased words with surrounding punctuation trimmed (empty words dropped)."""
    lists = pc.utf8_split_whitespace(pc.utf8_lower(texts))
    flat = pc.utf8_trim(lists.flatten(), _PUNCTUATION)
    keep = pc.greater(pc.utf8_length(flat), 0)
    if pc.all(keep).as_py() is not False:
        return pa.ListArray.from_arrays(lists.offsets, flat)
    # Recompute offsets without the empty words.
    keep_np = keep.to_numpy(zero_copy_only=False)
    offsets = lists.offsets.to_numpy()
    kept_before = np.concatenate([[0], np.cumsum(keep_np)])
    return pa.ListArray.from_arrays(pa.array(kept_before[offsets], pa.int32()), flat.filter(keep))


def _hash_strings(values: pa.Array) -> np.ndarray:
    """A stable 64-bit hash per string: each distinct value hashed once."""
    import pandas as pd

    if len(values) == 0:
        return np.zeros(0, np.uint64)
    enc = pc.dictionary_encode(values)
    dict_hashes = pd.util.hash_array(enc.dictionary.to_numpy(zero_copy_only=False))
    return dict_hashes[enc.indices.to_numpy(zero_copy_only=False)]


def _mix(h: np.ndarray) -> np.ndarray:
    h ^= h >> _S33
    h *= _MIX1
    h ^= h >> _S33
    return h


@dataclass
class Shingles:
    """Shingle hashes of a batch: ``values[starts[i]:starts[i] + counts[i]]`` belong to document i."""

    values: np.ndarray  # uint64
    starts: np.ndarray  # int64
    counts: np.ndarray  # int64


def shingles(texts: pa.Array, n: int, wl: pa.ListArray | None = None) -> Shingles:
    """Hashes of the n-word shingles of each text; a text shorter than n words is one shingle.
    ``wl`` is ``words(texts)`` when the caller has it already."""
    wl = words(texts) if wl is None else wl
    offsets = wl.offsets.to_numpy().astype(np.int64)
    wh = _hash_strings(wl.flatten())
    n_words = np.diff(offsets)
    counts = np.where(n_words >= n, n_words - n + 1, np.minimum(n_words, 1))
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    if total == 0:
        return Shingles(np.zeros(0, np.uint64), starts, counts)
    # Rolling hash of every run of n consecutive words of the batch (runs crossing a document
    # boundary are computed and never picked), then the runs that start inside a document.
    padded = np.concatenate([wh, np.zeros(n, np.uint64)])
    L = len(wh)
    h = padded[:L].copy()
    for k in range(1, n):
        h *= _ROLL
        h += padded[k : L + k]
    first = np.repeat(offsets[:-1], counts) + (np.arange(total) - np.repeat(starts, counts))
    h = h[first]
    short = np.flatnonzero((n_words < n) & (n_words > 0))
    with np.errstate(over="ignore"):
        for d in short:  # texts shorter than n words: one shingle of all their words
            v = np.uint64(0)
            for w in wh[offsets[d] : offsets[d + 1]]:
                v = v * _ROLL + w
            h[starts[d]] = v
    return Shingles(_mix(h), starts, counts)


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of the multiply-shift hash functions h(x) = ((a·x + b) mod 2^64) >> 32, a odd."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
    return a, b


EMPTY_SLOT = np.uint32(0xFFFFFFFF)


def minhash(sh: Shingles, num_perm: int, seed: int) -> np.ndarray:
    """(documents × num_perm) uint32 signatures; a document without shingles is all EMPTY_SLOT."""
    a, b = permutations(num_perm, seed)
    n_docs = len(sh.counts)
    sig = np.full((n_docs, num_perm), EMPTY_SLOT, np.uint32)
    x = sh.values >> _S32
    buf = np.empty((_BLOCK, num_perm), np.uint64)
    has = np.flatnonzero(sh.counts > 0)
    i = 0
    while i < len(has):
        # Documents whose shingles fit one block (at least one document per block).
        lo = sh.starts[has[i]]
        j = i + 1
        while j < len(has) and sh.starts[has[j]] + sh.counts[has[j]] - lo <= _BLOCK:
            j += 1
        docs = has[i:j]
        hi = sh.starts[docs[-1]] + sh.counts[docs[-1]]
        for s in range(lo, hi, _BLOCK):  # a single long document may span several blocks
            e = min(hi, s + _BLOCK)
            m = buf[: e - s]
            np.multiply(x[s:e, None], a[None, :], out=m)
            np.add(m, b[None, :], out=m)
            owners = docs[(sh.starts[docs] < e) & (sh.starts[docs] + sh.counts[docs] > s)]
            bounds = np.clip(sh.starts[owners] - s, 0, None)
            # The shift is monotone, so shifting the minima equals the minimum of the shifted values.
            part = (np.minimum.reduceat(m, bounds, axis=0) >> _S32).astype(np.uint32)
            sig[owners] = np.minimum(sig[owners], part)
        i = j
    return sig


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(documents × bands) int64 keys: a hash of each band's ``rows`` signature values."""
    n = sig.shape[0]
    h = np.zeros((n, bands), np.uint64)
    v = sig[:, : bands * rows].astype(np.uint64).reshape(n, bands, rows)
    for r in range(rows):
        h = _mix(h * _ROLL + v[:, :, r] + np.uint64(r + 1))
    # Fold in the band number so that equal values in different bands never share a key.
    h = _mix(h + np.arange(1, bands + 1, dtype=np.uint64)[None, :] * _ROLL)
    return h.view(np.int64)


def exact_hashes(texts: pa.Array, wl: pa.ListArray | None = None) -> np.ndarray:
    """int64 hash of each text after normalisation (lower case, punctuation trimmed, one space
    between words), so that pages differing only in whitespace or case are exact duplicates."""
    joined = pc.fill_null(pc.binary_join(words(texts) if wl is None else wl, " "), "")
    return _hash_strings(joined).view(np.int64)


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of equal slots of two (n × num_perm) signature arrays, row by row."""
    return (a == b).mean(axis=1)


def exact_jaccard(text_a: str, text_b: str, n: int) -> float:
    """Jaccard similarity of the n-word shingle sets of two texts (same shingling as MinHash)."""
    sh = shingles(pa.array([text_a, text_b]), n)
    sa = set(sh.values[sh.starts[0] : sh.starts[0] + sh.counts[0]].tolist())
    sb = set(sh.values[sh.starts[1] : sh.starts[1] + sh.counts[1]].tolist())
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def exact_jaccards(texts_a: pa.Array, texts_b: pa.Array, n: int) -> np.ndarray:
    """Exact Jaccard of each pair (texts_a[i], texts_b[i]), shingled as one batch."""
    k = len(texts_a)
    sh = shingles(pa.concat_arrays([texts_a.cast(pa.string()), texts_b.cast(pa.string())]), n)
    out = np.empty(k, np.float64)
    for i in range(k):
        sa = np.unique(sh.values[sh.starts[i] : sh.starts[i] + sh.counts[i]])
        sb = np.unique(sh.values[sh.starts[k + i] : sh.starts[k + i] + sh.counts[k + i]])
        union = len(np.union1d(sa, sb))
        out[i] = len(np.intersect1d(sa, sb, assume_unique=True)) / union if union else 1.0
    return out
