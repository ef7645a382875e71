"""Fuzzy dedup throughput: Sluice vs DataTrove's MinHash pipeline vs datasketch's MinHashLSH.

Same documents, same settings (5-word shingles, 14 bands × 8 rows = 112 hash functions), same
cores, one run. The documents are generated articles (~250 words) with planted duplicates: 4%
exact copies and 8% near copies (0.5%, 1% or 2% of words edited, 5-gram Jaccard ≈ 0.8-0.95) of
an earlier article. Printed per side: seconds, docs/s, peak RSS and PSS of its own processes, recall
(planted copies removed) and false removals (documents removed that are no planted copy), then the
ratios, then Sluice alone at smaller sizes to show how time and memory grow. Each side (and each
size) runs in a fresh process, so no side's memory includes another's (Spark's JVM outlives
``spark.stop()``).

* Sluice: ``spark_jobs.dedup_job`` on local[cores] (signatures, exact groups, LSH candidate pairs,
  exact-Jaccard verification, connected components, outputs); the Spark session is started and
  warmed on one file before the clock.
* DataTrove: MinhashDedupSignature → Buckets → Cluster → Filter with ``LocalPipelineExecutor``,
  ``workers=cores``, reading the same Parquet files.
* datasketch: ``MinHash.update_batch`` per document and a ``MinHashLSH(params=(14, 8))`` query-
  then-insert loop in one process (its usual use).

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/dedup_throughput.py --docs 200000
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._measure import run_measured
from spark_jobs.session import SparkSettings

NGRAM, BANDS, ROWS = 5, 14, 8
EXACT_SHARE, NEAR_SHARE = 0.04, 0.08
NEAR_RATES = (0.005, 0.01, 0.02)


def _article(i: int) -> str:
    from sample_crawl import text as T

    title, paras = T.article(random.Random(f"dedup-bench:{i}"))
    return title + "\n" + "\n".join(paras)


def make_corpus(n: int, seed: int = 0) -> tuple[list[str], dict[int, int]]:
    """n texts; ``copies[i] = j`` when text i is a planted copy of original j < i."""
    from sample_crawl import text as T

    rng = random.Random(seed)
    plan: list[tuple[str, int, float]] = []
    originals: list[int] = []
    for i in range(n):
        r = rng.random()
        if originals and r < EXACT_SHARE:
            plan.append(("exact", rng.choice(originals), 0.0))
        elif originals and r < EXACT_SHARE + NEAR_SHARE:
            plan.append(("near", rng.choice(originals), rng.choice(NEAR_RATES)))
        else:
            plan.append(("new", i, 0.0))
            originals.append(i)
    with Pool(2) as pool:
        base = dict(zip(originals, pool.map(_article, originals, chunksize=2000)))
    texts, copies = [], {}
    for i, (kind, src, rate) in enumerate(plan):
        if kind == "new":
            texts.append(base[i])
            continue
        copies[i] = src
        if kind == "exact":
            texts.append(base[src])
        else:
            title, *paras = base[src].split("\n")
            texts.append("\n".join([title, *T.near_duplicate(random.Random(f"edit:{i}"), paras, rate)]))
    return texts, copies


def write_parquet(texts: list[str], out: Path, files: int) -> list[str]:
    import pyarrow.parquet as pq

    from spark_jobs.dedup_job import documents_table

    out.mkdir(parents=True, exist_ok=True)
    per = -(-len(texts) // files)
    paths = []
    for f in range(files):
        lo, hi = f * per, min(len(texts), (f + 1) * per)
        table = documents_table([f"d{i:08d}" for i in range(lo, hi)], texts[lo:hi])
        p = out / f"part-{f:03d}.parquet"
        pq.write_table(table, p, row_group_size=5000)
        paths.append(str(p))
    return paths


def score(removed: set[int], copies: dict[int, int]) -> tuple[float, int]:
    """(share of planted copies removed, number of removed documents that are no planted copy)."""
    return len(removed & set(copies)) / max(len(copies), 1), len(removed - set(copies))


OUTPUTS = ("documents", "rejected", "clusters", "index")


def run_sluice(spark, paths: list[str], work: Path, **options) -> set[int]:
    from documents.minhash import DedupOptions
    from spark_jobs.dedup_job import deduplicate_files

    # Only the removed ids come back to this process: the kept texts stay in their Parquet files (the
    # peers' sides, too, hold no output text), so the peak measured is the job's, not a read-back's.
    stats, tables = deduplicate_files(
        spark, paths, DedupOptions(ngram=NGRAM, bands=BANDS, rows=ROWS, **options), str(work), columns={n: ["doc_id"] for n in OUTPUTS}
    )
    print(
        f"  sluice passes: { {k: round(v, 1) for k, v in stats.seconds.items()} }, candidate pairs {stats.candidate_pairs}, "
        f"verified {stats.verified_pairs}",
        file=sys.stderr,
    )
    return {int(d[1:]) for d in tables["rejected"].column("doc_id").to_pylist()}


def run_datatrove(data_dir: Path, n_files: int, work: Path, workers: int) -> set[int]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter

    cfg = MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS)
    reader = lambda: ParquetReader(str(data_dir), id_key="doc_id", read_metadata=False)  # noqa: E731
    logs = work / "logs"
    s1 = LocalPipelineExecutor(
        pipeline=[reader(), MinhashDedupSignature(str(work / "sigs"), config=cfg)],
        tasks=n_files,
        workers=workers,
        logging_dir=str(logs / "s1"),
    )
    s2 = LocalPipelineExecutor(
        pipeline=[MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=cfg)],
        tasks=BANDS,
        workers=workers,
        logging_dir=str(logs / "s2"),
        depends=s1,
    )
    s3 = LocalPipelineExecutor(
        pipeline=[MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=cfg)],
        tasks=1,
        logging_dir=str(logs / "s3"),
        depends=s2,
    )
    s4 = LocalPipelineExecutor(
        pipeline=[
            reader(),
            MinhashDedupFilter(str(work / "remove"), exclusion_writer=JsonlWriter(str(work / "removed"), compression=None)),
            JsonlWriter(str(work / "kept"), compression=None),
        ],
        tasks=n_files,
        workers=workers,
        logging_dir=str(logs / "s4"),
        depends=s3,
    )
    s4.run()
    removed = set()
    for f in (work / "removed").glob("*.jsonl"):
        for line in f.open():
            removed.add(int(json.loads(line)["id"][1:]))
    return removed


def run_datasketch(paths: list[str]) -> set[int]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasketch import MinHash, MinHashLSH

    from documents.minhash import words

    texts = [t for p in paths for t in pq.read_table(p, columns=["text"]).column("text").to_pylist()]

    lsh = MinHashLSH(num_perm=BANDS * ROWS, params=(BANDS, ROWS))
    removed = set()
    for lo in range(0, len(texts), 1000):
        # Same normalisation as Sluice's (lower case, punctuation trimmed), done in Arrow for both.
        wl = words(pa.array(texts[lo : lo + 1000])).to_pylist()
        for k, w in enumerate(wl):
            shingles = {" ".join(w[i : i + NGRAM]).encode() for i in range(max(1, len(w) - NGRAM + 1))}
            m = MinHash(num_perm=BANDS * ROWS, seed=1)
            m.update_batch(list(shingles))
            key = lo + k
            if lsh.query(m):
                removed.add(key)
            else:
                lsh.insert(key, m)
    return removed


def run_side(args) -> int:
    """One side in this process (launched by main): time the work, not the start-up."""
    paths = sorted(str(p) for p in Path(args.data).glob("*.parquet"))
    if args.side == "sluice":
        from spark_jobs.session import SparkSettings, build_spark

        spark = build_spark(SparkSettings(master=f"local[{args.cores}]", show_progress=False, driver_memory=args.driver_memory))
        opts = {"verify": not args.no_verify, **({"verify_threshold": args.verify_threshold} if args.verify_threshold is not None else {})}
        if not args.semantic:  # the peers are MinHash only: compare like with like
            opts["semantic"] = {"enabled": False}
        # JIT, Python workers, Spark's first jobs; with the measured options (a warm-up with the semantic
        # pass loaded its model into the driver and the workers, and the peak counted it)
        run_sluice(spark, paths[:1], Path(args.out).with_suffix(".warm"), **opts)
        t0 = time.perf_counter()
        removed = run_sluice(spark, paths, Path(args.out).with_suffix(".work"), **opts)
    elif args.side == "datatrove":
        t0 = time.perf_counter()
        removed = run_datatrove(Path(args.data), len(paths), Path(args.out).with_suffix(".work"), args.cores)
    else:
        t0 = time.perf_counter()
        removed = run_datasketch(paths)
    Path(args.out).write_text(json.dumps({"seconds": time.perf_counter() - t0, "removed": sorted(removed)}))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--scales", default="50000,100000", help="smaller sizes for Sluice alone (comma-separated)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--skip", default="", help="comma-separated sides to leave out: datatrove,datasketch")
    ap.add_argument("--driver-memory", default=SparkSettings().driver_memory, help="Spark driver heap (local mode: the whole JVM)")
    ap.add_argument("--verify-threshold", type=float, default=None, help="Sluice's exact-Jaccard verification threshold (default: its own)")
    ap.add_argument("--no-verify", action="store_true", help="Sluice without verification (LSH candidates are edges)")
    ap.add_argument(
        "--semantic",
        action="store_true",
        help="Sluice with its semantic third pass (default: off, as the peers have none; on these template-made articles it "
        "removes thousands of distinct documents whose meaning is alike)",
    )
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--side", choices=["sluice", "datatrove", "datasketch"], help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        return run_side(args)
    skip = set(filter(None, args.skip.split(",")))
    passthrough = (
        ["--cores", str(args.cores), "--driver-memory", args.driver_memory, *(["--semantic"] if args.semantic else [])]
        + (["--no-verify"] if args.no_verify else [])
        + (["--verify-threshold", str(args.verify_threshold)] if args.verify_threshold is not None else [])
    )

    def side(name: str, data: Path, out: Path):
        """Run one side in a fresh process; its seconds (work only) and the peak memory of its own process tree."""
        import subprocess

        m = run_measured(
            [sys.executable, __file__, "--side", name, "--data", str(data), "--out", str(out), *passthrough],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        r = json.loads(out.read_text())
        return r["seconds"], (m.peak_rss_mb, m.peak_pss_mb), set(r["removed"])

    work = Path(tempfile.mkdtemp(prefix="sluice-dedup-bench-"))
    results: dict = {"docs": args.docs, "cores": args.cores}
    try:
        t0 = time.time()
        texts, copies = make_corpus(args.docs)
        data = work / "data"
        paths = write_parquet(texts, data, args.files)
        words_total = sum(len(t.split()) for t in texts[:5000]) / min(5000, len(texts))
        sub_sets = [int(x) for x in args.scales.split(",") if x]
        for n in sub_sets:
            write_parquet(texts[:n], work / f"data-{n}", args.files)
        del texts
        gc.collect()
        print(
            f"corpus: {args.docs} documents (~{words_total:.0f} words each), {len(copies)} planted copies, "
            f"{sum(Path(p).stat().st_size for p in paths) / 1e6:.0f} MB Parquet, made in {time.time() - t0:.0f}s",
            file=sys.stderr,
        )

        sides: dict[str, tuple] = {}
        for name in ("sluice", "datatrove", "datasketch"):
            if name in skip:
                continue
            secs, mem, removed = side(name, data, work / f"{name}.json")
            sides[name] = (secs, mem, *score(removed, copies))
            print(f"{name}: {secs:.1f}s, peak RSS {mem[0]:.0f} MB, PSS {mem[1]:.0f} MB", file=sys.stderr)
        scaling = []
        for n in sub_sets:
            secs, mem, removed = side("sluice", work / f"data-{n}", work / f"sluice-{n}.json")
            scaling.append((n, secs, mem, *score(removed, {k: v for k, v in copies.items() if k < n})))
        scaling.append((args.docs, *sides["sluice"]))

        labels = {
            "sluice": f"sluice (Spark local[{args.cores}])",
            "datatrove": f"datatrove ({args.cores} workers)",
            "datasketch": "datasketch MinHashLSH (1 process)",
        }
        print(
            f"\n{args.docs} documents, {BANDS}×{ROWS} LSH over {NGRAM}-word shingles, {args.cores} cores, each side in its own "
            f"process (seconds: the work, start-up excluded; peak memory: the side's own process tree, start-up included, not\n"
            f"this benchmark's process, which holds the corpus; RSS summed over processes, PSS counting shared pages once)"
        )
        print(
            f"{'side':36s} {'seconds':>8s} {'docs/s':>8s} {'peak RSS MB':>12s} {'peak PSS MB':>12s} {'recall':>7s} {'false removals':>15s}"
        )
        for key, (secs, (rss, pss), rec, false) in sides.items():
            print(f"{labels[key]:36s} {secs:8.1f} {args.docs / secs:8.0f} {rss:12.0f} {pss:12.0f} {rec:7.4f} {false:15d}")
            results[key] = {
                "seconds": secs,
                "docs_per_s": args.docs / secs,
                "peak_rss_mb": rss,
                "peak_pss_mb": pss,
                "recall": rec,
                "false_removals": false,
            }
        for peer in ("datatrove", "datasketch"):
            if peer in sides:
                ratio = sides[peer][0] / sides["sluice"][0]
                rss_ratio, pss_ratio = (sides["sluice"][1][i] / sides[peer][1][i] for i in (0, 1))
                print(f"sluice / {peer}: {ratio:.2f}× docs/s; memory {rss_ratio:.2f}× theirs (RSS), {pss_ratio:.2f}× (PSS)")
                results[f"ratio_vs_{peer}"] = ratio
                results[f"memory_ratio_vs_{peer}"] = {"rss": rss_ratio, "pss": pss_ratio}
        sig_bytes = BANDS * ROWS * 4 + BANDS * 8
        print(f"\nSluice by size, Spark driver heap {args.driver_memory} (signature data = {sig_bytes} bytes per document)")
        print(
            f"{'docs':>8s} {'seconds':>8s} {'docs/s':>8s} {'peak RSS MB':>12s} {'peak PSS MB':>12s} {'signatures MB':>14s} {'recall':>7s}"
        )
        for n, secs, (rss, pss), rec, _ in sorted(scaling, key=lambda x: x[0]):
            print(f"{n:8d} {secs:8.1f} {n / secs:8.0f} {rss:12.0f} {pss:12.0f} {n * sig_bytes / 2**20:14.1f} {rec:7.4f}")
        results["scaling"] = [
            {"docs": n, "seconds": secs, "peak_rss_mb": mem[0], "peak_pss_mb": mem[1], "recall": rec} for n, secs, mem, rec, _ in scaling
        ]
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
