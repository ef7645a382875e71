"""The Dagster code location: ``dagster-webserver -m orchestration.definitions``."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from assets import build_assets
from orchestration.config import SluiceConfig, load_config
from orchestration.resources import build_resources
from orchestration.sensors import build_automation_sensor, build_landing_sensor, build_lineage_sensors


def build_definitions(config: SluiceConfig | None = None) -> Definitions:
    config = config or load_config()
    return Definitions(
        assets=build_assets(config),
        resources=build_resources(config),
        sensors=[build_landing_sensor(config), build_automation_sensor(config), *build_lineage_sensors()],
        # One process per run: a Spark session is per process, and the stages share it.
        executor=in_process_executor,
    )


defs = build_definitions()
