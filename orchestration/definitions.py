"""The Dagster code location: ``dagster-webserver -m orchestration.definitions``.

Two named jobs, so that every run shows under a name in the UI's Overview timeline and Runs list:
``crawl_pipeline`` (a crawl's stages, one partition per crawl) and ``mixture_pipeline`` (the
configured training mixtures, one partition per mixture). ``sluice run`` and the landing sensor
launch the crawl job, whole; the automation sensor's runs (re-runs downstream of a re-materialized
stage, the mixtures' cron ticks) show as Dagster's "ad hoc materializations"."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from assets import build_assets
from assets.partitions import crawl_partitions
from orchestration.config import SluiceConfig, load_config
from orchestration.resources import build_resources
from orchestration.sensors import build_automation_sensor, build_landing_sensor, build_lineage_sensors

CRAWL_JOB, MIXTURE_JOB = "crawl_pipeline", "mixture_pipeline"


def crawl_stage_keys(assets: list) -> list:
    """The crawl job's assets: every crawl-partitioned one, in pipeline order."""
    return [a.key for a in assets if a.partitions_def == crawl_partitions]


def build_jobs(assets: list) -> list:
    """The crawl job over every crawl-partitioned asset; the mixture job over the others (if any)."""
    per_crawl = crawl_stage_keys(assets)
    per_mixture = [a.key for a in assets if a.partitions_def != crawl_partitions]
    jobs = [
        define_asset_job(
            CRAWL_JOB,
            selection=AssetSelection.assets(*per_crawl),
            partitions_def=crawl_partitions,
            description="One crawl through every stage: " + " → ".join(k.to_user_string() for k in per_crawl) + " (a partition per crawl).",
        )
    ]
    if per_mixture:
        jobs.append(
            define_asset_job(
                MIXTURE_JOB,
                selection=AssetSelection.assets(*per_mixture),
                partitions_def=assets[[a.key for a in assets].index(per_mixture[0])].partitions_def,
                description="The configured training mixtures over every crawl's decontaminated documents (a partition per mixture).",
            )
        )
    return jobs


def build_definitions(config: SluiceConfig | None = None) -> Definitions:
    config = config or load_config()
    assets = build_assets(config)
    jobs = build_jobs(assets)
    return Definitions(
        assets=assets,
        jobs=jobs,
        resources=build_resources(config),
        sensors=[
            build_landing_sensor(config, jobs[0], crawl_stage_keys(assets)),
            build_automation_sensor(config),
            *build_lineage_sensors(config),
        ],
        # One process per run: a Spark session is per process, and the stages share it.
        executor=in_process_executor,
    )


defs = build_definitions()
