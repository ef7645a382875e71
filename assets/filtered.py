"""``filtered`` (silver): documents that passed extraction, language ID, the URL and quality
heuristics, with PII redacted, and every measured signal as a column.

Reads the pinned ``raw_crawl`` version of the partition; every dropped document goes to
``rejections`` (stage ``filter``) with the rule that fired and the measured value.
"""

import time

from dagster import AssetCheckSpec, AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from assets.partitions import crawl_partitions
from assets.stage import REJECTIONS, commit, counts_table, gate_check, open_write, pinned_upstream, preview, stage_run
from quality.gate import run_gate
from quality.plots import funnel_png, funnel_table, markdown_image
from quality.suites import accounting_row, filtered_gate
from spark_jobs.filter_job import filter_documents
from spark_jobs.filters.pipeline import STAGE, STAGES, filtered_schema
from spark_jobs.lakehouse.delta_table import snapshot_files
from spark_jobs.lakehouse.spark_io import read_table

ASSET = "filtered"
UPSTREAM = "raw_crawl"
PREVIEW_COLUMNS = ["doc_id", "url", "language", "language_score", "word_count", "text"]


def funnel_steps(docs_in: int, reasons: dict[str, int]) -> list[tuple[str, int]]:
    """Documents remaining after each stage, in pipeline order."""
    steps = [("raw_crawl", docs_in)]
    left = docs_in
    for stage in STAGES:
        left -= sum(v for k, v in reasons.items() if k.split(".")[0] == stage)
        steps.append((stage, left))
    return steps


@asset(
    name=ASSET,
    partitions_def=crawl_partitions,
    deps=[AssetKey(UPSTREAM)],
    required_resource_keys={"settings", "spark", "lakehouse", "lineage"},
    group_name="silver",
    kinds={"spark", "delta"},
    check_specs=[AssetCheckSpec("gate", asset=ASSET, blocking=True, description="Great Expectations: text, PII, signals, conservation")],
    description=__doc__,
)
def filtered(context: AssetExecutionContext) -> MaterializeResult:
    settings = context.resources.settings
    lh = context.resources.lakehouse
    crawl_id = context.partition_key
    opts = settings.filter
    part = {"crawl_id": crawl_id}
    upstream_version, _ = pinned_upstream(context, UPSTREAM)

    with stage_run(context, ASSET) as run:
        run.log_params({"crawl_id": crawl_id, "filter": opts.model_dump()})
        run.log_table(UPSTREAM, lh.uri(UPSTREAM), upstream_version, "input")
        spark = context.resources.spark.get()
        spark.sparkContext.setJobGroup(f"{ASSET}:{crawl_id}", f"sluice {ASSET} {crawl_id}")
        files = snapshot_files(lh.uri(UPSTREAM), upstream_version, part)
        docs_in = sum(f.num_records or 0 for f in files)
        context.log.info(f"{UPSTREAM} v{upstream_version}: {docs_in} documents in {len(files)} files")
        t0 = time.time()
        with open_write(context, ASSET, part, ["crawl_id"]) as kept_txn, open_write(
            context, REJECTIONS, {**part, "stage": STAGE}, ["crawl_id", "stage"]
        ) as rej_txn:
            summary = filter_documents(spark, [f.path for f in files], opts, kept_txn.staging_uri, rej_txn.staging_uri, context.run_id)
            kept = commit(context, kept_txn, run.run_id, empty_schema=filtered_schema())
            rej = commit(context, rej_txn, run.run_id)
        elapsed = time.time() - t0
        context.log.info(f"filtered {summary.docs_in} documents in {elapsed:.1f}s: {kept.rows} kept, {rej.rows} rejected")

        steps = funnel_steps(docs_in, summary.reasons)
        plot = funnel_png(steps, f"filtered funnel — {crawl_id}", lh.root / "_reports" / ASSET / f"{crawl_id}-{context.run_id[:8]}.png")
        lang_total = sum(summary.languages.values()) or 1
        language_share = {k: v / lang_total for k, v in sorted(summary.languages.items(), key=lambda kv: -kv[1])}

        table_df = read_table(spark, lh.uri(ASSET), kept.version, part)
        gate = run_gate(
            filtered_gate(
                list(filtered_schema().names), opts.language.languages if opts.language.enabled else [],
                opts.language.min_score if opts.language.enabled else 0.0,
                opts.gopher_quality.min_words if opts.gopher_quality.enabled else 0,
                opts.gopher_quality.max_words if opts.gopher_quality.enabled else 10**9,
            ),
            lh.quality_dir,
            run_key=f"{ASSET}-{crawl_id}-{context.run_id[:8]}",
            table_data=table_df,
            accounting=accounting_row(docs_in, documents=kept.rows, rejected=rej.rows),
        )
        context.log.info(gate.describe())
        run.log_metrics({
            "documents_in": docs_in, "kept": kept.rows, "rejected": rej.rows,
            "keep_rate": kept.rows / docs_in if docs_in else 0.0,
            "docs_per_s": docs_in / elapsed if elapsed else 0.0,
            "gate_passed": float(gate.success),
            **{f"rejected.{k}": v for k, v in summary.reasons.items()},
            **{f"language_share.{k}": v for k, v in language_share.items()},
        })
        run.log_table(ASSET, lh.uri(ASSET), kept.version, "output", kept.rows)
        run.log_table(REJECTIONS, lh.uri(REJECTIONS), rej.version, "output", rej.rows)
        run.log_artifact(gate.result_json, "gates")
        run.log_artifact(plot, "plots")

    return MaterializeResult(
        metadata={
            "delta_version": kept.version,
            "dagster/row_count": kept.rows,
            "upstream": f"{UPSTREAM}@v{upstream_version}",
            "rejections_version": rej.version,
            "documents_in": docs_in,
            "rejected": rej.rows,
            "docs_per_s": round(docs_in / elapsed, 1) if elapsed else 0.0,
            "table_uri": MetadataValue.path(lh.uri(ASSET)),
            "preview": MetadataValue.md(preview(lh.uri(ASSET), kept.version, part, PREVIEW_COLUMNS)),
            "funnel": MetadataValue.md(markdown_image(plot, "funnel") + "\n\n" + funnel_table(steps)),
            "funnel_png": MetadataValue.path(str(plot)),
            "rejections_by_rule": MetadataValue.md(counts_table(summary.reasons, key="rule")),
            "language_share": MetadataValue.json(language_share),
            "mlflow_run": MetadataValue.url(run.url),
            "mlflow_run_id": run.run_id,
            "gate_report": MetadataValue.path(gate.result_json),
            "gate_passed": gate.success,
        },
        check_results=[gate_check(ASSET, gate)],
    )
