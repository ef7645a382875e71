"""Benchmark contamination by word n-gram overlap: the benchmark side built once as sorted hash
arrays, the corpus side hashed for a whole Arrow batch at once.

Text is normalised the same way on both sides: lower case, every run of characters that are not
letters or digits folded to one space (so case, punctuation and line breaks do not hide a match).
N-grams (13 words by default, the GPT-3 choice) are hashed with ``minhash.shingles`` (a stable
64-bit rolling hash, identical in every process). An item shorter than ``ngram`` words but at least
``min_item_words`` long is matched whole: its hash is the hash of a run of exactly its length.

Membership is ``np.searchsorted`` on the sorted hashes: exact for the hash, 8 bytes per benchmark
n-gram plus 10 for where it came from (GSM8K + MMLU ≈ 1.3M n-grams ≈ 25 MB), which is why no Bloom
filter is needed below ~100M benchmark n-grams. Two different 13-grams share a 64-bit hash with
probability ~1e-19 per pair.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from documents.minhash import shingles

_FOLD = r"[^\p{L}\p{N}]+"  # RE2 (Arrow): what separates words
_WORD = re.compile(r"[^\W_]+")  # Python: the same words, with their character offsets


class BenchmarkSpec(BaseModel):
    """One benchmark test set: a JSONL, CSV or Parquet file (or a folder of them)."""

    name: str
    path: str
    format: Literal["auto", "jsonl", "csv", "parquet"] = "auto"
    # The fields whose text is matched, joined with spaces: names (JSONL, Parquet, CSV with a
    # header) or column numbers (CSV); or a template over fields, e.g. "{question} {answer}".
    fields: list[str | int] = Field(default_factory=list)
    template: str | None = None
    header: bool = True  # CSV: the first row names the columns


class DecontamOptions(BaseModel):
    ngram: int = Field(13, ge=3, description="words per n-gram (GPT-3: 13, DataTrove: 12)")
    # Items shorter than ngram words are matched whole when they have at least this many words.
    min_item_words: int = Field(8, ge=1)
    # A benchmark n-gram found in more documents of the crawl than max(frequent_min_docs,
    # frequent_doc_share × documents) is common web text (quotes, licences, templates), not
    # contamination: it is suppressed and reported (NeMo Curator skips n-grams seen > 10 times).
    frequent_doc_share: float = Field(0.001, ge=0, le=1)
    frequent_min_docs: int = Field(10, ge=1)
    # A document is contaminated when it holds at least this many matching (not suppressed) n-grams.
    min_matches: int = Field(1, ge=1)
    benchmarks: list[BenchmarkSpec] = Field(default_factory=list)


def normalised_words(texts: pa.Array) -> pa.ListArray:
    """Lower-cased words of each text, every non-letter, non-digit run treated as a separator."""
    folded = pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.utf8_lower(texts), _FOLD, " "))
    lists = pc.utf8_split_whitespace(folded)
    flat = lists.flatten()
    keep = pc.greater(pc.utf8_length(flat), 0)
    if pc.all(keep).as_py() is not False:
        return lists
    keep_np = keep.to_numpy(zero_copy_only=False)
    kept_before = np.concatenate([[0], np.cumsum(keep_np)])
    return pa.ListArray.from_arrays(pa.array(kept_before[lists.offsets.to_numpy()], pa.int32()), flat.filter(keep))


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the normalised words of one text, in order."""
    return [m.span() for m in _WORD.finditer(text)]


# ---- the benchmark side --------------------------------------------------------------------------


def _files(spec: BenchmarkSpec) -> list[tuple[Path, str]]:
    p = Path(spec.path).expanduser()
    fmt = spec.format
    if p.is_dir():
        if fmt == "auto":
            raise ValueError(f"benchmark {spec.name}: {p} is a folder; say its files' format (jsonl, csv or parquet)")
        files = sorted(f for f in p.rglob(f"*.{fmt}") if f.is_file())
        if not files:
            raise ValueError(f"benchmark {spec.name}: no *.{fmt} files in {p}")
        return [(f, fmt) for f in files]
    if not p.is_file():
        raise FileNotFoundError(f"benchmark {spec.name}: no such file or folder {p}")
    if fmt == "auto":
        suffix = p.name.lower().removesuffix(".gz")
        fmt = "jsonl" if suffix.endswith((".jsonl", ".json")) else "csv" if suffix.endswith(".csv") else "parquet"
    return [(p, fmt)]


def _rows(path: Path, fmt: str, header: bool) -> Iterator[dict[Any, Any]]:
    if fmt == "jsonl":
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
    elif fmt == "csv":
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            names = next(reader) if header else None
            for row in reader:
                yield {**dict(enumerate(row)), **(dict(zip(names, row)) if names else {})}
    else:
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()


def item_text(spec: BenchmarkSpec, row: dict[Any, Any]) -> str:
    if spec.template is not None:
        return spec.template.format(**{str(k): v for k, v in row.items()}, **{f"c{k}": v for k, v in row.items() if isinstance(k, int)})
    if not spec.fields:
        raise ValueError(f"benchmark {spec.name}: set fields (or a template)")
    missing = [f for f in spec.fields if f not in row]
    if missing:
        raise ValueError(f"benchmark {spec.name}: fields {missing} not in its rows (have {sorted(map(str, row))[:12]})")
    return " ".join(str(row[f]) for f in spec.fields if row[f] is not None)


def read_benchmark(spec: BenchmarkSpec) -> tuple[list[str], list[str]]:
    """(item ids, item texts). An item id is the row's line number (1-based), prefixed with its
    file's name when the benchmark is a folder of files."""
    files = _files(spec)
    ids, texts = [], []
    for path, fmt in files:
        for i, row in enumerate(_rows(path, fmt, spec.header), start=1):
            ids.append(f"{path.stem}:{i}" if len(files) > 1 else str(i))
            texts.append(item_text(spec, row))
    return ids, texts


@dataclass
class BenchmarkIndex:
    """Sorted n-gram hashes of every benchmark item, by n-gram size (``ngram``, and the lengths of
    short items matched whole), with the benchmark, item and word position each came from."""

    ngram: int
    names: list[str]
    item_ids: list[list[str]]
    item_texts: list[list[str]]
    hashes: dict[int, np.ndarray] = field(default_factory=dict)  # size → sorted uint64
    bench: dict[int, np.ndarray] = field(default_factory=dict)  # size → int16
    item: dict[int, np.ndarray] = field(default_factory=dict)  # size → int32
    pos: dict[int, np.ndarray] = field(default_factory=dict)  # size → int32 (word position in the item)
    items: dict[str, int] = field(default_factory=dict)  # benchmark → items indexed
    too_short: dict[str, int] = field(default_factory=dict)  # benchmark → items below min_item_words

    @property
    def sizes(self) -> list[int]:
        return sorted(self.hashes)

    @property
    def ngrams(self) -> int:
        return sum(len(h) for h in self.hashes.values())

    def ngram_text(self, size: int, k: int) -> str:
        """The normalised words of the k-th n-gram of ``size`` (as the benchmark has them)."""
        b, i, p = int(self.bench[size][k]), int(self.item[size][k]), int(self.pos[size][k])
        words = normalised_words(pa.array([self.item_texts[b][i]]))[0].as_py()
        return " ".join(words[p : p + size])


def build_index(o: DecontamOptions) -> BenchmarkIndex:
    index = BenchmarkIndex(o.ngram, [], [], [])
    parts: dict[int, list[tuple[np.ndarray, ...]]] = {}
    for b, spec in enumerate(o.benchmarks):
        ids, texts = read_benchmark(spec)
        index.names.append(spec.name)
        index.item_ids.append(ids)
        index.item_texts.append(texts)
        wl = normalised_words(pa.array(texts, pa.string()))
        n_words = np.diff(wl.offsets.to_numpy())
        index.items[spec.name] = int((n_words >= o.min_item_words).sum())
        index.too_short[spec.name] = int((n_words < o.min_item_words).sum())
        for size in sorted({o.ngram, *(int(n) for n in n_words if o.min_item_words <= n < o.ngram)}):
            rows = np.flatnonzero(n_words >= o.ngram) if size == o.ngram else np.flatnonzero(n_words == size)
            if not len(rows):
                continue
            sub = wl.take(pa.array(rows))
            sh = shingles(pa.nulls(len(rows), pa.string()), size, sub)
            item = np.repeat(rows, sh.counts).astype(np.int32)
            pos = (np.arange(len(sh.values)) - np.repeat(sh.starts, sh.counts)).astype(np.int32)
            parts.setdefault(size, []).append((sh.values, np.full(len(sh.values), b, np.int16), item, pos))
    for size, chunks in parts.items():
        h, bi, it, ps = (np.concatenate(c) for c in zip(*chunks))
        # One entry per hash: the first benchmark item that has it.
        order = np.lexsort((ps, it, bi, h))
        h, bi, it, ps = h[order], bi[order], it[order], ps[order]
        first = np.concatenate([[True], h[1:] != h[:-1]])
        index.hashes[size], index.bench[size], index.item[size], index.pos[size] = h[first], bi[first], it[first], ps[first]
    return index


# ---- the corpus side -----------------------------------------------------------------------------


@dataclass
class Matches:
    """Benchmark n-grams found in a batch: one entry per (document, n-gram position)."""

    row: np.ndarray  # int64: the document's row in the batch
    hash: np.ndarray  # uint64
    size: np.ndarray  # int32: words in the n-gram
    pos: np.ndarray  # int32: the n-gram's first word in the document
    entry: np.ndarray  # int64: its position in index.hashes[size]
    bench: np.ndarray  # int32: the benchmark it belongs to


def match_batch(texts: pa.Array, index: BenchmarkIndex) -> Matches:
    """Every occurrence of a benchmark n-gram in a batch of texts (vectorised: no loop per document)."""
    wl = normalised_words(texts)
    out: list[tuple[np.ndarray, ...]] = []
    for size in index.sizes:
        sh = shingles(texts, size, wl)
        keys = index.hashes[size]
        if not len(sh.values) or not len(keys):
            continue
        at = np.searchsorted(keys, sh.values)
        at_c = np.minimum(at, len(keys) - 1)
        hit = np.flatnonzero(keys[at_c] == sh.values)
        if not len(hit):
            continue
        doc = np.searchsorted(sh.starts, hit, side="right") - 1
        # A text shorter than `size` words is one shingle of all its words: not an n-gram of this size.
        n_words = np.diff(wl.offsets.to_numpy())[doc]
        ok = n_words >= size
        hit, doc = hit[ok], doc[ok]
        entry = at_c[hit].astype(np.int64)
        out.append(
            (
                doc.astype(np.int64),
                sh.values[hit],
                np.full(len(hit), size, np.int32),
                (hit - sh.starts[doc]).astype(np.int32),
                entry,
                index.bench[size][entry].astype(np.int32),
            )
        )
    if not out:
        e = np.zeros(0, np.int64)
        return Matches(e, np.zeros(0, np.uint64), np.zeros(0, np.int32), np.zeros(0, np.int32), e, np.zeros(0, np.int32))
    return Matches(*(np.concatenate(c) for c in zip(*out)))
