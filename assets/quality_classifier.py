"""``quality_classifier``: a document quality classifier trained for a crawl and registered in the
MLflow model registry with its gate's verdict: a version that passed is tagged ``sluice.gate=approved``
and takes the ``approved`` alias, where `quality_scored` finds it; one that failed is tagged
``rejected`` (with its AUC and failures) so that it stays visible, but ``models:/<name>/latest``
resolves only approved versions. The gate is a warning, not a failure: an optional model does not
stop the data (``quality_scored`` scores with the approved version if there is one, else leaves its
column null and says why).

Positives come from a reference corpus of clean text (default: ``reference_corpus.jsonl`` in the
crawl's landing folder), negatives are drawn from the crawl's pinned `deduplicated` documents (the
GPT-3 / DCLM recipe) — or a labelled JSONL is used instead, or, for a crawl with neither,
pseudo-labels from the built-in signals scorer (``classifier.source``). Training runs in
``gpu_jobs`` through Dagster Pipes: a fastText model on a CPU (seconds to train, thousands of
documents a second to score), a logistic head on a frozen transformer encoder where CUDA is present
(``classifier.model_kind``). The gate requires a held-out ROC-AUC of at least ``quality.min_classifier_auc``.
"""

from pathlib import Path

from dagster import Failure

from assets.stage import Outcome, StageContext, StageSpec
from storage import tables as T
from quality.suites import classifier_gate

SPEC = StageSpec(
    name="quality_classifier",
    description=__doc__,
    group="models",
    kinds=("pytorch", "mlflow"),
    options=lambda cfg: {"classifier": cfg.classifier, "min_classifier_auc": cfg.quality.min_classifier_auc},
    upstreams=("deduplicated",),
    gate_description="held-out ROC-AUC and accuracy (a warning: a classifier that fails is registered as rejected, and scoring goes on without it)",
    gate_blocking=False,
    resources=("lakehouse", "lineage", "gpu"),
)


def training_source(choice: str, labelled_path: str | None, reference: str) -> str:
    """Which examples train the classifier: an explicit choice is checked, ``auto`` picks the
    labelled JSONL, else an existing reference corpus, else pseudo-labels."""
    if choice == "labelled" or (choice == "auto" and labelled_path):
        if not labelled_path:
            raise Failure("classifier.source=labelled needs classifier.labelled_path (JSONL with text and label)", allow_retries=False)
        return "labelled"
    if choice == "reference" or (choice == "auto" and Path(reference).exists()):
        if not Path(reference).exists():
            raise Failure(f"no reference corpus at {reference}: set classifier.reference_path (JSONL with a text field)", allow_retries=False)
        return "reference"
    return "pseudo"


def work(ctx: StageContext) -> Outcome:
    o = ctx.options["classifier"]
    docs = ctx.pin("deduplicated")
    reference = o.reference_path or str(ctx.lakehouse.crawl_dir(ctx.crawl_id) / T.REFERENCE_CORPUS)
    source = training_source(o.source, o.labelled_path, reference)
    ctx.log.info(f"training data: {source}" + {"labelled": f" ({o.labelled_path})", "reference": f" ({reference} vs the crawl)",
                                               "pseudo": " (signals-scorer pseudo-labels over the crawl)"}[source])
    ctx.run.log_params({"training_source": source, "positives": reference if source == "reference" else source})
    out_dir = ctx.lakehouse.folder(T.MODELS, SPEC.name, f"{ctx.crawl_id}-{ctx.dagster.run_id[:8]}")
    summary = ctx.gpu_job("gpu_jobs.train_classifier", {
        "backbone": o.backbone, "options": o.model_dump(), "positives_path": reference if source == "reference" else None,
        "labelled_path": o.labelled_path if source == "labelled" else None, "negative_files": docs.paths, "output_dir": str(out_dir),
    })
    m = summary["metrics"]
    ctx.lineage.log_model(ctx.run.run_id, out_dir)  # registered after the gate, approved or rejected
    ctx.log.info(f"trained: held-out ROC-AUC {m['roc_auc']:.3f}, accuracy {m['accuracy']:.3f}")

    def register(approved: bool, failures: list[str] = ()) -> dict:
        tags = {"crawl_id": ctx.crawl_id, "trained_on": f"deduplicated@v{docs.version}", "roc_auc": f"{m['roc_auc']:.4f}",
                "accuracy": f"{m['accuracy']:.4f}", "backbone": summary["backbone"], "kind": summary["kind"], "source": summary["source"]}
        if failures:
            tags["gate_failures"] = "; ".join(failures)[:4000]
        mv = ctx.lineage.register_model(ctx.run.run_id, o.registered_model, approved, tags=tags)
        verdict = "approved" if approved else "rejected (kept for audit; scoring never resolves it)"
        ctx.log.info(f"registered {o.registered_model} version {mv}: {verdict}")
        return {"model_version": mv, "model_uri": f"models:/{o.registered_model}/{mv}", "model_verdict": "approved" if approved else "rejected"}

    return Outcome(
        gate=classifier_gate(ctx.options["min_classifier_auc"]),
        accounting={"roc_auc": m["roc_auc"], "accuracy": m["accuracy"], "held_out": m["held_out"]},
        metrics={k: v for k, v in m.items() if isinstance(v, (int, float))},
        metadata={"registered_model": o.registered_model, "roc_auc": m["roc_auc"], "accuracy": m["accuracy"], "examples": m["examples"],
                  "positives": m["positives"], "held_out": m["held_out"], "training_source": source,
                  "trained_on": f"deduplicated@v{docs.version}", "backbone": summary["backbone"], "kind": summary["kind"],
                  "device": summary["device"]},
        on_publish=[lambda _commits: register(True)],
        on_reject=[lambda failures: register(False, failures)],
    )
