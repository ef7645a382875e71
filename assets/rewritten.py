"""``rewritten`` (gold, GPU): REWIRE-style rewrites of the documents whose quality score is below
``rewrite.threshold`` — the ones the quality filter would discard — each row keeping its source
document, the model, the prompt version and the generation parameters.

Runs ``gpu_jobs.rewrite`` through Dagster Pipes with an in-process Hugging Face causal LM or an
OpenAI-compatible server (vLLM, SGLang, TGI). Degenerate outputs go to `rejections` (stage
``rewrite``); usable ones are scored again by the classifier. With no rewriter model configured
the asset materializes as skipped: nothing is generated and nothing is faked.
"""

from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from assets.gpu_launch import commit_info, run_gpu_job
from assets.partitions import crawl_partitions
from assets.quality_scored import resolved_classifiers
from assets.stage import REJECTIONS, counts_table, gate_check, pinned_upstream, preview, stage_run
from quality.gate import run_gate
from quality.suites import accounting_row, rewritten_gate
from spark_jobs.lakehouse.delta_table import read_arrow, snapshot_files

ASSET = "rewritten"
DOCS = "deduplicated"
SCORES = "quality_scored"
SKIPPED = "skipped: no rewriter model configured"


@asset(
    name=ASSET,
    partitions_def=crawl_partitions,
    deps=[AssetKey(DOCS), AssetKey(SCORES)],
    required_resource_keys={"settings", "lakehouse", "lineage"},
    group_name="gold",
    kinds={"pytorch", "delta"},
    check_specs=[AssetCheckSpec("gate", asset=ASSET, blocking=True, description="non-empty rewrites with sources; conservation")],
    description=__doc__,
)
def rewritten(context: AssetExecutionContext) -> MaterializeResult:
    settings = context.resources.settings
    lh = context.resources.lakehouse
    o = settings.rewrite
    crawl_id = context.partition_key
    part = {"crawl_id": crawl_id}
    if o.backend == "none" or not o.model or (o.backend == "openai" and not o.endpoint):
        context.log.info(f"{SKIPPED} (set rewrite.backend to hf or openai, with rewrite.model, and rewrite.endpoint for openai)")
        return MaterializeResult(
            metadata={"skipped": SKIPPED, "status": "skipped"},
            check_results=[AssetCheckResult(asset_key=ASSET, check_name="gate", passed=True, description=SKIPPED)],
        )
    docs_version, _ = pinned_upstream(context, DOCS)
    scores_version, _ = pinned_upstream(context, SCORES)
    scorer = next((c for c in resolved_classifiers(context) if c["name"] == o.score_column), None)
    if scorer is None:
        context.log.warning(f"no classifier named {o.score_column!r} in scoring.classifiers: rewrites are not re-scored")
    with stage_run(context, ASSET) as run:
        run.log_params({"crawl_id": crawl_id, "rewrite": o.model_dump(), "scorer": scorer["uri"] if scorer else "-"})
        run.log_table(DOCS, lh.uri(DOCS), docs_version, "input")
        run.log_table(SCORES, lh.uri(SCORES), scores_version, "input")
        summary = run_gpu_job(context, "gpu_jobs.rewrite", {
            "doc_files": [f.path for f in snapshot_files(lh.uri(DOCS), docs_version, part)],
            "score_files": [f.path for f in snapshot_files(lh.uri(SCORES), scores_version, part)],
            "output_uri": lh.uri(ASSET), "rejections_uri": lh.uri(REJECTIONS), "partition": part, "options": o.model_dump(),
            "scorer": scorer, "commit_info": commit_info(context, run.run_id),
            "run_id": context.run_id, "grace_seconds": lh.grace_seconds,
        })
        out = read_arrow(lh.uri(ASSET), summary["version"], part).to_pandas()
        rej = read_arrow(lh.uri(REJECTIONS), summary["rejections_version"], {**part, "stage": "rewrite"}, columns=["reason"]).to_pandas()
        gate = run_gate(rewritten_gate(list(out.columns)), lh.quality_dir, run_key=f"{ASSET}-{crawl_id}-{context.run_id[:8]}",
                        table_data=out, accounting=accounting_row(summary["candidates"], documents=len(out), rejected=len(rej)))
        context.log.info(gate.describe())
        reasons = rej["reason"].value_counts().to_dict() if len(rej) else {}
        gain = float((out["score_after"] - out["score_before"]).mean()) if len(out) and out["score_after"].notna().any() else None
        run.log_metrics({"candidates": summary["candidates"], "rewritten": len(out), "rejected": len(rej),
                         "new_tokens_per_s": summary["new_tokens_per_s"], "mean_score_gain": gain,
                         "gate_passed": float(gate.success), **{f"rejected.{k}": v for k, v in reasons.items()}})
        run.log_table(ASSET, lh.uri(ASSET), summary["version"], "output", len(out))
        run.log_table(REJECTIONS, lh.uri(REJECTIONS), summary["rejections_version"], "output", len(rej))
        run.log_artifact(gate.result_json, "gates")
    return MaterializeResult(
        metadata={
            "delta_version": summary["version"], "dagster/row_count": len(out), "status": "rewritten",
            "upstream": f"{DOCS}@v{docs_version}, {SCORES}@v{scores_version}", "candidates": summary["candidates"],
            "rejected": len(rej), "rejections_by_reason": MetadataValue.md(counts_table(reasons)),
            "rewriter": f"{o.backend}:{o.model}", "prompt_version": o.prompt_version,
            "generation_params": MetadataValue.json(summary["generation_params"]),
            "mean_score_gain": gain if gain is not None else "-", "new_tokens_per_s": round(summary["new_tokens_per_s"], 1),
            "resumed_chunks": summary["chunks_skipped"],
            "preview": MetadataValue.md(preview(lh.uri(ASSET), summary["version"], part, ["doc_id", "source_doc_id", "score_before", "score_after", "text"])),
            "mlflow_run": MetadataValue.url(run.url), "mlflow_run_id": run.run_id,
            "gate_report": MetadataValue.path(gate.result_json), "gate_passed": gate.success,
        },
        check_results=[gate_check(ASSET, gate)],
    )
