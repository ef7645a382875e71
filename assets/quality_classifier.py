"""``quality_classifier``: the document quality classifier a crawl is scored with, and the evidence
that it may. By default (``classifier.source: shipped``) nothing is trained: the reference-trained
fastText model Sluice ships (``shipped:quality-ref-v1``, see gpu_jobs/models) is measured on the
crawl. Per crawl, a model can be trained instead (``source`` reference, labelled, pseudo or auto:
positives from a reference corpus or a labelled JSONL, negatives from the crawl — the GPT-3 / DCLM
recipe — or signals pseudo-labels), never on the crawl's held-out fold.

The gate measures what the model will do: its scores on crawl documents it did not train on
(gpu_jobs.validate_classifier): against hand labels when given, else agreement with the rule-based
signals score; and its score distribution (collapsed to one end, no spread, all one class). The
verdict is one line (``approved: …`` / ``refused: …`` / ``not trained: …``), in the log, the
metadata and the gate's description. The model is registered in MLflow either way (an approved
version takes the ``approved`` alias; a refused one is tagged ``rejected`` with its verdict), with
a signature, a description and its training data. The gate is a warning, not a failure: an
optional model does not stop the data; ``quality_scored`` scores with the version approved for the
crawl, else leaves its column null and says why. A crawl too small to train on or to measure on
ends cleanly with that verdict.
"""

import shutil
from pathlib import Path

from dagster import Failure

from assets.stage import Outcome, StageContext, StageSpec
from gpu_jobs.models import PREFIX as SHIPPED_PREFIX
from gpu_jobs.models import shipped_path
from gpu_jobs.scorers.base import read_model_card
from quality.suites import (
    CLASSIFIER_AGREEMENT_FRACTION,
    CLASSIFIER_MIN_SPREAD,
    classifier_accounting,
    classifier_gate,
)
from storage import tables as T

SPEC = StageSpec(
    name="quality_classifier",
    description=__doc__,
    group="models",
    kinds=("pytorch", "mlflow"),
    options=lambda cfg: {
        "classifier": cfg.classifier,
        "min_classifier_auc": cfg.quality.min_classifier_auc,
        "min_classifier_agreement": cfg.quality.min_classifier_agreement,
    },
    upstreams=("deduplicated",),
    gate_description="the classifier measured on crawl documents it did not train on: hand-label or signals-agreement ROC-AUC, "
    "score distribution (a warning: a refused classifier is registered as rejected, and scoring goes on without it)",
    gate_blocking=False,
    resources=("lakehouse", "lineage", "gpu"),
    revision="2",
)


def training_source(choice: str, labelled_path: str | None, reference: str) -> str:
    """Which examples train the classifier: an explicit choice is checked, ``auto`` picks the
    labelled JSONL, else an existing reference corpus, else pseudo-labels."""
    if choice == "shipped":
        return "shipped"
    if choice == "labelled" or (choice == "auto" and labelled_path):
        if not labelled_path:
            raise Failure("classifier.source=labelled needs classifier.labelled_path (JSONL with text and label)", allow_retries=False)
        return "labelled"
    if choice == "reference" or (choice == "auto" and Path(reference).exists()):
        if not Path(reference).exists():
            raise Failure(
                f"no reference corpus at {reference}: set classifier.reference_path (JSONL with a text field)", allow_retries=False
            )
        return "reference"
    return "pseudo"


def write_signature(model_dir: Path) -> None:
    """An MLflow ``MLmodel`` file beside the model: what goes in (text) and comes out (a score and
    its label), so that the registered version shows its signature."""
    from mlflow.models import Model
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, Schema

    m = Model()
    m.signature = ModelSignature(
        inputs=Schema([ColSpec("string", "text")]), outputs=Schema([ColSpec("double", "score"), ColSpec("string", "label")])
    )
    m.save(str(model_dir / "MLmodel"))


def shipped(o, out_dir: Path) -> dict:
    """The shipped model, copied where this materialization keeps its model (for MLflow)."""
    if not o.shipped_model.startswith(SHIPPED_PREFIX):
        raise Failure(f"classifier.shipped_model must be {SHIPPED_PREFIX}<name>, got {o.shipped_model!r}", allow_retries=False)
    try:
        src = shipped_path(o.shipped_model)
    except LookupError as e:
        raise Failure(str(e), allow_retries=False) from e
    shutil.copytree(src, out_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    card = read_model_card(str(out_dir)) or {}
    return {
        "trained": True,
        "kind": card.get("kind", "fasttext"),
        "backbone": None,
        "device": "cpu",
        "metrics": {},
        "source": f"{o.shipped_model} (reference-trained, see its MODEL_CARD.md)",
        "model_dir": str(out_dir),
        "architecture": f"{card.get('version', o.shipped_model)}: shipped fastText model ({card.get('file')})",
    }


def work(ctx: StageContext) -> Outcome:
    o = ctx.options["classifier"]
    min_auc, min_agreement = ctx.options["min_classifier_auc"], ctx.options["min_classifier_agreement"]
    docs = ctx.pin("deduplicated")
    table = f"deduplicated@v{docs.version}"
    reference = o.reference_path or str(ctx.lakehouse.crawl_dir(ctx.crawl_id) / T.REFERENCE_CORPUS)
    source = training_source(o.source, o.labelled_path, reference)
    out_dir = ctx.lakehouse.folder(T.MODELS, SPEC.name, f"{ctx.crawl_id}-{ctx.dagster.run_id[:8]}")
    if source == "shipped":
        ctx.log.info(f"no training: the shipped model {o.shipped_model}, measured on this crawl")
        summary = shipped(o, out_dir)
    else:
        ctx.log.info(
            f"training data: {source}"
            + {
                "labelled": f" ({o.labelled_path})",
                "reference": f" ({reference} vs the crawl)",
                "pseudo": " (signals-scorer pseudo-labels over the crawl)",
            }[source]
        )
        if docs.rows == 0:
            summary = {"trained": False, "reason": f"{table} has no documents"}
        else:
            summary = ctx.gpu_job(
                "gpu_jobs.train_classifier",
                {
                    "backbone": o.backbone,
                    "options": o.model_dump(),
                    "positives_path": reference if source == "reference" else None,
                    "labelled_path": o.labelled_path if source == "labelled" else None,
                    "negative_files": docs.paths,
                    "output_dir": str(out_dir),
                },
            )
    ctx.run.log_params(
        {
            "model.source": summary.get("source", source),
            "model.training_source": source,
            "model.kind": summary.get("kind", "-"),
            "model.architecture": summary.get("architecture", "-"),
            "positives": reference if source == "reference" else source,
        }
    )

    if not summary["trained"]:
        verdict = f"not trained: {summary['reason']}"
        ctx.log.warning(f"quality_classifier {verdict}; quality_scored goes on without it")
        row = {"approved": False, "verdict": verdict, "documents": 0, "labelled_auc": None, "agreement_auc": None}
        return Outcome(
            gate=classifier_gate(min_auc, min_agreement),
            accounting=row,
            metadata={
                "verdict": verdict,
                "model_verdict": "not trained",
                "registered_model": o.registered_model,
                "training_source": source,
                "trained_on": table,
            },
        )

    if docs.rows == 0:
        figures = {"documents": 0, "measured_on": f"0 documents of {table}"}
    else:
        figures = ctx.gpu_job(
            "gpu_jobs.validate_classifier",
            {
                "model_path": str(out_dir / summary_file(out_dir)),
                "kind": summary["kind"],
                "label": (read_model_card(str(out_dir)) or {}).get("label"),
                "max_length": o.max_length,
                "files": docs.paths,
                "table": table,
                "holdout_only": source != "shipped",
                "documents": o.validation_documents,
                "labels_path": o.validation_labels_path,
                "min_spread": CLASSIFIER_MIN_SPREAD,
                "agreement_fraction": CLASSIFIER_AGREEMENT_FRACTION,
                "device": o.device,
            },
        )
    row = classifier_accounting(figures, min_auc, min_agreement)
    verdict = row["verdict"]
    (ctx.log.info if row["approved"] else ctx.log.warning)(f"quality_classifier {verdict}")
    write_signature(out_dir)
    ctx.lineage.log_model(ctx.run.run_id, out_dir)  # registered after the gate, approved or rejected
    m = summary.get("metrics", {})
    ctx.run.log_params(
        {
            "validation.measured_on": figures.get("measured_on", "-"),
            "validation.evidence": "hand labels" if figures.get("labelled_auc") is not None else "agreement with builtin:signals-v1",
        }
    )

    def register(approved: bool, failures: list[str] = ()) -> dict:
        tags = {
            "crawl_id": ctx.crawl_id,
            "validated_on": table,
            "verdict": verdict[:4000],
            "kind": summary["kind"],
            "source": summary["source"],
            "architecture": summary["architecture"],
            **({"trained_on": table, "training_split_auc": f"{m['roc_auc']:.4f}"} if "roc_auc" in m else {}),
            **{k: f"{figures[k]:.4f}" for k in ("agreement_auc", "labelled_auc", "p10", "p50", "p90") if figures.get(k) is not None},
        }
        if failures:
            tags["gate_failures"] = "; ".join(failures)[:4000]
        mv = ctx.lineage.register_model(ctx.run.run_id, o.registered_model, approved, tags=tags)
        ctx.lineage.client.update_model_version(
            o.registered_model,
            mv,
            description=(
                f"Quality classifier for crawl {ctx.crawl_id}: {summary['architecture']}. Training data: {summary['source']}"
                + (f" ({table}, held-out fold excluded)" if source != "shipped" else "")
                + f". Gate: {verdict}. "
                "Input: a document's text; output: the probability that it is high quality, and its label."
            ),
        )
        ctx.log.info(f"registered {o.registered_model} version {mv}: {'approved' if approved else 'rejected (kept for audit; never used)'}")
        return {
            "model_version": mv,
            "model_uri": f"models:/{o.registered_model}/{mv}",
            "model_verdict": "approved" if approved else "rejected",
        }

    def fig(k):
        return None if figures.get(k) is None else round(float(figures[k]), 4)

    return Outcome(
        gate=classifier_gate(min_auc, min_agreement),
        accounting=row,
        metrics={
            **{
                f"validation.{k}": float(figures[k])
                for k in ("p10", "p50", "p90", "high_share", "agreement_auc", "labelled_auc", "documents")
                if figures.get(k) is not None
            },
            **{f"training.{k}": float(v) for k, v in m.items() if isinstance(v, (int, float))},
        },
        metadata={
            "verdict": verdict,
            "registered_model": o.registered_model,
            "measured_on": figures.get("measured_on", "-"),
            "p10": fig("p10"),
            "p50": fig("p50"),
            "p90": fig("p90"),
            "high_share": fig("high_share"),
            "agreement_auc": fig("agreement_auc"),
            "labelled_auc": fig("labelled_auc"),
            "training_split_auc": round(m["roc_auc"], 4) if "roc_auc" in m else None,
            "training_source": source,
            "source": summary["source"],
            "architecture": summary["architecture"],
            "validated_on": table,
            "kind": summary["kind"],
            "device": summary["device"],
        },
        on_publish=[lambda _commits: register(True)],
        on_reject=[lambda failures: register(False, failures)],
    )


def summary_file(model_dir: Path) -> str:
    """What the scorer loads in a model folder: the card's file (fastText), else the folder (hf)."""
    card = read_model_card(str(model_dir)) or {}
    return card.get("file") or ""
