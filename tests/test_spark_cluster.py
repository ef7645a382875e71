"""A real Spark standalone cluster (infra/spark/local-cluster.sh: a master and two workers, each its
own JVM launching executors) runs raw_crawl → filtered → deduplicated by configuration alone,
with the project's code shipped to the executors as a zip, and an executor killed mid-run: the
tables are exactly those of local mode."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from assets.partitions import crawl_partitions
from orchestration.resources import build_resources
from storage.delta_table import read_arrow, table_exists
from tests.conftest import pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "infra" / "spark" / "local-cluster.sh"
STAGES = ["raw_crawl", "filtered", "deduplicated"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    env = {**os.environ, "SLUICE_SPARK_CLUSTER_DIR": str(tmp_path_factory.mktemp("spark-cluster")), "SLUICE_PYTHON": sys.executable}
    out = subprocess.run([str(SCRIPT), "start", "2", "1", "1g"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    yield out.stdout.strip().splitlines()[-1], env
    subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)


def snapshot(lakehouse: Path, crawl: str) -> dict[str, object]:
    """What must not depend on where Spark ran: ids, texts and signals, rejections, clusters."""

    def rows(name, cols):
        t = read_arrow(lakehouse / name, partition={"crawl_id": crawl}, columns=cols).to_pylist()
        return sorted(tuple(r[c] for c in cols) for r in t)

    return {
        "raw_crawl": rows("raw_crawl", ["doc_id", "url", "warc_offset"]),
        "filtered": rows("filtered", ["doc_id", "text", "word_count", "stop_word_count", "line_punct_ratio", "dup_5gram_char_frac"]),
        "deduplicated": rows("deduplicated", ["doc_id"]),
        "dedup_clusters": rows("dedup_clusters", ["doc_id", "cluster_id", "kept", "reason"]),
        "rejections": rows("rejections", ["doc_id", "stage", "reason", "detail"]),
    }


def kill_one_executor_when(ready) -> threading.Thread:
    """Once ``ready()`` holds (the stage after raw_crawl has begun), SIGKILL one executor JVM."""
    killed: list[int] = []

    def watch():
        deadline = time.time() + 300
        while time.time() < deadline and not ready():
            time.sleep(0.2)
        time.sleep(1.0)
        pids = subprocess.run(["pgrep", "-f", "CoarseGrainedExecutorBackend"], capture_output=True, text=True).stdout.split()
        if pids:
            os.kill(int(pids[0]), 9)
            killed.append(int(pids[0]))

    t = threading.Thread(target=watch, daemon=True)
    t.killed = killed  # type: ignore[attr-defined]
    t.start()
    return t


def test_the_pipeline_on_a_standalone_cluster_equals_local_mode(spark, cluster, make_config, tmp_path):
    from sample_crawl import generate_crawl

    master, env = cluster
    assert master.startswith("spark://127.0.0.1:")
    landing = tmp_path / "landing"
    generate_crawl(landing / "crawl-k", 300, seed=31, pages_per_file=100)

    # local mode, in this process (the test run's Spark session)
    cfg = make_config(landing)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_partitions.name, ["crawl-k"])
    result = materialize(pipeline(cfg, *STAGES), instance=instance, resources=build_resources(cfg), partition_key="crawl-k")
    assert result.success
    local = snapshot(cfg.lakehouse_path, "crawl-k")

    # the cluster, through the CLI and configuration alone, losing an executor on the way
    lake = tmp_path / "cluster-lake"
    run_env = {
        **env,
        "SLUICE_LAKEHOUSE_DIR": str(lake),
        "SLUICE_LANDING_DIR": str(landing),
        "SLUICE_SPARK__MASTER": master,
        "SLUICE_SPARK__SHOW_PROGRESS": "false",
        "SLUICE_SPARK__DRIVER_MEMORY": "1g",
        "DAGSTER_HOME": str(tmp_path / "dagster"),
    }
    run_env.pop("SLUICE_CONFIG", None)
    killer = kill_one_executor_when(lambda: table_exists(lake / "raw_crawl"))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "sluice"), "run", "--crawl", str(landing / "crawl-k"), "--select", ",".join(STAGES)],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    killer.join(timeout=5)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = "".join(p.read_text(errors="replace") for p in (lake / "_logs").glob("*.log"))  # Spark's and Dagster's output
    assert "executors run Sluice from sluice-code-" in log
    assert killer.killed, "no executor was running when the watcher looked"
    remote = snapshot(lake, "crawl-k")
    for name in local:
        assert remote[name] == local[name], name
    assert len(local["deduplicated"]) > 100 and local["dedup_clusters"]
