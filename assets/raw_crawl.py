"""``raw_crawl`` (bronze): every HTTP 200 HTML response of a crawl snapshot's WARC files.

Every other record goes to ``rejections`` (stage ``ingest``) with its reason; the blocking gate
checks the table and that records read = documents + rejections.
"""


import time
from pathlib import Path

from dagster import AssetCheckSpec, AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from assets.partitions import crawl_partitions
from assets.stage import REJECTIONS, commit, counts_table, gate_check, open_write, preview, stage_run
from quality.gate import run_gate
from quality.suites import accounting_row, raw_crawl_gate
from spark_jobs import warc_ingest as ingest
from spark_jobs.lakehouse.spark_io import read_table

ASSET = "raw_crawl"
PREVIEW_COLUMNS = ["doc_id", "url", "content_type", "content_length", "warc_file", "warc_offset"]


def crawl_dir(context: AssetExecutionContext) -> Path:
    return Path(context.resources.settings.landing_dir).resolve() / context.partition_key


@asset(
    name=ASSET,
    partitions_def=crawl_partitions,
    required_resource_keys={"settings", "spark", "lakehouse", "lineage"},
    group_name="bronze",
    kinds={"spark", "delta"},
    check_specs=[AssetCheckSpec("gate", asset=ASSET, blocking=True, description="Great Expectations: schema, ids, conservation")],
    description=__doc__,
)
def raw_crawl(context: AssetExecutionContext) -> MaterializeResult:
    settings = context.resources.settings
    lh = context.resources.lakehouse
    crawl_id = context.partition_key
    folder = crawl_dir(context)
    opts = settings.ingest
    files = ingest.discover_warc_files(folder, opts.file_globs) if folder.is_dir() else []
    if not files:
        raise Failure(
            description=f"crawl {crawl_id}: no WARC files matching {opts.file_globs} in {folder}",
            metadata={"landing_dir": MetadataValue.path(str(folder))},
        )
    input_bytes = sum(f.size for f in files)
    context.log.info(f"crawl {crawl_id}: {len(files)} WARC files, {input_bytes / 1e6:.1f} MB")

    with stage_run(context, ASSET) as run:
        run.log_params({"crawl_id": crawl_id, "crawl_dir": str(folder), "warc_files": len(files), "ingest": opts.model_dump()})
        spark = context.resources.spark.get()
        spark.sparkContext.setJobGroup(f"{ASSET}:{crawl_id}", f"sluice {ASSET} {crawl_id}")
        t0 = time.time()
        with open_write(context, ASSET, {"crawl_id": crawl_id}, ["crawl_id"]) as docs_txn, open_write(
            context, REJECTIONS, {"crawl_id": crawl_id, "stage": ingest.STAGE}, ["crawl_id", "stage"]
        ) as rej_txn:
            summary = ingest.ingest_warc_files(spark, files, opts, docs_txn.staging_uri, rej_txn.staging_uri, context.run_id)
            docs = commit(context, docs_txn, run.run_id, empty_schema=ingest.raw_crawl_schema())
            rej = commit(context, rej_txn, run.run_id, empty_schema=ingest.rejections_schema())
        elapsed = time.time() - t0

        records_read = summary.records_read
        for s in summary.unreadable:
            context.log.warning(f"{s['warc_file']}: {s['detail']}")
        reasons = summary.reasons

        # The gate reads back what was committed, so it checks the write path as well as the data.
        table_df = read_table(spark, lh.uri(ASSET), docs.version, {"crawl_id": crawl_id})
        gate = run_gate(
            raw_crawl_gate(list(ingest.raw_crawl_schema().names)),
            lh.quality_dir,
            run_key=f"{ASSET}-{crawl_id}-{context.run_id[:8]}",
            table_data=table_df,
            accounting=accounting_row(records_read, documents=docs.rows, rejected=rej.rows),
        )
        context.log.info(gate.describe())

        metrics = {
            "records_read": records_read,
            "documents": docs.rows,
            "rejected": rej.rows,
            "warc_files": len(files),
            "unreadable_files": len(summary.unreadable),
            "input_mb": input_bytes / 1e6,
            "records_per_s": records_read / elapsed if elapsed else 0.0,
            "mb_per_s": input_bytes / 1e6 / elapsed if elapsed else 0.0,
            "gate_passed": float(gate.success),
            **{f"rejected.{k}": v for k, v in reasons.items()},
        }
        run.log_metrics(metrics)
        run.log_table(ASSET, lh.uri(ASSET), docs.version, "output", docs.rows)
        run.log_table(REJECTIONS, lh.uri(REJECTIONS), rej.version, "output", rej.rows)
        run.log_artifact(gate.result_json, "gates")
        mlflow_url = run.url

    return MaterializeResult(
        metadata={
            "delta_version": docs.version,
            "dagster/row_count": docs.rows,
            "rejections_version": rej.version,
            "records_read": records_read,
            "rejected": rej.rows,
            "table_uri": MetadataValue.path(lh.uri(ASSET)),
            "preview": MetadataValue.md(preview(lh.uri(ASSET), docs.version, {"crawl_id": crawl_id}, PREVIEW_COLUMNS)),
            "rejections_by_reason": MetadataValue.md(counts_table(reasons)),
            "records_per_s": round(metrics["records_per_s"], 1),
            "mb_per_s": round(metrics["mb_per_s"], 2),
            "mlflow_run": MetadataValue.url(mlflow_url),
            "mlflow_run_id": run.run_id,
            "gate_report": MetadataValue.path(gate.result_json),
            "gate_passed": gate.success,
        },
        check_results=[gate_check(ASSET, gate)],
    )
