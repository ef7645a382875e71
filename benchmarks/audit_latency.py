"""Audit latency on a lakehouse of several crawls: `sluice trace` (pushdown on doc_id/url through
delta-rs + PyArrow) against a naive trace that reads every table whole and filters in memory (what
a script without the table layout would do), then the wall time of a domain takedown.

    python benchmarks/audit_latency.py [--crawls 3 --pages 20000 | --landing DIR] [--lakehouse DIR]

Without a lakehouse, one is built with `sluice run` (raw_crawl → decontaminated, built-in quality
score) from the crawl folders of ``--landing``, or from ``--crawls`` sample crawls of ``--pages``
pages generated first (each a re-crawl of the same sites with a new seed). The takedown runs last,
on the benchmark's own lakehouse.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audit.trace import trace  # noqa: E402
from documents.blocklist import host_of  # noqa: E402
from storage import tables as T  # noqa: E402
from storage.delta_table import open_table, read_arrow, table_exists  # noqa: E402


def build(landing: Path, lakehouse: Path) -> float:
    conf = lakehouse.parent / f"{lakehouse.name}.yaml"
    evals = next(landing.glob("*/eval_set.jsonl"), None)
    conf.write_text(
        json.dumps(
            {
                "lakehouse_dir": str(lakehouse),
                "landing_dir": str(landing),
                "scoring": {"scorers": [{"name": "quality", "kind": "signals", "model": "builtin:signals-v1"}]},
                **({"decontamination": {"benchmarks": [{"name": "evals", "path": str(evals), "fields": ["question"]}]}} if evals else {}),
            }
        )
    )
    t0 = time.time()
    subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "sluice"),
            "run",
            "--config",
            str(conf),
            "--select",
            "raw_crawl,filtered,deduplicated,quality_scored,rewritten,decontaminated",
        ],
        check=True,
    )
    return time.time() - t0


def naive_trace(root: Path, doc_id: str) -> int:
    """Every table read whole (all columns but the HTML), then filtered: the baseline."""
    hits = 0
    for name, spec in T.TABLES.items():
        if not table_exists(root / name):
            continue
        have = set(open_table(root / name).schema().to_arrow().names)
        cols = [c for c in [c for c, _ in spec.columns if c != "html"] + list(spec.partition_by) if c in have]
        t = read_arrow(root / name, columns=cols)
        for c in ("doc_id", "source_doc_id", "related_doc_id"):
            if c in t.column_names:
                hits += sum(1 for v in t.column(c).to_pylist() if v == doc_id)
    return hits


def sample_ids(root: Path, n: int, seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)
    rej = read_arrow(root / T.REJECTIONS.name, columns=["doc_id", "stage"]).to_pylist()
    by_stage: dict[str, list[str]] = {}
    for r in rej:
        by_stage.setdefault(f"rejected at {r['stage']}", []).append(r["doc_id"])
    by_stage["kept to decontaminated"] = read_arrow(root / T.DECONTAMINATED.name, columns=["doc_id"]).column("doc_id").to_pylist()
    per = max(1, n // len(by_stage))
    return {k: rng.sample(v, min(per, len(v))) for k, v in by_stage.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--landing", type=Path)
    ap.add_argument("--crawls", type=int, default=3)
    ap.add_argument("--pages", type=int, default=20000)
    ap.add_argument("--lakehouse", type=Path, default=REPO / "benchmarks" / ".audit-lake")
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--naive", type=int, default=5, help="documents traced the naive way (each reads every table)")
    ap.add_argument("--no-takedown", action="store_true")
    args = ap.parse_args()
    root = args.lakehouse.resolve()
    if not args.landing and not table_exists(root / T.RAW_CRAWL.name):
        from sample_crawl import generate_crawl

        args.landing = root.parent / f"{root.name}-landing"
        for i in range(1, args.crawls + 1):
            if not (args.landing / f"cc-{i}").is_dir():
                print(f"generating crawl cc-{i} ({args.pages} pages) …", file=sys.stderr)
                generate_crawl(args.landing / f"cc-{i}", args.pages, seed=100 + i, recrawl=int(i > 1))
    if args.landing and not table_exists(root / T.RAW_CRAWL.name):
        print(f"building {root} from {args.landing} …", file=sys.stderr)
        print(f"pipeline: {build(args.landing.resolve(), root):.0f}s", file=sys.stderr)
    crawls = Counter(read_arrow(root / T.RAW_CRAWL.name, columns=["crawl_id"]).column("crawl_id").to_pylist())
    print(
        f"lakehouse {root}: {len(crawls)} crawls, {sum(crawls.values()):,} documents in raw_crawl, "
        f"{sum(1 for _ in root.rglob('*.parquet')):,} Parquet files"
    )

    ids = sample_ids(root, args.samples)
    times: dict[str, list[float]] = {}
    for kind, sample in ids.items():
        for d in sample:
            t0 = time.perf_counter()
            r = trace(root, doc_id=d)
            times.setdefault(kind, []).append(time.perf_counter() - t0)
            assert r["documents"][0]["found"], d
    all_t = sorted(x for v in times.values() for x in v)
    print(
        f"\ntrace by doc_id ({len(all_t)} documents): median {statistics.median(all_t) * 1000:.0f} ms, "
        f"p95 {all_t[int(0.95 * (len(all_t) - 1))] * 1000:.0f} ms, max {all_t[-1] * 1000:.0f} ms"
    )
    for kind, v in sorted(times.items()):
        print(f"  {kind:<26} n={len(v):>3}  median {statistics.median(v) * 1000:6.0f} ms")
    urls = read_arrow(root / T.FILTERED.name, columns=["url"]).column("url").to_pylist()[:10]
    ut = []
    for u in urls:
        t0 = time.perf_counter()
        trace(root, url=u)
        ut.append(time.perf_counter() - t0)
    print(f"trace by --url ({len(ut)}): median {statistics.median(ut) * 1000:.0f} ms")

    naive = []
    for d in [x for v in ids.values() for x in v][: args.naive]:
        t0 = time.perf_counter()
        naive_trace(root, d)
        naive.append(time.perf_counter() - t0)
    ours = statistics.median(all_t)
    print(
        f"naive trace (read every table whole, filter in memory; {len(naive)}): median {statistics.median(naive):.2f} s "
        f"→ pushdown is {statistics.median(naive) / ours:.1f}× faster"
    )

    if not args.no_takedown:
        from audit.takedown import Request, takedown

        hosts = Counter(host_of(u) for u in read_arrow(root / T.FILTERED.name, columns=["url"]).column("url").to_pylist())
        domain = sorted(hosts.items(), key=lambda kv: (-kv[1], kv[0]))[len(hosts) // 2][0]
        t0 = time.time()
        res = takedown(root, Request("domain", domain, "benchmark", "BENCH-1"), progress=lambda m: print(m, file=sys.stderr))
        took = time.time() - t0
        rows = sum(v["rows"] for v in res["rows_removed"].values())
        print(
            f"\ntakedown of domain {domain}: {res['documents']} documents, {rows} rows from {len(res['rows_removed'])} tables, "
            f"{res['files_purged']} old files purged, {res['scrub']['files_scrubbed']} other files scrubbed, "
            f"verified clean: {res['verification']['clean']} — {took:.1f} s wall"
        )
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # PyArrow scanner threads can abort interpreter teardown (see orchestration/cli/__init__.py)
