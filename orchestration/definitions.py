"""The Dagster code location: ``dagster-webserver -m orchestration.definitions``."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from assets.deduplicated import deduplicated
from assets.filtered import filtered
from assets.quality_classifier import quality_classifier
from assets.quality_scored import quality_scored
from assets.raw_crawl import raw_crawl
from assets.rewritten import rewritten
from orchestration.config import SluiceConfig, load_config
from orchestration.resources import build_resources
from orchestration.sensors import build_landing_sensor

ALL_ASSETS = [raw_crawl, filtered, deduplicated, quality_classifier, quality_scored, rewritten]


def build_definitions(config: SluiceConfig | None = None) -> Definitions:
    config = config or load_config()
    return Definitions(
        assets=ALL_ASSETS,
        resources=build_resources(config),
        sensors=[build_landing_sensor(config)],
        # One process per run: a Spark session is per process, and the stages share it.
        executor=in_process_executor,
    )


defs = build_definitions()
