"""Where a CPU-only run spends its time: every stage of `sluice run` on one sample crawl, from the
stages' own MLflow runs (metric ``seconds``), with ``quality_scored`` and ``quality_classifier``
as ratios of ``filtered``.

    python benchmarks/stage_timing.py [--pages 10000] [--model-kind fasttext|hf]

``--model-kind hf`` trains the MiniLM head instead of fastText, the comparison the CPU default is
meant to win: run it twice to see both sides.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
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
    args = ap.parse_args()
    from mlflow.tracking import MlflowClient

    from sample_crawl import generate_crawl

    work = args.workdir or Path(tempfile.mkdtemp(prefix="sluice-stage-timing-"))
    crawl = work / "landing" / "bench"
    if not crawl.is_dir():
        generate_crawl(crawl, args.pages, seed=5)
    lake = work / f"lake-{args.model_kind}"
    conf = work / f"{args.model_kind}.yaml"
    conf.write_text(
        json.dumps(
            {
                "lakehouse_dir": str(lake),
                "classifier": {"model_kind": args.model_kind},
                "scoring": {"ensembles": [{"name": "ensemble", "of": ["quality", "classifier"]}]},
            }
        )
    )
    t0 = time.time()
    subprocess.run([str(REPO / ".venv" / "bin" / "sluice"), "run", "--config", str(conf), "--crawl", str(crawl)], check=True)
    wall = time.time() - t0
    client = MlflowClient(f"sqlite:///{lake / '_mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("sluice")
    seconds = {}
    for r in client.search_runs([exp.experiment_id], "tags.`sluice.level` = 'stage'"):
        seconds[r.data.tags.get("dagster.asset")] = r.data.metrics.get("seconds")
    print(f"\n{args.pages} pages, classifier {args.model_kind}, 2 cores; sluice run {wall:.0f}s wall")
    base = seconds.get("filtered") or float("nan")
    for s in stage_names():
        if s in seconds and seconds[s] is not None:
            print(f"  {s:<20} {seconds[s]:8.1f} s   {seconds[s] / base:6.2f} × filtered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
