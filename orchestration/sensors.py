"""What runs without a click: the landing sensor turns each new crawl folder into a partition and one
run of the crawl job (every stage, in one process and one Spark session, as ``sluice run`` does); the
automation sensor evaluates every asset's automation condition (a re-materialized stage is followed
downstream through its gates; mixtures on their cron); run-status sensors close the
MLflow parent run of every finished run with its status. They run under ``sluice serve``, which runs
Dagster's daemon; under ``sluice ui`` (the webserver alone) they show as stopped and say so."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_status_sensor,
    sensor,
)

from assets.lineage import LineageResource
from assets.partitions import crawl_partitions


def config_hash(config) -> str:
    """Tags every run with the configuration it ran under (model_dump is the resolved config)."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:12]


def run_tags(config) -> dict[str, str]:
    return {"sluice/config_hash": config_hash(config)}


NO_DAEMON = "Stopped here: `sluice ui` is the webserver alone, and sensors need Dagster's daemon; run `sluice serve` to have it run. "


def _status(config) -> DefaultSensorStatus:
    return DefaultSensorStatus.RUNNING if config.dagster.daemon else DefaultSensorStatus.STOPPED


def _describe(config, text: str) -> str:
    return text if config.dagster.daemon else NO_DAEMON + text


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


def build_landing_sensor(config, job=None, stages: list | None = None):
    """``job``: the crawl job it runs for each new crawl, over ``stages`` (its asset keys), whole (a
    named run in the UI, and one process instead of one per stage); else ``raw_crawl`` alone, the
    automation sensor then running the rest. The run names its stages as its asset selection, so
    that the automation sensor knows their upstream updates are the run's own (not a trigger)."""
    target = {"job": job} if job is not None else {"asset_selection": ["raw_crawl"]}
    selection = {"asset_selection": list(stages)} if job is not None and stages else {}

    @sensor(
        name="crawl_landing_sensor",
        minimum_interval_seconds=config.dagster.sensor_interval_seconds,
        **target,
        default_status=_status(config),
        description=_describe(
            config,
            "Adds a crawl partition, and requests a run of every crawl stage for it, for every new crawl folder "
            f"in the landing folder ({config.landing_dir}).",
        ),
    )
    def crawl_landing_sensor(context: SensorEvaluationContext):
        crawls = landed_crawls(Path(config.landing_dir).resolve(), config.ingest.file_globs, config.landing_settle_seconds)
        known = set(context.instance.get_dynamic_partitions(crawl_partitions.name))
        new = [c for c in crawls if c not in known]
        if not new:
            return SkipReason(f"no new crawl folder in {config.landing_dir}")
        return SensorResult(
            run_requests=[
                RunRequest(
                    partition_key=c,
                    run_key=f"crawl-{c}",
                    **selection,
                    tags={**run_tags(config), "sluice/crawl": c},
                )
                for c in new
            ],
            dynamic_partitions_requests=[crawl_partitions.build_add_request(new)],
        )

    return crawl_landing_sensor


def build_automation_sensor(config) -> AutomationConditionSensorDefinition:
    """Evaluates the assets' automation conditions (see ``assets.stage.follow_upstreams``)."""
    return AutomationConditionSensorDefinition(
        "sluice_automation",
        target=AssetSelection.all(),
        default_status=_status(config),
        minimum_interval_seconds=max(10, config.dagster.sensor_interval_seconds // 2),
        run_tags=run_tags(config),
        description=_describe(
            config, "Runs each stage of a crawl once its upstreams are updated and their gates passed; mixtures on their cron."
        ),
    )


def build_lineage_sensors(config=None) -> list:
    """Each finished run ends its MLflow parent run with the run's status (also on failure), within
    the configured sensor interval or Dagster's default for run-status sensors (30 s), the shorter."""
    status_default = _status(config) if config is not None else DefaultSensorStatus.RUNNING
    interval = min(30, config.dagster.sensor_interval_seconds) if config is not None else None

    def make(status: DagsterRunStatus, mlflow_status: str):
        text = f"Ends the MLflow parent run of a {status.value.lower()} run as {mlflow_status}, with its stages' summary metrics."

        @run_status_sensor(
            run_status=status,
            name=f"close_mlflow_run_on_{status.value.lower()}",
            default_status=status_default,
            minimum_interval_seconds=interval,
            description=_describe(config, text) if config is not None else text,
        )
        def close(context: RunStatusSensorContext, lineage: LineageResource):
            lineage.finish_parent(context.dagster_run.run_id, mlflow_status)

        return close

    return [make(DagsterRunStatus.SUCCESS, "FINISHED"), make(DagsterRunStatus.FAILURE, "FAILED"), make(DagsterRunStatus.CANCELED, "KILLED")]
