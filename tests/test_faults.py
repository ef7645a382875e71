"""A run killed with SIGKILL in the middle of a stage's publication: a stage writes several tables
(`filtered` writes `filtered` and its `rejections` partition) and Delta commits one table at a
time. Killed between the two, every table is at a complete version (the first at its new one, the
second still at its previous one); the rerun replaces both, with no duplicate, no lost rejection
and no file left behind. (A kill during one table's write is tests/test_lakehouse.py's.)"""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from storage.delta_table import STAGING, read_arrow, snapshot_files, table_exists
from storage.tables import FILTER
from tests.conftest import clean_cli_environment

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILL_BETWEEN_COMMITS = textwrap.dedent(
    """
    import os, signal, sys
    import storage.delta_table as d
    real = d.Transaction.commit
    def commit(self, *a, **k):
        if self.root.name == "rejections" and self.partition.get("stage") == "filter":
            os.kill(os.getpid(), signal.SIGKILL)  # `filtered` is committed, its rejections are not
        return real(self, *a, **k)
    d.Transaction.commit = commit
    from orchestration.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def sluice_killed_between_commits(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """`sluice` with ``args`` in a process of its own, which kills itself between `filtered`'s two commits."""
    return subprocess.run([sys.executable, "-c", KILL_BETWEEN_COMMITS, *args], env=env, capture_output=True, text=True, timeout=600)


def rerun_in_process(args: list[str], env: dict, monkeypatch, capfd) -> tuple[int, str]:
    """The rerun after a kill, with the killed run's settings, in this process (on the test run's
    Spark session: a fresh process would add only its start-up). Returns the exit code and what
    the CLI printed."""
    from orchestration.cli import main

    clean_cli_environment(monkeypatch)
    for k, v in env.items():
        if k.startswith("SLUICE_"):
            monkeypatch.setenv(k, v)
    capfd.readouterr()
    rc = main(args)
    out = capfd.readouterr()
    return rc, out.out + out.err


def test_killed_between_a_stages_two_commits_the_rerun_makes_it_whole(spark, tmp_path, monkeypatch, capfd):
    from sample_crawl import generate_crawl

    crawl = tmp_path / "landing" / "crawl-f"
    generate_crawl(crawl, 150, seed=51, pages_per_file=75)
    lake = tmp_path / "lake"
    env = {
        **os.environ,
        "SLUICE_LAKEHOUSE_DIR": str(lake),
        "SLUICE_LANDING_DIR": str(crawl.parent),
        "SLUICE_SPARK__MASTER": "local[2]",
        "SLUICE_SPARK__DRIVER_MEMORY": "1g",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    env.pop("SLUICE_CONFIG", None)
    env.pop("DAGSTER_HOME", None)
    args = ["run", "--crawl", str(crawl), "--select", "raw_crawl,filtered"]

    killed = sluice_killed_between_commits(args, env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    part = {"crawl_id": "crawl-f"}
    kept_first = read_arrow(lake / "filtered", partition=part, columns=["doc_id"]).column("doc_id").to_pylist()
    assert kept_first  # published whole
    stages = set(read_arrow(lake / "rejections", partition=part, columns=["stage"]).column("stage").to_pylist())
    assert FILTER not in stages and "ingest" in stages  # still the previous version: ingest's rejections only

    rerun, said = rerun_in_process(["run", "--crawl", str(crawl), "--select", "filtered"], env, monkeypatch, capfd)
    assert rerun == 0, said[-2000:]
    kept = read_arrow(lake / "filtered", partition=part, columns=["doc_id"]).column("doc_id").to_pylist()
    assert sorted(kept) == sorted(kept_first) and len(set(kept)) == len(kept)
    raw = read_arrow(lake / "raw_crawl", partition=part, columns=["doc_id"]).column("doc_id").to_pylist()
    rejected = read_arrow(lake / "rejections", partition={**part, "stage": FILTER}, columns=["doc_id"]).column("doc_id").to_pylist()
    assert sorted(kept + rejected) == sorted(raw)  # every document exactly once: kept or rejected by a filter
    assert "filtered.gate: passed" in said

    # nothing orphaned: each data file belongs to some version of its table, and no staging is left
    for table in ("raw_crawl", "filtered", "rejections"):
        root = lake / table
        from deltalake import DeltaTable

        referenced = {f.path for v in range(DeltaTable(str(root)).version() + 1) for f in snapshot_files(root, v)}
        on_disk = {str(p) for p in root.rglob("*.parquet") if STAGING not in p.parts}
        assert on_disk == referenced, (table, on_disk - referenced)
        assert not [p for p in (root / STAGING).iterdir() if p.name != "commit.lock"]
    assert table_exists(lake / "filtered")


def test_killed_while_the_gpu_job_writes_its_chunks_the_rerun_resumes(spark, tmp_path, monkeypatch, capfd):
    """SIGKILL to the whole `sluice run` (the Dagster run and its Pipes GPU job) once the scoring
    job has finished some chunks: `quality_scored` was never committed; the rerun scores only the
    chunks left, and the table has every document of `deduplicated` exactly once."""
    import time

    from mlflow.tracking import MlflowClient

    from sample_crawl import generate_crawl

    crawl = tmp_path / "landing" / "crawl-g"
    generate_crawl(crawl, 700, seed=52, pages_per_file=350)
    lake = tmp_path / "lake"
    conf = tmp_path / "sluice.yaml"
    conf.write_text(
        f"lakehouse_dir: {lake}\nlanding_dir: {crawl.parent}\nspark: {{master: 'local[2]', driver_memory: 1g}}\n"
        "scoring: {rows_per_chunk: 16}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SLUICE_CONFIG", "DAGSTER_HOME", "SLUICE_LAKEHOUSE_DIR", "SLUICE_LANDING_DIR")}
    cmd = [str(Path(sys.executable).parent / "sluice"), "run", "--config", str(conf), "--crawl", str(crawl), "--select"]
    proc = subprocess.Popen(
        cmd + ["raw_crawl,filtered,deduplicated,quality_classifier,quality_scored"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline, chunks = time.time() + 400, []
    while time.time() < deadline and proc.poll() is None:
        chunks = list((lake / "quality_scored" / ".resume").glob("*/part-*.parquet"))
        if chunks:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and its GPU job, mid-write
            break
        time.sleep(0.005)
    proc.wait()
    assert chunks, "the scoring job finished before it could be killed"
    assert not table_exists(lake / "quality_scored")

    rerun, said = rerun_in_process(cmd[1:] + ["quality_scored"], env, monkeypatch, capfd)
    assert rerun == 0, said[-2000:]
    part = {"crawl_id": "crawl-g"}
    scored = read_arrow(lake / "quality_scored", partition=part, columns=["doc_id"]).column("doc_id").to_pylist()
    docs = read_arrow(lake / "deduplicated", partition=part, columns=["doc_id"]).column("doc_id").to_pylist()
    assert sorted(scored) == sorted(docs) and len(set(scored)) == len(scored)
    client = MlflowClient(f"sqlite:///{lake / '_mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("sluice")
    runs = client.search_runs([exp.experiment_id], "tags.`dagster.asset` = 'quality_scored'")
    assert max(r.data.metrics.get("chunks_skipped", 0) for r in runs) >= 1  # resumed, not recomputed
    assert not list((lake / "quality_scored" / ".resume").glob("*/*.parquet"))  # published chunks are cleaned up
