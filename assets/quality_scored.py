"""``quality_scored`` (silver, GPU): one row per document of the pinned `deduplicated` version, one
score column per configured classifier (default: the latest registered `quality_classifier`),
with the model URIs and registry versions that produced them.

Scoring runs in ``gpu_jobs.score`` through Dagster Pipes (length-sorted dynamic batches, bf16 on
CUDA, resumable by chunks). Lineage: the MLflow run records the input table version and each
model's version; each registry version is tagged with the table version it scored.
"""

from dagster import AssetCheckSpec, AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from assets.gpu_launch import commit_info, run_gpu_job
from assets.partitions import crawl_partitions
from assets.stage import gate_check, pinned_upstream, preview, stage_run
from orchestration.lineage import resolve_model
from quality.gate import run_gate
from quality.plots import histogram_png, markdown_image
from quality.suites import accounting_row, quality_scored_gate
from spark_jobs.lakehouse.delta_table import read_arrow, snapshot_files

ASSET = "quality_scored"
UPSTREAM = "deduplicated"


def resolved_classifiers(context) -> list[dict]:
    """The configured classifiers with registry references resolved to a local path and version."""
    lh = context.resources.lakehouse
    out = []
    for c in context.resources.settings.scoring.classifiers:
        path, uri, version = resolve_model(context.resources.lineage, c.model, lh.root / "_models" / "registry")
        out.append({"name": c.name, "kind": c.kind, "label": c.label, "max_length": c.max_length, "path": path, "uri": uri, "version": version})
    return out


@asset(
    name=ASSET,
    partitions_def=crawl_partitions,
    deps=[AssetKey(UPSTREAM), AssetKey("quality_classifier")],
    required_resource_keys={"settings", "lakehouse", "lineage"},
    group_name="silver",
    kinds={"pytorch", "delta"},
    check_specs=[AssetCheckSpec("gate", asset=ASSET, blocking=True, description="Great Expectations: one score per document")],
    description=__doc__,
)
def quality_scored(context: AssetExecutionContext) -> MaterializeResult:
    settings = context.resources.settings
    lh = context.resources.lakehouse
    crawl_id = context.partition_key
    part = {"crawl_id": crawl_id}
    version, _ = pinned_upstream(context, UPSTREAM)
    snapshot = snapshot_files(lh.uri(UPSTREAM), version, part)
    files = [f.path for f in snapshot]
    docs_in = sum(f.num_records or 0 for f in snapshot)
    classifiers = resolved_classifiers(context)
    names = [c["name"] for c in classifiers]
    with stage_run(context, ASSET) as run:
        run.log_params({"crawl_id": crawl_id, "scoring": settings.scoring.model_dump(),
                        **{f"model.{c['name']}": c["uri"] for c in classifiers}})
        run.log_table(UPSTREAM, lh.uri(UPSTREAM), version, "input")
        summary = run_gpu_job(context, "gpu_jobs.score", {
            "input_files": files, "input_uri": lh.uri(UPSTREAM), "input_version": version, "output_uri": lh.uri(ASSET),
            "partition": part, "classifiers": classifiers, "options": settings.scoring.model_dump(),
            "commit_info": commit_info(context, run.run_id), "grace_seconds": lh.grace_seconds,
        })
        out_version = summary["version"]
        scored = read_arrow(lh.uri(ASSET), out_version, part).to_pandas()
        gate = run_gate(
            quality_scored_gate(list(scored.columns), names), lh.quality_dir, run_key=f"{ASSET}-{crawl_id}-{context.run_id[:8]}",
            table_data=scored, accounting=accounting_row(docs_in, documents=len(scored)),
        )
        context.log.info(gate.describe())
        plot = histogram_png({n: scored[n].tolist() for n in names}, f"quality scores — {crawl_id}",
                             lh.root / "_reports" / ASSET / f"{crawl_id}-{context.run_id[:8]}.png")
        stats = {n: {"mean": float(scored[n].mean()), "p10": float(scored[n].quantile(0.1)), "p50": float(scored[n].quantile(0.5)),
                     "p90": float(scored[n].quantile(0.9))} for n in names} if len(scored) else {}
        run.log_metrics({"documents": len(scored), "docs_per_s": summary["docs_per_s"], "tokens_per_s": summary["tokens_per_s"],
                         "chunks_skipped": summary["chunks_skipped"], "gate_passed": float(gate.success),
                         **{f"{n}.{k}": v for n, s in stats.items() for k, v in s.items()}})
        run.log_table(ASSET, lh.uri(ASSET), out_version, "output", len(scored))
        run.log_artifact(gate.result_json, "gates")
        run.log_artifact(plot, "plots")
        client = context.resources.lineage.client
        for c in classifiers:  # which table version each registered model version scored
            if c["version"] is not None and c["uri"].startswith("models:/"):
                client.set_model_version_tag(c["uri"].split("/")[1], c["version"], f"scored.{crawl_id}", f"{ASSET}@v{out_version}")
    return MaterializeResult(
        metadata={
            "delta_version": out_version, "dagster/row_count": len(scored), "upstream": f"{UPSTREAM}@v{version}",
            "models": MetadataValue.json({c["name"]: {"uri": c["uri"], "version": c["version"]} for c in classifiers}),
            "docs_per_s": round(summary["docs_per_s"], 1), "tokens_per_s": round(summary["tokens_per_s"]),
            "resumed_chunks": summary["chunks_skipped"], "score_stats": MetadataValue.json(stats),
            "score_histogram": MetadataValue.md(markdown_image(plot, "scores")),
            "preview": MetadataValue.md(preview(lh.uri(ASSET), out_version, part, ["doc_id", *names, "model_version"])),
            "table_uri": MetadataValue.path(lh.uri(ASSET)), "mlflow_run": MetadataValue.url(run.url), "mlflow_run_id": run.run_id,
            "gate_report": MetadataValue.path(gate.result_json), "gate_passed": gate.success,
        },
        check_results=[gate_check(ASSET, gate)],
    )
