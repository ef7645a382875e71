"""How each stage grows with the crawl: `sluice run` (every CPU stage, the GPU stages on CPU with
the default scorers) on generated crawls of increasing size, in local mode and on a Spark
standalone cluster (infra/spark/local-cluster.sh), with each stage's seconds, its peak memory and
the fitted growth exponent b of seconds ∝ pages^b (target: b ≤ 1.1 for every stage).

    python benchmarks/scaling_curve.py [--pages 10000 50000 200000] [--modes local cluster] [--out DIR]

Seconds come from the stages' own MLflow runs (metric ``seconds``). Peak memory is the largest
resident set of the whole process tree of the run (driver, JVM, Python workers, GPU jobs, the
cluster's executors) sampled every 0.25 s while the stage's MLflow run was open. Prints a table
per mode and writes ``scaling.png`` (log-log seconds and peak memory per stage) and
``scaling.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._measure import tree_memory  # noqa: E402  (after the path insert)
from benchmarks.stage_timing import stage_names  # noqa: E402


def run_once(crawl: Path, lake: Path, master: str | None, cluster_pids: list[int]) -> dict[str, dict[str, float]]:
    """One `sluice run`; per stage: seconds and peak memory (RSS and PSS bytes, benchmarks/_measure.py)."""
    import psutil
    from mlflow.tracking import MlflowClient

    env = {**os.environ, "SLUICE_LAKEHOUSE_DIR": str(lake), "SLUICE_SPARK__SHOW_PROGRESS": "false"}
    env.pop("SLUICE_CONFIG", None)
    if master:
        env["SLUICE_SPARK__MASTER"] = master
    samples: list[tuple[float, int, int]] = []
    proc = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "sluice"), "run", "--crawl", str(crawl)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def sample() -> None:
        while proc.poll() is None:
            rss = pss = 0
            for pid in [proc.pid, *cluster_pids]:
                try:
                    r, p = tree_memory(psutil.Process(pid))
                except psutil.NoSuchProcess:
                    continue
                rss, pss = rss + r, pss + p
            samples.append((time.time() * 1000, rss, pss))
            time.sleep(0.25)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    if proc.wait() != 0:
        raise SystemExit(f"sluice run failed on {crawl} (log in {lake / '_logs'})")
    t.join()
    client = MlflowClient(f"sqlite:///{lake / '_mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("sluice")
    out = {}
    for r in client.search_runs([exp.experiment_id], "tags.`sluice.level` = 'stage'"):
        stage = r.data.tags.get("dagster.asset")
        start, end = r.info.start_time, r.info.end_time or samples[-1][0]
        window = [(m, p) for ts, m, p in samples if start <= ts <= end]
        out[stage] = {
            "seconds": r.data.metrics.get("seconds", (end - start) / 1000),
            "peak_bytes": max((m for m, _ in window), default=0),
            "peak_pss_bytes": max((p for _, p in window), default=0),
        }
    return out


def _pss(cell: dict) -> int:
    return cell.get("peak_pss_bytes", cell["peak_bytes"])  # runs recorded before PSS was sampled: RSS


def exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y on log x."""
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-3)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def plot(results: dict, names: list[str], out: Path) -> None:
    from quality.plots import _pyplot

    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    for mode, by_pages in results.items():
        pages = sorted(int(p) for p in by_pages)
        for i, s in enumerate(names):
            if all(s in by_pages[str(p)] for p in pages):
                style = dict(color=f"C{i}", marker="o" if mode == "local" else "s", linestyle="-" if mode == "local" else "--")
                ax1.plot(pages, [by_pages[str(p)][s]["seconds"] for p in pages], label=f"{s} ({mode})", **style)
                ax2.plot(pages, [_pss(by_pages[str(p)][s]) / 2**30 for p in pages], label=f"{s} ({mode})", **style)
    for ax, title in ((ax1, "seconds per stage"), (ax2, "peak memory (PSS) per stage (GiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log" if ax is ax1 else "linear")
        ax.set_xlabel("pages in the crawl")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    ax1.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, nargs="+", default=[10000, 50000, 200000])
    ap.add_argument("--modes", nargs="+", default=["local", "cluster"], choices=["local", "cluster"])
    ap.add_argument("--workers", type=int, default=2, help="cluster workers (1 core each)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--report", action="store_true", help="only print the table and plot of the runs recorded in --out")
    args = ap.parse_args()
    from sample_crawl import generate_crawl

    work = args.out or Path(tempfile.mkdtemp(prefix="sluice-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict]] = json.loads((work / "scaling.json").read_text()) if args.report else {}
    for mode in [] if args.report else args.modes:
        master, pids, env = None, [], {**os.environ, "SLUICE_SPARK_CLUSTER_DIR": str(work / "spark-cluster")}
        script = REPO / "infra" / "spark" / "local-cluster.sh"
        if mode == "cluster":
            out = subprocess.run([str(script), "start", str(args.workers), "1", "4g"], env=env, capture_output=True, text=True, check=True)
            master = out.stdout.strip().splitlines()[-1]
            pids = [int((work / "spark-cluster" / f).read_text()) for f in os.listdir(work / "spark-cluster") if f.endswith(".pid")]
        try:
            for n in args.pages:
                crawl = work / "landing" / f"pages-{n}"
                if not (crawl / ".complete").exists():
                    print(f"generating {n} pages", file=sys.stderr)
                    generate_crawl(crawl, n, seed=5)
                    (crawl / ".complete").touch()
                print(f"{mode}: sluice run on {n} pages", file=sys.stderr)
                t0 = time.time()
                results.setdefault(mode, {})[str(n)] = run_once(crawl, work / f"lake-{mode}-{n}", master, pids)
                print(f"  {time.time() - t0:.0f} s", file=sys.stderr)
                (work / "scaling.json").write_text(json.dumps(results, indent=1))
        finally:
            if mode == "cluster":
                subprocess.run([str(script), "stop"], env=env, capture_output=True)
    names = stage_names()  # the registry's, in pipeline order; a stage the runs did not materialize is not shown
    for mode, by_pages in results.items():
        pages = sorted(int(p) for p in by_pages)
        print(f"\n{mode} mode, 2 cores: seconds (peak GiB, RSS/PSS) per stage")
        print(f"{'stage':<20}" + "".join(f"{p:>18,}" for p in pages) + f"{'exponent b':>12}")
        for s in names:
            if not all(s in by_pages[str(p)] for p in pages):
                continue
            cells = [by_pages[str(p)][s] for p in pages]
            b = exponent(pages, [c["seconds"] for c in cells]) if len(pages) > 1 else float("nan")
            print(
                f"{s:<20}"
                + "".join(f"{c['seconds']:>10.1f} ({c['peak_bytes'] / 2**30:3.1f}/{_pss(c) / 2**30:3.1f})" for c in cells)
                + f"{b:>12.2f}"
                + ("  > 1.1" if b > 1.1 else "")
            )
        total = [sum(by_pages[str(p)][s]["seconds"] for s in names if s in by_pages[str(p)]) for p in pages]
        # the stages' seconds, not `sluice run`'s wall time (which adds JVM start-up and Dagster)
        if len(pages) > 1:
            print(f"{'all stages':<20}" + "".join(f"{t:>10.1f}{'':8s}" for t in total) + f"{exponent(pages, total):>12.2f}")
    plot(results, names, work / "scaling.png")
    print(f"\nplot: {work / 'scaling.png'}; figures: {work / 'scaling.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
