"""``quality_classifier``: a document quality classifier trained for a crawl and registered in the
MLflow model registry, where `quality_scored` finds "the latest registered version".

Positives come from a reference corpus of clean text (default: ``reference_corpus.jsonl`` in the
crawl's landing folder), negatives are drawn from the crawl's pinned `deduplicated` documents (the
GPT-3 / DCLM recipe) — or a labelled JSONL is used instead, or, for a crawl with neither,
pseudo-labels from the built-in signals scorer (``classifier.source``). Training runs in
``gpu_jobs`` through Dagster Pipes. The gate requires a held-out ROC-AUC of at least ``quality.min_classifier_auc``.
"""

from pathlib import Path

from dagster import AssetCheckSpec, AssetExecutionContext, AssetKey, Failure, MaterializeResult, MetadataValue, asset

from assets.gpu_launch import run_gpu_job
from assets.partitions import crawl_partitions
from assets.stage import gate_check, pinned_upstream, stage_run
from orchestration.lineage import register_model
from quality.gate import run_gate
from quality.suites import classifier_gate
from spark_jobs.lakehouse.delta_table import snapshot_files
from spark_jobs.sample_crawl.generator import REFERENCE_CORPUS

ASSET = "quality_classifier"
UPSTREAM = "deduplicated"


def training_source(choice: str, labelled_path: str | None, reference: str) -> str:
    """Which examples train the classifier: an explicit choice is checked, ``auto`` picks the
    labelled JSONL, else an existing reference corpus, else pseudo-labels."""
    if choice == "labelled" or (choice == "auto" and labelled_path):
        if not labelled_path:
            raise Failure("classifier.source=labelled needs classifier.labelled_path (JSONL with text and label)")
        return "labelled"
    if choice == "reference" or (choice == "auto" and Path(reference).exists()):
        if not Path(reference).exists():
            raise Failure(f"no reference corpus at {reference}: set classifier.reference_path (JSONL with a text field)")
        return "reference"
    return "pseudo"


@asset(
    name=ASSET,
    partitions_def=crawl_partitions,
    deps=[AssetKey(UPSTREAM)],
    required_resource_keys={"settings", "lakehouse", "lineage"},
    group_name="models",
    kinds={"pytorch", "mlflow"},
    check_specs=[AssetCheckSpec("gate", asset=ASSET, blocking=True, description="held-out ROC-AUC and accuracy")],
    description=__doc__,
)
def quality_classifier(context: AssetExecutionContext) -> MaterializeResult:
    settings = context.resources.settings
    lh = context.resources.lakehouse
    crawl_id = context.partition_key
    o = settings.classifier
    version, _ = pinned_upstream(context, UPSTREAM)
    reference = o.reference_path or str(Path(settings.landing_dir).resolve() / crawl_id / REFERENCE_CORPUS)
    source = training_source(o.source, o.labelled_path, reference)
    context.log.info(f"training data: {source}" + {"labelled": f" ({o.labelled_path})", "reference": f" ({reference} vs the crawl)",
                                                   "pseudo": " (signals-scorer pseudo-labels over the crawl)"}[source])
    files = [f.path for f in snapshot_files(lh.uri(UPSTREAM), version, {"crawl_id": crawl_id})]
    with stage_run(context, ASSET) as run:
        run.log_params({"crawl_id": crawl_id, "classifier": o.model_dump(), "training_source": source,
                        "positives": reference if source == "reference" else source})
        run.log_table(UPSTREAM, lh.uri(UPSTREAM), version, "input")
        out_dir = lh.root / "_models" / ASSET / f"{crawl_id}-{context.run_id[:8]}"
        summary = run_gpu_job(context, "gpu_jobs.train_classifier", {
            "backbone": o.backbone, "options": o.model_dump(), "positives_path": reference if source == "reference" else None,
            "labelled_path": o.labelled_path if source == "labelled" else None, "negative_files": files, "output_dir": str(out_dir),
        })
        m = summary["metrics"]
        run.log_metrics({k: v for k, v in m.items() if isinstance(v, (int, float))})
        mv = register_model(context.resources.lineage, run.run_id, out_dir, o.registered_model, tags={
            "crawl_id": crawl_id, "trained_on": f"{UPSTREAM}@v{version}", "roc_auc": f"{m['roc_auc']:.4f}",
            "backbone": summary["backbone"], "source": summary["source"],
        })
        context.log.info(f"registered {o.registered_model} version {mv}: held-out ROC-AUC {m['roc_auc']:.3f}, accuracy {m['accuracy']:.3f}")
        gate = run_gate(classifier_gate(settings.quality.min_classifier_auc), lh.quality_dir,
                        run_key=f"{ASSET}-{crawl_id}-{context.run_id[:8]}",
                        accounting={"roc_auc": m["roc_auc"], "accuracy": m["accuracy"], "held_out": m["held_out"]})
        run.log_artifact(gate.result_json, "gates")
    return MaterializeResult(
        metadata={
            "registered_model": o.registered_model, "model_version": mv, "model_uri": f"models:/{o.registered_model}/{mv}",
            "roc_auc": m["roc_auc"], "accuracy": m["accuracy"], "examples": m["examples"], "positives": m["positives"],
            "held_out": m["held_out"], "trained_on": f"{UPSTREAM}@v{version}", "backbone": summary["backbone"],
            "device": summary["device"], "mlflow_run": MetadataValue.url(run.url), "mlflow_run_id": run.run_id,
            "gate_passed": gate.success,
        },
        check_results=[gate_check(ASSET, gate)],
    )
