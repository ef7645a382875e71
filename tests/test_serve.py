"""Unattended operation: `sluice serve` (webserver + daemon) on an empty lakehouse; crawl folders are
dropped into the landing folder and nothing else is called. Every asset of each partition must end
materialized with its gate passed (bounded wait), the second crawl deduplicated against the first,
and each run's MLflow parent run ended."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.test_ui_and_cli import free_port

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
CRAWL_ASSETS = ["raw_crawl", "filtered", "deduplicated", "quality_classifier", "quality_scored", "rewritten", "decontaminated"]


def gated(instance, crawl: str) -> dict[str, bool | None]:
    """Per asset: None while not materialized for the crawl, else whether its gate passed."""
    from dagster import AssetKey, AssetRecordsFilter

    out = {}
    for name in CRAWL_ASSETS:
        recs = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(name), asset_partitions=[crawl]), limit=1).records
        out[name] = bool(recs[0].asset_materialization.metadata["gate_passed"].value) if recs else None
    return out


def wait_for(instance, crawl: str, proc: subprocess.Popen, log: Path, seconds: float) -> dict:
    deadline = time.time() + seconds
    state = {}
    while time.time() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        state = gated(instance, crawl)
        if all(v is not None for v in state.values()):
            return state
        time.sleep(3)
    pytest.fail(f"{crawl} did not flow through within {seconds:.0f}s: {state}\n{log.read_text()[-3000:]}")


def test_dropped_crawls_flow_through_on_their_own(sample_landing, tmp_path):
    from dagster import DagsterInstance
    from mlflow.tracking import MlflowClient

    from spark_jobs.sample_crawl import generate_crawl

    lake, landing, home = tmp_path / "lake", tmp_path / "landing", tmp_path / "lake" / "_dagster"
    conf = tmp_path / "sluice.yaml"
    conf.write_text(json.dumps({  # JSON is YAML
        "lakehouse_dir": str(lake), "landing_dir": str(landing), "landing_settle_seconds": 1,
        "dagster": {"sensor_interval_seconds": 5, "retries": 0},
        "spark": {"master": "local[2]", "shuffle_partitions": 2, "show_progress": False, "driver_memory": "2g"},
    }))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "DAGSTER_HOME"))}
    log = tmp_path / "serve.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([str(BIN / "sluice"), "serve", "--config", str(conf), "--port", str(port)], env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(1)
        else:
            pytest.fail("sluice serve did not come up:\n" + log.read_text()[-3000:])

        # Drop the first crawl folder, as a person would (copy, then it settles).
        shutil.copytree(sample_landing / "crawl-t1", landing / "crawl-a")
        t0 = time.time()
        instance = DagsterInstance.from_config(str(home))
        state = wait_for(instance, "crawl-a", proc, log, 600)
        flow_a = time.time() - t0
        assert all(state.values()), state  # every gate passed (the rewriter materializes as skipped)

        # A second crawl: the same pages fetched again, plus new ones; deduplicated against the first.
        generate_crawl(tmp_path / "crawl-b", 150, seed=11, pages_per_file=150, recrawl=1)
        shutil.copytree(tmp_path / "crawl-b", landing / "crawl-b")
        state = wait_for(instance, "crawl-b", proc, log, 600)
        assert all(state.values()), state
        from dagster import AssetKey, AssetRecordsFilter

        dedup_b = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey("deduplicated"), asset_partitions=["crawl-b"]),
                                                  limit=1).records[0].asset_materialization.metadata
        assert dedup_b["compared_with_crawls"].value == ["crawl-a"]
        print(f"crawl-a (400 pages) flowed through in {flow_a:.0f}s", file=sys.stderr)

        # Runs carry the crawl and config tags; their MLflow parent runs get ended by the lineage sensors.
        from dagster import RunsFilter

        runs = instance.get_runs(RunsFilter(tags={"dagster/partition": "crawl-a"}))
        assert runs and all(r.tags.get("sluice/config_hash") for r in runs)
        client = MlflowClient(f"sqlite:///{lake / '_mlflow' / 'mlflow.db'}")
        exp = client.get_experiment_by_name("sluice")
        deadline = time.time() + 60
        while time.time() < deadline:
            parents = client.search_runs([exp.experiment_id], "tags.`sluice.level` = 'dagster_run'")
            if parents and all(p.info.status == "FINISHED" for p in parents):
                break
            time.sleep(3)
        assert parents and {p.info.status for p in parents} == {"FINISHED"}, [(p.info.run_name, p.info.status) for p in parents]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
