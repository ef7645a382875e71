"""Semantic dedup on planted edited republications of real pages, side by side with MinHash.

Data (``../shared/data/html/trafilatura-eval``, skipped when absent): the main text of each real page
(Resiliparse extraction, at least 12 sentences and 150 words: articles, not shop grids). The first
``--planted`` of them, in a fixed shuffled order, are republished: a quarter of their sentences cut
and three pairs of neighbouring sentences swapped (the edit of issue #25). Every other page is an
unrelated page. The truth: each copy is a duplicate of its original; no other pair is.

Printed:
1. Cosine of the planted pairs and of every unrelated pair (all pairs of distinct pages), for the
   distilled static model and the full all-MiniLM-L6-v2: the data the thresholds in
   ``documents/semantic.py`` were chosen on.
2. Recall (copies removed with their original as the kept partner, or the original removed with the
   copy as partner) and false-removal rate (removed pages that are not one of a planted pair, over
   all unrelated pages) of the dedup job (``spark_jobs.dedup_job``, local Spark) with MinHash alone,
   semantic alone, and both.
   Embedding speed, documents per CPU-second (one thread; CPU time, since these machines are shared),
   static vs full, on the same texts.
3. Peak memory of the semantic pass at 100,000 documents (there are only ~1,000 real pages): the
   embedding of synthetic texts, then k-means and pairs on random unit vectors.

    nice -n 10 .venv/bin/python benchmarks/semantic_dedup.py
"""

from __future__ import annotations

import argparse
import gzip
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PAGES = SHARED / "html" / "trafilatura-eval" / "pages"
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“‘(])")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT.split(" ".join(text.split())) if s.strip()]


def republish(text: str, rng: random.Random, cut: float = 0.25, swaps: int = 3) -> str:
    """The article with ``cut`` of its sentences removed and ``swaps`` neighbouring pairs swapped."""
    s = sentences(text)
    drop = set(rng.sample(range(len(s)), int(round(cut * len(s)))))
    s = [x for i, x in enumerate(s) if i not in drop]
    for _ in range(swaps):
        if len(s) >= 2:
            i = rng.randrange(len(s) - 1)
            s[i], s[i + 1] = s[i + 1], s[i]
    return " ".join(s)


def real_pages(pages: Path = PAGES, min_sentences: int = 12, min_words: int = 150, max_files: int | None = None) -> list[tuple[str, str]]:
    """(page id, main text) of the article-like English pages (the pipeline's default language rule:
    English, score ≥ 0.65), sorted by id: what reaches the dedup stage."""
    from resiliparse.extract.html2text import extract_plain_text

    from documents.language import LanguageIdentifier, LanguageOptions

    lang_o = LanguageOptions()
    ident = LanguageIdentifier(lang_o)
    out = []
    for f in sorted(pages.glob("*.html.gz"))[:max_files]:
        html = gzip.decompress(f.read_bytes()).decode("utf-8", "replace")
        text = extract_plain_text(html, main_content=True)
        if len(text.split()) < min_words or len(sentences(text)) < min_sentences:
            continue
        lang, p = ident.identify(text)
        if lang in lang_o.languages and p >= lang_o.min_score:
            out.append((f.name[: -len(".html.gz")], text))
    return out


def planted_corpus(
    n_planted: int = 150, seed: int = 7, pages: Path = PAGES, max_files: int | None = None
) -> tuple[list[str], list[str], dict[str, str]]:
    """(ids, texts, copy id → original id): ``n_planted`` republished copies among the real pages."""
    docs = real_pages(pages, max_files=max_files)
    rng = random.Random(seed)
    order = list(range(len(docs)))
    rng.shuffle(order)
    ids = [d for d, _ in docs]
    texts = [t for _, t in docs]
    truth = {}
    for i in order[:n_planted]:
        cid = f"copy-{ids[i]}"
        ids.append(cid)
        texts.append(republish(texts[i], rng))
        truth[cid] = ids[i]
    return ids, texts, truth


def natural_pairs(texts: list[str], v: np.ndarray, floor: float = 0.2) -> set[tuple[int, int]]:
    """Pairs of pages the set itself holds twice (5-gram Jaccard ≥ ``floor``; only pairs with cosine
    ≥ 0.5 are checked): duplicates, not unrelated pages."""
    from documents.minhash import exact_jaccard

    S = v @ v.T
    a, b = np.nonzero(np.triu(S >= 0.5, 1))
    return {(int(i), int(j)) for i, j in zip(a, b) if exact_jaccard(texts[i], texts[j], 5) >= floor}


def cosine_table(ids, texts, truth, spec) -> dict:
    from documents.embeddings import embed

    t0 = time.process_time()
    v = embed(texts, spec)
    cpu = time.process_time() - t0
    # The static model tokenizes each distinct word once per process: the first pass pays for the
    # set's 38,000 distinct words, a crawl's later batches mostly hit words already seen.
    t0 = time.process_time()
    embed(texts, spec)
    warm = time.process_time() - t0
    pos = {d: i for i, d in enumerate(ids)}
    planted = np.array([float(v[pos[c]] @ v[pos[o]]) for c, o in truth.items()])
    S = v @ v.T
    iu = np.triu_indices(len(ids), 1)
    dup = np.zeros_like(S, bool)
    for c, o in truth.items():
        dup[pos[c], pos[o]] = dup[pos[o], pos[c]] = True
    natural = natural_pairs(texts, v)
    for i, j in natural:
        dup[i, j] = dup[j, i] = True
    natural -= {tuple(sorted((pos[c], pos[o]))) for c, o in truth.items()}
    return {"planted": planted, "unrelated": S[iu][~dup[iu]], "cpu_seconds": cpu, "warm_cpu_seconds": warm, "natural": natural}


def run_job(spark, ids, texts, fuzzy: bool, semantic: bool, model: str, work: Path) -> dict[str, tuple[str, str]]:
    import pyarrow.parquet as pq

    from documents.minhash import DedupOptions
    from spark_jobs.dedup_job import deduplicate_files, documents_table

    work.mkdir(parents=True, exist_ok=True)
    pq.write_table(documents_table(ids, texts), work / "docs.parquet")
    o = DedupOptions(fuzzy=fuzzy, semantic={"enabled": semantic, "model": model})
    _, out = deduplicate_files(spark, [str(work / "docs.parquet")], o, str(work / "out"))
    return {r["doc_id"]: (r["related_doc_id"], r["reason"]) for r in out["rejected"].to_pylist()}


def score(removed: dict, truth: dict, ids: list[str], natural: set[tuple[int, int]]) -> tuple[float, float, int]:
    """(recall of planted pairs, false removals / documents that must stay, false removals). A removal is
    false unless its kept partner is its planted twin or a page the set holds twice (``natural``)."""
    pos = {d: i for i, d in enumerate(ids)}
    twin = {**truth, **{o: c for c, o in truth.items()}}
    found = sum(1 for c, o in truth.items() if removed.get(c, ("",))[0] == o or removed.get(o, ("",))[0] == c)
    false = [d for d, (k, _) in removed.items() if twin.get(d) != k and tuple(sorted((pos[d], pos[k]))) not in natural]
    must_stay = len(ids) - len(truth)  # every original and every unrelated page (one of each planted pair goes)
    return found / max(1, len(truth)), len(false) / max(1, must_stay), len(false)


def synthetic_texts(n: int, seed: int = 3) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(20000)] + "the of and to in is that for it with as was on be by this are".split()
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    lengths = rng.integers(150, 600, n)
    words = rng.choice(len(vocab), int(lengths.sum()), p=p)
    out, k = [], 0
    for L in lengths:
        out.append(" ".join(vocab[w] for w in words[k : k + L]))
        k += L
    return out


def peak_memory(n: int, spec) -> dict:
    """Seconds and peak RSS of the semantic pass's two parts at ``n`` documents, in one process:
    embedding ``n`` synthetic texts (streamed in batches of 5,000, vectors kept), then k-means and
    pairs on ``n`` random unit vectors of the model's width (synthetic texts drawn from one word
    list all look alike, which would measure a corpus of duplicates instead)."""
    import resource

    from documents.embeddings import embed
    from documents.semantic import SemanticOptions, semantic_duplicates

    def rss() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    base = rss()
    texts = synthetic_texts(n)
    t0 = time.time()
    v = np.concatenate([embed(texts[i : i + 5000], spec) for i in range(0, n, 5000)])
    t1 = time.time()
    del texts
    after_embed = rss()
    x = np.random.default_rng(0).standard_normal((n, v.shape[1])).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"d{i:07d}" for i in range(n)]
    t2 = time.time()
    r = semantic_duplicates(ids, [(0.0, 0, d) for d in ids], x, threshold=spec.threshold, o=SemanticOptions())
    t3 = time.time()
    return {
        "embed_s": t1 - t0,
        "pairs_s": t3 - t2,
        "clusters": r.clusters,
        "base_mb": base,
        "after_embed_mb": after_embed,
        "peak_mb": rss(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--planted", type=int, default=75, help="originals given a copy; the other English article pages stay unrelated")
    ap.add_argument("--memory-docs", type=int, default=100_000)
    ap.add_argument("--no-full", action="store_true", help="skip the full MiniLM (slow on CPUs)")
    ap.add_argument("--no-spark", action="store_true")
    args = ap.parse_args()
    if not PAGES.is_dir():
        print(f"skipped: {PAGES} is absent")
        return 0
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from documents.semantic import SemanticOptions
    from spark_jobs.dedup_semantic import embedding_model

    ids, texts, truth = planted_corpus(args.planted)
    n_unrel = len(ids) - 2 * len(truth)
    words = sum(len(t.split()) for t in texts) / len(texts)
    print(
        f"corpus: {len(ids)} documents ({len(truth)} originals with a planted copy each, {n_unrel} other pages; mean {words:.0f} words), "
        f"from {PAGES}"
    )
    specs = {"static": embedding_model(SemanticOptions(model="static"))}
    if not args.no_full:
        specs["full"] = embedding_model(SemanticOptions(model="full"))
    print("\n1. cosine: planted copy vs its original; every pair of unrelated pages")
    print(
        f"{'model':<7} {'thr':>5} {'planted p5':>10} {'p25':>6} {'median':>7} {'>=thr':>6} "
        f"{'unrel p99.9':>11} {'p99.99':>7} {'max':>6} {'unrel>=thr':>10} {'docs/CPU-s first pass':>22} {'again':>6}"
    )
    speeds, natural = {}, set()
    for kind, spec in specs.items():
        c = cosine_table(ids, texts, truth, spec)
        p, u = c["planted"], c["unrelated"]
        natural |= c["natural"]
        speeds[kind] = len(texts) / c["cpu_seconds"]
        again = len(texts) / c["warm_cpu_seconds"]
        print(
            f"{kind:<7} {spec.threshold:>5.2f} {np.percentile(p, 5):>10.3f} {np.percentile(p, 25):>6.3f} {np.median(p):>7.3f} "
            f"{(p >= spec.threshold).mean():>6.1%} {np.percentile(u, 99.9):>11.3f} {np.percentile(u, 99.99):>7.3f} {u.max():>6.3f} "
            f"{int((u >= spec.threshold).sum()):>10d} {speeds[kind]:>22.1f} {again:>6.0f}"
        )
        speeds[kind] = max(speeds[kind], again)
        for thr in (0.75, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96):
            print(f"        at {thr:.2f}: planted {(p >= thr).mean():>6.1%}, unrelated pairs {int((u >= thr).sum())}")
    print(f"({len(u):,} unrelated pairs; {len(natural)} pairs of pages the set holds twice, 5-gram Jaccard >= 0.2, set aside)")
    if "full" in speeds:
        print(
            f"static (second pass) / full: {speeds['static'] / speeds['full']:.0f}x the documents per CPU-second (one thread each, "
            f"same {len(texts)} documents; the static model reads whole texts, the full one 256 tokens)"
        )

    if not args.no_spark:
        from spark_jobs.session import SparkSettings, build_spark

        spark = build_spark(SparkSettings(master="local[2]", shuffle_partitions=2, show_progress=False))
        print(
            f"\n2. the dedup job (exact always on): recall of the {len(truth)} planted pairs; false removals among the "
            f"{len(ids) - len(truth)} documents that must stay"
        )
        print(f"{'passes':<28} {'recall':>7} {'false-removal rate':>19} {'false removals':>15}")
        with tempfile.TemporaryDirectory() as tmp:
            runs = [
                ("MinHash alone", True, False, "static"),
                ("semantic alone (static)", False, True, "static"),
                ("MinHash + semantic (static)", True, True, "static"),
            ]
            if not args.no_full:
                runs += [("semantic alone (full)", False, True, "full"), ("MinHash + semantic (full)", True, True, "full")]
            for k, (name, fuzzy, sem, model) in enumerate(runs):
                removed = run_job(spark, ids, texts, fuzzy, sem, model, Path(tmp) / str(k))
                r, fr, nf = score(removed, truth, ids, natural)
                print(f"{name:<28} {r:>7.1%} {fr:>19.2%} {nf:>15d}")
        spark.stop()

    if args.memory_docs:
        m = peak_memory(args.memory_docs, specs["static"])
        print(
            f"\n3. {args.memory_docs:,} documents, static model, one process (peak RSS before: {m['base_mb']:.0f} MB): "
            f"embedding synthetic texts (a Zipf word list, 150-600 words; not real text) {m['embed_s']:.0f} s, "
            f"peak RSS {m['after_embed_mb']:.0f} MB; k-means ({m['clusters']} clusters) + pairs on random unit vectors "
            f"{m['pairs_s']:.0f} s, peak RSS {m['peak_mb']:.0f} MB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
