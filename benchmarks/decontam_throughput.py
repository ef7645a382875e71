"""Benchmark decontamination: Sluice vs DataTrove's n-gram decontamination filter, against all of
GSM8K and MMLU (../shared/data/benchmarks), same documents, same n (13), same cores, one run.

The corpus: generated articles (~250 words). Planted:
* contaminated (0.5%): a GSM8K problem (question + answer) or an MMLU row (question + choices),
  verbatim, inside a longer page, across line breaks, or with changed case and punctuation;
* hard negatives (1%): pages sharing the benchmarks' common phrases ("Which of the following",
  "How many ... does") but no 13 words of any item;
* web-common text (0.5%): pages quoting "We hold these truths to be self-evident, that all men are
  created equal" — which an MMLU item also quotes. It is not contamination of those pages; a
  decontaminator that removes them throws away ordinary web text (the peers' known failure).

Printed per side: seconds (index build and the pass over the documents, writing the kept ones),
docs/s, peak RSS of the side's process tree, recall on the contaminated pages, false removals
(and how many of them are the web-common pages), then the ratio, then Sluice at smaller sizes.

DataTrove's index builder loads benchmarks through lighteval, which needs the Hugging Face hub; its
index is built here the way its code does (``NGramsDecontIndexer.compute_hashes``: the same
tokenizer, normalisation and hash, ``find_query_ngrams=True`` so that questions are matched as
Sluice matches them; label = GSM8K's answer / MMLU's correct choice) and written as its
``<task>.index.hashes`` files, which ``NGramsDecontFilter`` then reads.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/decontam_throughput.py --docs 200000
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._measure import run_measured
from benchmarks.dedup_throughput import write_parquet

BENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"
NGRAM = 13
QUOTE = "We hold these truths to be self-evident, that all men are created equal, that they are endowed with certain rights."
NEGATIVE = "Which of the following is true about the new release? How many users does the project have now? The notes say more."


def load_items() -> tuple[list[dict], list[list[str]]]:
    gsm = [json.loads(l) for l in (BENCH / "gsm8k" / "test.jsonl").read_text().splitlines() if l.strip()]
    mmlu = [row for f in sorted((BENCH / "mmlu" / "test").glob("*.csv")) for row in csv.reader(f.open(encoding="utf-8"))]
    return gsm, mmlu


def options(mmlu_dir: Path, gsm_file: Path):
    from documents.decontam import BenchmarkSpec, DecontamOptions

    return DecontamOptions(
        ngram=NGRAM,
        benchmarks=[
            BenchmarkSpec(name="gsm8k", path=str(gsm_file), fields=["question", "answer"]),
            BenchmarkSpec(name="mmlu", path=str(mmlu_dir), format="csv", header=False, fields=[0, 1, 2, 3, 4]),
        ],
    )


def make_corpus(n: int, seed: int = 0) -> tuple[list[str], set[int], set[int]]:
    """(texts, contaminated ids, web-common quote ids)."""
    from sample_crawl import text as T

    gsm, mmlu = load_items()
    rng = random.Random(seed)
    texts, dirty, quotes = [], set(), set()
    for i in range(n):
        title, paras = T.article(random.Random(f"decontam-bench:{i}"))
        body = title + "\n" + "\n".join(paras)
        r = rng.random()
        if r < 0.005:
            if rng.random() < 0.5:
                g = rng.choice(gsm)
                item = g["question"] + " " + g["answer"]
            else:
                item = " ".join(rng.choice(mmlu)[:5])
            way = rng.randrange(4)
            if way == 1:
                item = "\n".join(re.findall(r"(?:\S+\s*){1,4}", item))
            elif way == 2:
                item = item.upper().replace(",", " ;").replace("?", " ?!")
            body = item if way == 3 else body + "\n\n" + item + "\n\n" + paras[0]
            dirty.add(i)
        elif r < 0.015:
            body = body + "\n" + NEGATIVE
        elif r < 0.02:
            body = body + "\n" + QUOTE
            quotes.add(i)
        texts.append(body)
    return texts, dirty, quotes


def run_mixture(spark, work: Path, docs: int) -> float:
    """Sluice's mixture build over the decontaminated documents of run_sluice: two sources (long
    and other pages), half the tokens each, a budget of ~100 tokens per document; its seconds."""
    from pyspark.sql import functions as F

    from documents.mixture import MixtureSpec
    from spark_jobs.mix_job import build_mixture

    spec = MixtureSpec(
        name="bench",
        token_budget=100 * docs,
        seed=1,
        sources=[{"name": "long", "where": "length(text) >= 1500", "weight": 0.5}, {"name": "other", "weight": 0.5}],
    )
    kept = spark.read.parquet(str(work / "kept")).withColumn("crawl_id", F.lit("bench"))
    t0 = time.perf_counter()
    build_mixture(spark, kept, spec, str(work / "mix-scratch"), str(work / "mixed"))
    return time.perf_counter() - t0


def run_sluice(spark, paths: list[str], work: Path) -> set[int]:
    import pyarrow.parquet as pq

    from documents.decontam import build_index
    from spark_jobs.decontam_job import decontaminate

    o = options(BENCH / "mmlu" / "test", BENCH / "gsm8k" / "test.jsonl")
    index = build_index(o)
    stats = decontaminate(spark, {"deduplicated": paths}, index, o, str(work / "scratch"), str(work / "kept"), str(work / "rej"), "bench")
    print(
        f"  sluice: {index.ngrams} benchmark n-grams; suppressed {len(stats.suppressed)} frequent n-grams "
        f"(> {stats.threshold:.0f} documents)",
        file=sys.stderr,
    )
    return (
        {int(d[1:]) for d in pq.read_table(work / "rej", columns=["doc_id"]).column("doc_id").to_pylist()}
        if (work / "rej").exists()
        else set()
    )


def datatrove_index(folder: Path) -> None:
    """DataTrove's index, built the way NGramsDecontIndexer does (without lighteval's hub loader)."""
    from types import SimpleNamespace

    import numpy as np
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontIndexer
    from datatrove.utils.hashing import create_hash_func
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    cfg = NGramsDecontConfig(n_grams=NGRAM, find_query_ngrams=True)
    me = SimpleNamespace(tokenizer=load_word_tokenizer("en"), config=cfg, hash_func=create_hash_func(cfg.hash_config))
    gsm, mmlu = load_items()
    tasks = {"gsm8k": set(), "mmlu": set()}
    for g in gsm:
        tasks["gsm8k"].update(NGramsDecontIndexer.compute_hashes(me, g["answer"], g["question"]))
    for row in mmlu:
        gold = row[1 + "ABCD".index(row[5])] if len(row) > 5 and row[5] in "ABCD" else row[-1]
        tasks["mmlu"].update(NGramsDecontIndexer.compute_hashes(me, gold, " ".join(row[:5])))
    folder.mkdir(parents=True, exist_ok=True)
    for name, hashes in tasks.items():
        np.array(sorted(hashes), dtype=cfg.hash_config.np_descr).tofile(folder / f"{name}.index.hashes")


def run_datatrove(data_dir: Path, n_files: int, work: Path, workers: int) -> set[int]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter

    datatrove_index(work / "index")
    cfg = NGramsDecontConfig(n_grams=NGRAM, find_query_ngrams=True)
    LocalPipelineExecutor(
        pipeline=[
            ParquetReader(str(data_dir), id_key="doc_id", read_metadata=False),
            NGramsDecontFilter(str(work / "index"), config=cfg, exclusion_writer=JsonlWriter(str(work / "removed"), compression=None)),
            JsonlWriter(str(work / "kept"), compression=None),
        ],
        tasks=n_files,
        workers=workers,
        logging_dir=str(work / "logs"),
    ).run()
    removed = set()
    for f in (work / "removed").glob("*.jsonl"):
        for line in f.open():
            removed.add(int(json.loads(line)["id"][1:]))
    return removed


def run_side(args) -> int:
    import pyarrow.parquet as pq

    paths = sorted(str(p) for p in Path(args.data).glob("*.parquet"))
    out = Path(args.out)
    if args.side == "sluice":
        from spark_jobs.session import SparkSettings, build_spark

        spark = build_spark(SparkSettings(master=f"local[{args.cores}]", show_progress=False, driver_memory=args.driver_memory))
        run_sluice(spark, paths[:1], out.with_suffix(".warm"))  # Spark's first jobs, Python workers
        t0 = time.perf_counter()
        removed = run_sluice(spark, paths, out.with_suffix(".work"))
        seconds = time.perf_counter() - t0
        mix = run_mixture(spark, out.with_suffix(".work"), sum(pq.ParquetFile(p).metadata.num_rows for p in paths))
        out.write_text(json.dumps({"seconds": seconds, "mixture_seconds": mix, "removed": sorted(removed)}))
        return 0
    else:
        t0 = time.perf_counter()
        removed = run_datatrove(Path(args.data), len(paths), out.with_suffix(".work"), args.cores)
    out.write_text(json.dumps({"seconds": time.perf_counter() - t0, "removed": sorted(removed)}))
    return 0


def main() -> int:
    from spark_jobs.session import SparkSettings

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--scales", default="50000,100000", help="smaller sizes for Sluice alone (comma-separated)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--skip", default="", help="datatrove: leave the peer out")
    ap.add_argument("--driver-memory", default=SparkSettings().driver_memory)
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--side", choices=["sluice", "datatrove"], help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        return run_side(args)
    if not BENCH.is_dir():
        print(f"{BENCH} is absent: nothing to benchmark (GSM8K and MMLU live in ../shared/data/benchmarks)")
        return 0

    mix_seconds: dict = {}

    def side(name: str, data: Path, out: Path):
        import subprocess

        m = run_measured(
            [
                sys.executable,
                __file__,
                "--side",
                name,
                "--data",
                str(data),
                "--out",
                str(out),
                "--cores",
                str(args.cores),
                "--driver-memory",
                args.driver_memory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        r = json.loads(out.read_text())
        mix_seconds[(name, str(data))] = r.get("mixture_seconds")
        return r["seconds"], m.peak_rss_mb, set(r["removed"])

    def score(removed: set[int], dirty: set[int], quotes: set[int]) -> tuple[float, int, int]:
        return len(removed & dirty) / max(len(dirty), 1), len(removed - dirty), len(removed & quotes)

    work = Path(tempfile.mkdtemp(prefix="sluice-decontam-bench-"))
    results: dict = {"docs": args.docs, "cores": args.cores, "ngram": NGRAM}
    try:
        t0 = time.time()
        texts, dirty, quotes = make_corpus(args.docs)
        paths = write_parquet(texts, work / "data", args.files)
        subs = [int(x) for x in args.scales.split(",") if x]
        for n in subs:
            write_parquet(texts[:n], work / f"data-{n}", args.files)
        del texts
        gc.collect()
        print(
            f"corpus: {args.docs} documents, {len(dirty)} contaminated, {len(quotes)} quoting web-common benchmark text, "
            f"{sum(Path(p).stat().st_size for p in paths) / 1e6:.0f} MB Parquet, made in {time.time() - t0:.0f}s",
            file=sys.stderr,
        )
        sides = {}
        for name in ("sluice", "datatrove"):
            if name in args.skip.split(","):
                continue
            secs, rss, removed = side(name, work / "data", work / f"{name}.json")
            sides[name] = (secs, rss, *score(removed, dirty, quotes))
            print(f"{name}: {secs:.1f}s, peak RSS {rss:.0f} MB", file=sys.stderr)
        scaling = []
        for n in subs:
            secs, rss, removed = side("sluice", work / f"data-{n}", work / f"sluice-{n}.json")
            scaling.append(
                (
                    n,
                    secs,
                    rss,
                    *score(removed, {d for d in dirty if d < n}, {q for q in quotes if q < n}),
                    mix_seconds[("sluice", str(work / f"data-{n}"))],
                )
            )
        if "sluice" in sides:
            scaling.append((args.docs, *sides["sluice"], mix_seconds[("sluice", str(work / "data"))]))
        labels = {"sluice": f"sluice (Spark local[{args.cores}])", "datatrove": f"datatrove NGramsDecontFilter ({args.cores} workers)"}
        print(
            f"\n{args.docs} documents against GSM8K + MMLU, {NGRAM}-grams, {args.cores} cores, each side in its own process "
            f"(seconds: index build + the pass, start-up excluded)"
        )
        print(
            f"{'side':44s} {'seconds':>8s} {'docs/s':>8s} {'peak RSS MB':>12s} {'recall':>7s} {'false removals':>15s} {'of them web-common':>19s}"
        )
        for key, (secs, rss, rec, false, quoted) in sides.items():
            print(f"{labels[key]:44s} {secs:8.1f} {args.docs / secs:8.0f} {rss:12.0f} {rec:7.4f} {false:15d} {quoted:19d}")
            results[key] = {
                "seconds": secs,
                "docs_per_s": args.docs / secs,
                "peak_rss_mb": rss,
                "recall": rec,
                "false_removals": false,
                "web_common_removed": quoted,
            }
        if len(sides) == 2:
            results["ratio_docs_per_s"] = sides["datatrove"][0] / sides["sluice"][0]
            print(f"sluice / datatrove: {results['ratio_docs_per_s']:.2f}× docs/s")
        print("\nSluice by size (decontamination; then the mixture build over its output: tokenize, plan, sample, write)")
        print(f"{'docs':>8s} {'seconds':>8s} {'docs/s':>8s} {'peak RSS MB':>12s} {'recall':>7s} {'mix seconds':>12s} {'mix docs/s':>11s}")
        for n, secs, rss, rec, _f, _q, mix in sorted(scaling):
            print(f"{n:8d} {secs:8.1f} {n / secs:8.0f} {rss:12.0f} {rec:7.4f} {mix:12.1f} {n / mix:11.0f}")
        results["scaling"] = [
            {"docs": n, "seconds": s, "peak_rss_mb": r, "recall": rec, "mixture_seconds": mix} for n, s, r, rec, _f, _q, mix in scaling
        ]
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
