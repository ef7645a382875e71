"""``rewritten`` (gold, GPU): REWIRE-style rewrites of the documents whose quality score is below
``rewrite.threshold`` — the ones the quality filter would discard — each row keeping its source
document, the model, the prompt version and the generation parameters.

Runs ``gpu_jobs.rewrite`` through Dagster Pipes with an in-process Hugging Face causal LM or an
OpenAI-compatible server (vLLM, SGLang, TGI). Degenerate outputs go to `rejections` (stage
``rewrite``); usable ones are scored again by the configured scorer. With no rewriter model
configured the asset materializes as skipped: nothing is generated and nothing is faked.
"""

import shutil

import pyarrow.compute as pc
from dagster import MetadataValue

from assets.quality_scored import resolved_classifiers
from assets.stage import Outcome, StageContext, StageSpec
from storage import tables as T
from quality.suites import accounting_row, rewritten_gate

SKIPPED = "skipped: no rewriter model configured"


def _skip(options: dict) -> str | None:
    o = options["rewrite"]
    if o.backend == "none" or not o.model or (o.backend == "openai" and not o.endpoint):
        return SKIPPED  # to rewrite: rewrite.backend hf or openai, rewrite.model, and rewrite.endpoint for openai
    return None


SPEC = StageSpec(
    name="rewritten",
    description=__doc__,
    group="gold",
    kinds=("pytorch", "delta"),
    options=lambda cfg: {"rewrite": cfg.rewrite, "scoring": cfg.scoring},
    upstreams=("deduplicated", "quality_scored"),
    outputs=(T.REWRITTEN, T.REJECTIONS),
    rejection_stage=T.REWRITE,
    gate_description="non-empty rewrites with sources; conservation",
    preview_columns=("doc_id", "source_doc_id", "score_before", "score_after", "text"),
    engine="pandas",
    resources=("lakehouse", "lineage", "gpu"),
    skip=_skip,
)


def work(ctx: StageContext) -> Outcome:
    o = ctx.options["rewrite"]
    docs, scores = ctx.pin("deduplicated"), ctx.pin("quality_scored")
    scorer = next((c for c in resolved_classifiers(ctx) if c["name"] == o.score_column and not c.get("unavailable")), None)
    if scorer is None:
        ctx.log.warning(f"no available scorer named {o.score_column!r} in scoring.classifiers: rewrites are not re-scored")
    ctx.run.log_params({"scorer": scorer["uri"] if scorer else "-"})
    summary = ctx.gpu_job("gpu_jobs.rewrite", {
        "doc_files": docs.paths, "score_files": scores.paths, "output_uri": ctx.lakehouse.uri(SPEC.name),
        "options": o.model_dump(), "scorer": scorer, "run_id": ctx.dagster.run_id,
    })
    ctx.output(SPEC.name).add_files(summary["files"]["part"])
    ctx.output("rejections").add_files(summary["files"]["rej"])
    out = ctx.staged_arrow(SPEC.name, ["score_before", "score_after"])
    reasons = ctx.staged_arrow("rejections", ["reason"]).column("reason").value_counts().to_pylist()
    reasons = {r["values"]: r["counts"] for r in reasons}
    rejected = sum(reasons.values())
    gain = pc.mean(pc.subtract(out["score_after"], out["score_before"])).as_py() if out.num_rows else None
    return Outcome(
        gate=rewritten_gate(T.REWRITTEN.schema().names),
        accounting=accounting_row(summary["candidates"], documents=out.num_rows, rejected=rejected),
        documents_in=summary["candidates"],
        reasons=reasons,
        metrics={"candidates": summary["candidates"], "new_tokens_per_s": summary["new_tokens_per_s"], "mean_score_gain": gain},
        metadata={
            "candidates": summary["candidates"], "rewriter": f"{o.backend}:{o.model}", "prompt_version": o.prompt_version,
            "generation_params": MetadataValue.json(summary["generation_params"]),
            "mean_score_gain": gain if gain is not None else "-", "new_tokens_per_s": round(summary["new_tokens_per_s"], 1),
            "resumed_chunks": summary["chunks_skipped"],
        },
        cleanup=[lambda: shutil.rmtree(summary["resume_dir"], ignore_errors=True)],
    )
