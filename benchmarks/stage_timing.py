"""Where a CPU-only run spends its time: every stage of `sluice run` on one sample crawl, from the
stages' own MLflow runs (metric ``seconds``), with ``quality_scored`` and ``quality_classifier``
as ratios of ``filtered``.

    python benchmarks/stage_timing.py [--pages 10000] [--model-kind fasttext|hf] [--driver-memory 4g 1g]

``--model-kind hf`` trains the MiniLM head instead of fastText, the comparison the CPU default is
meant to win: run it twice to see both sides. ``--driver-memory 4g 1g`` runs the same crawl under
each Spark driver heap, side by side, with the peak RSS of each run's process tree.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def stage_names() -> list[str]:
    """Every stage of the registry, in pipeline order (a stage this run did not materialize is not printed)."""
    from assets import stages

    return [spec.name for spec, _ in stages()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pages", type=int, default=10000)
    ap.add_argument("--model-kind", default="fasttext", choices=["fasttext", "hf"])
    ap.add_argument("--workdir", type=Path, help="default: a temporary folder")
    ap.add_argument(
        "--driver-memory",
        nargs="+",
        default=[None],
        help="Spark driver heaps to run side by side on the same crawl, e.g. 4g 1g (default: the configured default)",
    )
    args = ap.parse_args()
    from mlflow.tracking import MlflowClient

    from benchmarks._measure import measure
    from sample_crawl import generate_crawl
    from spark_jobs.session import SparkSettings

    work = args.workdir or Path(tempfile.mkdtemp(prefix="sluice-stage-timing-"))
    crawl = work / "landing" / "bench"
    if not crawl.is_dir():
        generate_crawl(crawl, args.pages, seed=5)
    runs = {}
    for heap in args.driver_memory:
        heap = heap or SparkSettings().driver_memory
        lake = work / f"lake-{args.model_kind}-{heap}"
        conf = work / f"{args.model_kind}-{heap}.yaml"
        conf.write_text(
            json.dumps(
                {
                    "lakehouse_dir": str(lake),
                    "classifier": {"model_kind": args.model_kind},
                    "scoring": {"ensembles": [{"name": "ensemble", "of": ["quality", "classifier"]}]},
                    "spark": {"driver_memory": heap},
                }
            )
        )
        with measure() as m:  # the run's whole process tree: JVM, Python workers, model jobs
            subprocess.run([str(REPO / ".venv" / "bin" / "sluice"), "run", "--config", str(conf), "--crawl", str(crawl)], check=True)
        client = MlflowClient(f"sqlite:///{lake / '_mlflow' / 'mlflow.db'}")
        exp = client.get_experiment_by_name("sluice")
        seconds = {}
        for r in client.search_runs([exp.experiment_id], "tags.`sluice.level` = 'stage'"):
            seconds[r.data.tags.get("dagster.asset")] = r.data.metrics.get("seconds")
        runs[heap] = (m, seconds)

    print(f"\n{args.pages} pages, classifier {args.model_kind}, 2 cores")
    for heap, (m, seconds) in runs.items():
        print(f"driver heap {heap}: sluice run {m.seconds:.0f}s wall, peak RSS {m.peak_rss_mb:.0f} MB (its process tree)")
        base = seconds.get("filtered") or float("nan")
        for s in stage_names():
            if s in seconds and seconds[s] is not None:
                print(f"  {s:<20} {seconds[s]:8.1f} s   {seconds[s] / base:6.2f} × filtered")
    if len(runs) > 1:
        (h0, (m0, _)), *rest = runs.items()
        for heap, (m, _) in rest:
            print(f"{heap} / {h0}: wall {m.seconds / m0.seconds:.2f}×, peak RSS {m.peak_rss_mb / m0.peak_rss_mb:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
