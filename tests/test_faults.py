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

pytestmark = pytest.mark.integration

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


def sluice(args: list[str], env: dict, script: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", script, *args] if script else [str(Path(sys.executable).parent / "sluice"), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_killed_between_a_stages_two_commits_the_rerun_makes_it_whole(tmp_path):
    from spark_jobs.sample_crawl import generate_crawl

    crawl = tmp_path / "landing" / "crawl-f"
    generate_crawl(crawl, 150, seed=51, pages_per_file=75)
    lake = tmp_path / "lake"
    env = {**os.environ, "SLUICE_LAKEHOUSE_DIR": str(lake), "SLUICE_LANDING_DIR": str(crawl.parent), "SLUICE_SPARK__MASTER": "local[2]",
           "SLUICE_SPARK__DRIVER_MEMORY": "1g", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("SLUICE_CONFIG", None)
    env.pop("DAGSTER_HOME", None)
    args = ["run", "--crawl", str(crawl), "--select", "raw_crawl,filtered"]

    killed = sluice(args, env, KILL_BETWEEN_COMMITS)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    part = {"crawl_id": "crawl-f"}
    kept_first = read_arrow(lake / "filtered", partition=part, columns=["doc_id"]).column("doc_id").to_pylist()
    assert kept_first  # published whole
    stages = set(read_arrow(lake / "rejections", partition=part, columns=["stage"]).column("stage").to_pylist())
    assert FILTER not in stages and "ingest" in stages  # still the previous version: ingest's rejections only

    rerun = sluice(["run", "--crawl", str(crawl), "--select", "filtered"], env)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    kept = read_arrow(lake / "filtered", partition=part, columns=["doc_id"]).column("doc_id").to_pylist()
    assert sorted(kept) == sorted(kept_first) and len(set(kept)) == len(kept)
    raw = read_arrow(lake / "raw_crawl", partition=part, columns=["doc_id"]).column("doc_id").to_pylist()
    rejected = read_arrow(lake / "rejections", partition={**part, "stage": FILTER}, columns=["doc_id"]).column("doc_id").to_pylist()
    assert sorted(kept + rejected) == sorted(raw)  # every document exactly once: kept or rejected by a filter
    assert "filtered.gate: passed" in rerun.stdout + rerun.stderr

    # nothing orphaned: each data file belongs to some version of its table, and no staging is left
    for table in ("raw_crawl", "filtered", "rejections"):
        root = lake / table
        from deltalake import DeltaTable

        referenced = {f.path for v in range(DeltaTable(str(root)).version() + 1) for f in snapshot_files(root, v)}
        on_disk = {str(p) for p in root.rglob("*.parquet") if STAGING not in p.parts}
        assert on_disk == referenced, (table, on_disk - referenced)
        assert not [p for p in (root / STAGING).iterdir() if p.name != "commit.lock"]
    assert table_exists(lake / "filtered")
