"""Delta commits through delta-rs: atomic partition replace, pinned reads, surviving killed writers."""

import os
import signal
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from storage.delta_table import (
    STAGING,
    LakehouseError,
    Transaction,
    clean_strays,
    read_arrow,
    row_count,
    snapshot_files,
)


def batch(crawl: str, n: int, start: int = 0) -> pa.Table:
    return pa.table({"doc_id": [f"{crawl}-{i}" for i in range(start, start + n)], "n": list(range(start, start + n))})


def write(uri, crawl, table, mode="replace", info=None):
    with Transaction(uri, {"crawl_id": crawl}) as txn:
        txn.write_arrow(table)
        return txn.commit(mode, info)


def test_replace_is_idempotent_and_other_partitions_untouched(tmp_path):
    uri = tmp_path / "t"
    write(uri, "a", batch("a", 10))
    write(uri, "b", batch("b", 5))
    r = write(uri, "a", batch("a", 10))
    assert r.version == 2 and row_count(uri) == 15
    assert sorted(read_arrow(uri, partition={"crawl_id": "a"})["doc_id"].to_pylist()) == sorted(f"a-{i}" for i in range(10))
    write(uri, "a", batch("a", 3), mode="append")
    assert row_count(uri, partition={"crawl_id": "a"}) == 13


def test_pinned_version_reads_stay_valid_after_replace(tmp_path):
    uri = tmp_path / "t"
    write(uri, "a", batch("a", 10))
    write(uri, "a", batch("a", 4, start=100))
    assert row_count(uri, 0) == 10 and row_count(uri, 1) == 4
    assert read_arrow(uri, version=0)["n"].to_pylist() == list(range(10))
    assert all(os.path.exists(f.path) for f in snapshot_files(uri, 0))


def test_commit_info_carries_lineage(tmp_path):
    uri = tmp_path / "t"
    write(uri, "a", batch("a", 2), info={"dagster_run_id": "r1", "mlflow_run_id": "m1", "git_sha": "abc"})
    meta = DeltaTable(str(uri)).history(1)[0]["sluice"]
    assert meta["dagster_run_id"] == "r1" and meta["mlflow_run_id"] == "m1" and meta["git_sha"] == "abc"
    assert meta["rows"] == 2 and meta["partition"] == {"crawl_id": "a"} and len(meta["txn_id"]) == 32


def test_empty_write_is_a_committed_state(tmp_path):
    uri = tmp_path / "t"
    write(uri, "a", batch("a", 3))
    with Transaction(uri, {"crawl_id": "a"}) as txn:
        r = txn.commit("replace")
    assert r.rows == 0 and row_count(uri, partition={"crawl_id": "a"}) == 0 and row_count(uri, 0) == 3


def test_write_must_target_the_tables_partitioning(tmp_path):
    uri = tmp_path / "t"
    write(uri, "a", batch("a", 1))
    with pytest.raises(LakehouseError, match="partitioned by"):
        with Transaction(uri) as txn:
            txn.write_arrow(batch("a", 1))
            txn.commit("append")


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import pyarrow as pa
    import storage.delta_table as d
    uri, where = sys.argv[1], sys.argv[2]
    t = pa.table({"doc_id": [f"x-{i}" for i in range(1000)], "n": list(range(1000))})
    real_replace = os.replace
    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)
    if where == "before_move":
        d.parquet_stats = lambda *a, **k: die()
    else:
        d.create_table_with_add_actions = die
        d.DeltaTable.create_write_transaction = lambda *a, **k: die()
    with d.Transaction(uri, {"crawl_id": "a"}) as txn:
        txn.write_arrow(t, max_rows_per_file=300)
        txn.commit("replace")
    """
)


@pytest.mark.parametrize("where", ["before_move", "before_commit"])
def test_killed_writer_leaves_previous_version_and_next_write_cleans_up(tmp_path, where):
    uri = tmp_path / "t"
    write(uri, "a", batch("a", 10))
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(uri), where], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    # The table is still at its previous version and fully readable.
    assert DeltaTable(str(uri)).version() == 0 and row_count(uri) == 10
    assert read_arrow(uri).num_rows == 10
    parquet = lambda: sorted(p for p in uri.rglob("*.parquet"))  # noqa: E731
    assert len(parquet()) > 1  # the killed writer's files are there...
    r = write(uri, "a", batch("a", 7))
    assert r.removed_stray  # ...until the next write removes them
    assert read_arrow(uri).num_rows == 7 and row_count(uri, 0) == 10
    live = {f.path for f in snapshot_files(uri)} | {f.path for f in snapshot_files(uri, 0)}
    assert {str(p) for p in parquet()} == live
    assert not [p for p in (uri / STAGING).iterdir() if p.name != "commit.lock"]


def test_cleanup_never_touches_a_live_writers_files(tmp_path):
    uri = tmp_path / "t"
    write(uri, "a", batch("a", 2))
    with Transaction(uri, {"crawl_id": "b"}) as live:
        live.write_arrow(batch("b", 5))
        assert clean_strays(uri) == []  # the live writer holds its lock
        assert list(live.staging_dir.rglob("*.parquet"))
        live.commit("append")
    assert row_count(uri) == 7


@pytest.mark.integration
def test_spark_reads_a_pinned_version_with_partition_values(spark, tmp_path):
    from spark_jobs.spark_io import read_table, stage_dataframe

    uri = tmp_path / "t"
    write(uri, "a", batch("a", 10))
    write(uri, "b", batch("b", 4))
    df = spark.createDataFrame([(f"c-{i}", i, "c") for i in range(6)], "doc_id string, n long, crawl_id string")
    with Transaction(uri, {"crawl_id": "c"}) as txn:
        stage_dataframe(df, txn)
        r = txn.commit("replace")
    assert r.rows == 6 and r.version == 2
    got = read_table(spark, uri, version=1)
    assert got.count() == 14 and got.columns == ["doc_id", "n", "crawl_id"]
    assert {r.crawl_id: r["count"] for r in got.groupBy("crawl_id").count().collect()} == {"a": 10, "b": 4}
    assert read_table(spark, uri, partition={"crawl_id": "c"}).count() == 6


CONCURRENT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import pyarrow as pa
    from storage.delta_table import Transaction
    uri, crawl, writer, start_at = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    t = pa.table({"doc_id": [f"{writer}-{i}" for i in range(50)], "n": list(range(50))})
    with Transaction(uri, {"crawl_id": crawl}) as txn:
        txn.write_arrow(t, max_rows_per_file=10)
        time.sleep(max(0.0, start_at - time.time()))  # every writer commits at the same moment
        print(txn.commit("replace").version)
    """
)


@pytest.mark.parametrize("same_partition", [True, False])
def test_concurrent_writers_never_corrupt_a_table(tmp_path, same_partition):
    """Four processes commit at the same instant, to a new table: into one partition, each commit
    replaces the one before (the table ends with exactly one writer's rows, never a mix or a
    duplicate); into four partitions, all four commit."""
    import time

    uri = tmp_path / "t"
    start_at = time.time() + 3.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_SCRIPT, str(uri), "a" if same_partition else f"c{w}", f"w{w}", str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert [r[2] for r in results] == [0] * 4, [r[1][-800:] for r in results]
    versions = sorted(int(r[0].split()[-1]) for r in results)
    assert versions == [0, 1, 2, 3]  # serialised: one commit per version
    rows = read_arrow(uri).to_pylist()
    writers = {r["doc_id"].split("-")[0] for r in rows}
    if same_partition:
        assert len(rows) == 50 and len(writers) == 1 and len({r["doc_id"] for r in rows}) == 50
    else:
        assert len(rows) == 200 and writers == {"w0", "w1", "w2", "w3"}
    assert not [p for p in (uri / STAGING).iterdir() if p.name != "commit.lock"]


LINEAGE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from assets.lineage import LineageResource
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
    print(LineageResource(tracking_uri=sys.argv[1]).experiment_id)
    """
)


@pytest.mark.integration
def test_runs_started_together_share_one_new_mlflow_store(tmp_path):
    """Two `sluice run` started together on a new lakehouse both created the embedded MLflow
    store, and one died on "duplicate column name: creator" (#14): schema and experiment
    creation are now taken in turn."""
    import time

    start_at = time.time() + 4.0
    uri = f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LINEAGE_SCRIPT, uri, str(start_at)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=180) + (p.returncode,) for p in procs]
    assert [r[2] for r in results] == [0] * 4, [r[1][-800:] for r in results]
    assert len({r[0].split()[-1] for r in results}) == 1  # one experiment, the same id for all
