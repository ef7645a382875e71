"""``filtered`` (silver): documents that passed extraction, language ID, the URL and quality
heuristics, with PII redacted, and every measured signal as a column.

Reads the pinned ``raw_crawl`` version of the partition; every dropped document goes to
``rejections`` (stage ``filter``) with the rule that fired and the measured value. The rules and
their order are ``documents.rules.RULES``.
"""

from dagster import MetadataValue

from assets.stage import Outcome, StageContext, StageSpec
from documents.rules import RULES, STAGES
from quality.plots import funnel_png, funnel_table, markdown_image
from quality.suites import accounting_row, filtered_gate
from spark_jobs.filter_job import filter_documents
from storage import tables as T

SPEC = StageSpec(
    name="filtered",
    description=__doc__,
    group="silver",
    kinds=("spark", "delta"),
    # The rule list is part of what defines the result, beside the thresholds.
    options=lambda cfg: {"filter": cfg.filter, "rules": [r.key for r in RULES]},
    upstreams=("raw_crawl",),
    outputs=(T.FILTERED, T.REJECTIONS),
    rejection_stage=T.FILTER,
    gate_description="Great Expectations: text, PII, signals, conservation",
    preview_columns=("doc_id", "url", "language", "language_score", "word_count", "text"),
    resources=("lakehouse", "lineage", "spark"),
)


def funnel_steps(docs_in: int, reasons: dict[str, int]) -> list[tuple[str, int]]:
    """Documents remaining after each rule, in pipeline order."""
    steps = [("raw_crawl", docs_in)]
    left = docs_in
    for stage in STAGES:
        left -= sum(v for k, v in reasons.items() if k.split(".")[0] == stage)
        steps.append((stage, left))
    return steps


def work(ctx: StageContext) -> Outcome:
    opts = ctx.options["filter"]
    raw = ctx.pin("raw_crawl")
    ctx.log.info(f"raw_crawl v{raw.version}: {raw.rows} documents in {len(raw.files)} files")
    summary = filter_documents(
        ctx.spark, raw.paths, opts, ctx.output("filtered").staging_uri, ctx.output("rejections").staging_uri, ctx.dagster.run_id
    )
    kept, rejected = ctx.output("filtered").staged_rows(), ctx.output("rejections").staged_rows()
    ctx.log.info(f"filtered {summary.docs_in} documents: {kept} kept, {rejected} rejected")
    steps = funnel_steps(raw.rows, summary.reasons)
    plot = funnel_png(steps, f"filtered funnel — {ctx.crawl_id}", ctx.report_path())
    total = sum(summary.languages.values()) or 1
    language_share = {k: v / total for k, v in sorted(summary.languages.items(), key=lambda kv: -kv[1])}
    return Outcome(
        gate=filtered_gate(T.FILTERED.schema().names, opts),
        accounting=accounting_row(raw.rows, documents=kept, rejected=rejected),
        documents_in=raw.rows,
        reasons=summary.reasons,
        metrics={"keep_rate": kept / raw.rows if raw.rows else 0.0, **{f"language_share.{k}": v for k, v in language_share.items()}},
        metadata={
            "funnel": MetadataValue.md(markdown_image(plot, "funnel") + "\n\n" + funnel_table(steps)),
            "funnel_png": MetadataValue.path(str(plot)),
            "language_share": MetadataValue.json(language_share),
        },
        artifacts=[(plot, "plots")],
    )
