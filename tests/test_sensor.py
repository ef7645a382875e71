"""The landing sensor adds one partition, and requests one run, per new settled crawl folder."""

import os
import time

from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

from assets.partitions import crawl_partitions
from orchestration.sensors import build_landing_sensor, landed_crawls


def test_landing_sensor_adds_new_crawls_once(tmp_path, make_config):
    landing = tmp_path / "landing"
    for name in ("CC-MAIN-2024-10", "CC-MAIN-2024-18"):
        (landing / name).mkdir(parents=True)
        (landing / name / "a.warc.gz").write_bytes(b"")
    (landing / "empty-folder").mkdir()
    (landing / "notes.txt").write_text("not a crawl")
    cfg = make_config(landing, landing_settle_seconds=0)
    sensor = build_landing_sensor(cfg)
    instance = DagsterInstance.ephemeral()

    result = sensor(build_sensor_context(instance=instance))
    assert isinstance(result, SensorResult)
    assert sorted(r.partition_key for r in result.run_requests) == ["CC-MAIN-2024-10", "CC-MAIN-2024-18"]
    [add] = result.dynamic_partitions_requests
    assert add.partitions_def_name == crawl_partitions.name and sorted(add.partition_keys) == ["CC-MAIN-2024-10", "CC-MAIN-2024-18"]

    instance.add_dynamic_partitions(crawl_partitions.name, list(add.partition_keys))
    assert isinstance(sensor(build_sensor_context(instance=instance)), SkipReason)


def test_a_folder_still_being_copied_waits(tmp_path):
    landing = tmp_path / "landing"
    (landing / "c1").mkdir(parents=True)
    f = landing / "c1" / "a.warc.gz"
    f.write_bytes(b"x")
    assert landed_crawls(landing, ["*.warc.gz"], settle_seconds=60) == []
    old = time.time() - 120
    os.utime(f, (old, old))
    assert landed_crawls(landing, ["*.warc.gz"], settle_seconds=60) == ["c1"]


def test_sensors_say_they_are_stopped_without_a_daemon(tmp_path, make_config):
    """`sluice ui` is the webserver alone: its sensors show stopped and say that `sluice serve` runs them."""
    from dagster import DefaultSensorStatus

    from orchestration.sensors import build_automation_sensor, build_lineage_sensors

    cfg = make_config(tmp_path / "landing")
    served = [build_landing_sensor(cfg), build_automation_sensor(cfg), *build_lineage_sensors(cfg)]
    assert {s.default_status for s in served} == {DefaultSensorStatus.RUNNING}
    cfg.dagster.daemon = False
    alone = [build_landing_sensor(cfg), build_automation_sensor(cfg), *build_lineage_sensors(cfg)]
    assert {s.default_status for s in alone} == {DefaultSensorStatus.STOPPED}
    assert all("sluice serve" in s.description for s in alone)


def test_the_lineage_sensors_end_mlflow_runs_within_the_sensor_interval(tmp_path, make_config):
    """A finished run's MLflow parent run is ended at the configured sensor interval (Dagster's own
    default for run-status sensors is 30 s: the MLflow UI showed finished runs as running that long)."""
    from orchestration.sensors import build_lineage_sensors

    cfg = make_config(tmp_path / "landing")
    cfg.dagster.sensor_interval_seconds = 5
    assert {s.minimum_interval_seconds for s in build_lineage_sensors(cfg)} == {5}
    cfg.dagster.sensor_interval_seconds = 600
    assert {s.minimum_interval_seconds for s in build_lineage_sensors(cfg)} == {30}
