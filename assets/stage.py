"""What every asset does around its job: lineage run, Delta commits with lineage in the commit
info, the blocking gate, and the metadata the Dagster UI shows."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import pyarrow.parquet as pq
from dagster import AssetCheckResult, AssetCheckSeverity, AssetExecutionContext, MetadataValue

from spark_jobs.lakehouse.delta_table import CommitResult, Transaction, snapshot_files

REJECTIONS = "rejections"


@contextlib.contextmanager
def stage_run(context: AssetExecutionContext, asset: str) -> Iterator[Any]:
    """An MLflow run nested under the Dagster run's; marked FAILED if the body raises."""
    lineage = context.resources.lineage
    partition = context.partition_key if context.has_partition_key else None
    run = lineage.start_stage(context.run_id, asset, partition)
    context.log.info(f"MLflow run {run.run_id} ({run.url})")
    try:
        yield run
    except BaseException:
        run.end("FAILED")
        raise
    else:
        run.end("FINISHED")


def open_write(context: AssetExecutionContext, table: str, partition: dict[str, str], partition_by: list[str]) -> Transaction:
    """A transaction replacing one partition of ``table`` (enter it with ``with``)."""
    lh = context.resources.lakehouse
    return Transaction(lh.uri(table), partition=partition, partition_by=partition_by, grace_seconds=lh.grace_seconds)


def commit(context: AssetExecutionContext, txn: Transaction, mlflow_run_id: str, empty_schema=None) -> CommitResult:
    """Commit what was staged, with the run ids in the Delta commit info."""
    t0 = time.time()
    result = txn.commit(
        mode="replace",
        commit_info={
            "dagster_run_id": context.run_id,
            "asset": context.asset_key.to_user_string(),
            "dagster_partition": context.partition_key if context.has_partition_key else None,
            "mlflow_run_id": mlflow_run_id,
            "git_sha": context.resources.lineage.git_sha,
        },
        empty_schema=empty_schema,
    )
    table = txn.root.name
    if result.removed_stray:
        context.log.warning(f"{table}: removed {len(result.removed_stray)} stray files left by a killed writer")
    context.log.info(f"{table} v{result.version}: {result.rows} rows in {result.files} files (commit {time.time() - t0:.1f}s)")
    return result


def preview(uri: str, version: int, partition: dict[str, str], columns: list[str], rows: int = 5) -> str:
    """A Markdown table of the first rows of a version (reads one file's first row group only)."""
    files = snapshot_files(uri, version, partition)
    if not files:
        return "(empty)"
    batch = next(pq.ParquetFile(files[0].path).iter_batches(batch_size=rows, columns=columns), None)
    if batch is None:
        return "(empty)"
    data = batch.to_pylist()
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "\n".join("| " + " | ".join(str(r[c])[:80].replace("|", "\\|") for c in columns) + " |" for r in data)


def counts_table(counts: dict[str, int], key: str = "reason") -> str:
    total = sum(counts.values()) or 1
    lines = [f"| {key} | rows | share |", "|---|---:|---:|"]
    lines += [f"| {k} | {v} | {v / total:.1%} |" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def gate_check(asset: str, gate_result, check_name: str = "gate") -> AssetCheckResult:
    """The gate's outcome as a blocking Dagster asset check result."""
    return AssetCheckResult(
        asset_key=asset,
        check_name=check_name,
        passed=gate_result.success,
        severity=AssetCheckSeverity.ERROR,
        description=gate_result.describe()[:2000],
        metadata={
            "evaluated": gate_result.evaluated,
            "failed": len(gate_result.failed),
            "result_json": MetadataValue.path(gate_result.result_json),
            "data_docs": MetadataValue.url(gate_result.docs_pages[0]) if gate_result.docs_pages else MetadataValue.text("-"),
            "failures": MetadataValue.md("\n".join(f"- {f}" for f in gate_result.failed) or "none"),
        },
    )


def pinned_upstream(context: AssetExecutionContext, asset: str) -> tuple[int, dict]:
    """The Delta version of ``asset`` this materialization reads: the one recorded by the upstream's
    latest materialization of the same partition, which must have passed its gate."""
    from dagster import AssetKey, AssetRecordsFilter, Failure

    partitions = [context.partition_key] if context.has_partition_key else None
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=partitions), limit=1
    ).records
    if not records:
        raise Failure(f"{asset} has no materialization for partition {context.partition_key!r}: materialize it first")
    md = records[0].asset_materialization.metadata
    version = int(md["delta_version"].value)
    if not md.get("gate_passed") or not md["gate_passed"].value:
        raise Failure(
            f"{asset} v{version} (partition {context.partition_key!r}) failed its gate; it is kept for audit "
            "but not used downstream. Fix the input and re-materialize it."
        )
    return version, {k: v.value for k, v in md.items()}
