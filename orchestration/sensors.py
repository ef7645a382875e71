"""A sensor that turns each new crawl folder in the landing folder into a partition and a run."""

from __future__ import annotations

import time
from pathlib import Path

from dagster import RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from assets.partitions import crawl_partitions


def landed_crawls(landing: Path, globs: list[str], settle_seconds: float) -> list[str]:
    """Crawl folders holding WARC files that have not changed for ``settle_seconds`` (so a folder
    still being copied is not picked up half-way)."""
    import fnmatch

    out = []
    if not landing.is_dir():
        return out
    now = time.time()
    for d in sorted(p for p in landing.iterdir() if p.is_dir() and not p.name.startswith(".")):
        warcs = [p for p in d.rglob("*") if p.is_file() and any(fnmatch.fnmatch(p.name, g) for g in globs)]
        if warcs and now - max(p.stat().st_mtime for p in warcs) >= settle_seconds:
            out.append(d.name)
    return out


def build_landing_sensor(config, job_name: str = "__ASSET_JOB"):
    @sensor(name="crawl_landing_sensor", minimum_interval_seconds=60, asset_selection=["raw_crawl"],
            description="Adds a crawl partition, and requests its run, for every new crawl folder in the landing folder.")
    def crawl_landing_sensor(context: SensorEvaluationContext):
        crawls = landed_crawls(Path(config.landing_dir).resolve(), config.ingest.file_globs, config.landing_settle_seconds)
        known = set(context.instance.get_dynamic_partitions(crawl_partitions.name))
        new = [c for c in crawls if c not in known]
        if not new:
            return SkipReason(f"no new crawl folder in {config.landing_dir}")
        return SensorResult(
            run_requests=[RunRequest(partition_key=c, run_key=f"crawl-{c}") for c in new],
            dynamic_partitions_requests=[crawl_partitions.build_add_request(new)],
        )

    return crawl_landing_sensor
