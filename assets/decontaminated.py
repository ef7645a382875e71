"""``decontaminated`` (gold): every text layer of the crawl — the pinned `deduplicated` documents
and, when a rewriter is configured, the pinned `rewritten` ones (a rewrite can reintroduce a
benchmark item) — without the documents that overlap a benchmark test set.

Matching is word n-grams of normalised text against the benchmarks named under
``decontamination.benchmarks`` (``documents.decontam``; the Spark job is
``spark_jobs.decontam_job``). Benchmark n-grams frequent in the crawl itself are common web text
(quotes, licences, templates): they are suppressed and listed in the metadata. Each removal is a
`rejections` row (stage ``decontam``) whose detail holds the benchmark, the item, the matched n-gram,
its character offset and the number of matching n-grams. Mixtures read only this table.
"""

import json

from dagster import MetadataValue

from assets.stage import Outcome, StageContext, StageSpec
from audit.report import audit_table, render, write_report
from documents.decontam import build_index
from quality.plots import markdown_image
from quality.suites import accounting_row, decontaminated_gate
from spark_jobs.decontam_job import decontaminate
from storage import tables as T

SPEC = StageSpec(
    name="decontaminated",
    description=__doc__,
    group="gold",
    kinds=("spark", "delta"),
    options=lambda cfg: {"decontamination": cfg.decontamination},
    upstreams=("deduplicated", "rewritten"),
    outputs=(T.DECONTAMINATED, T.REJECTIONS),
    rejection_stage=T.DECONTAM,
    gate_description="Great Expectations: schema, unique ids, known sources, conservation",
    preview_columns=("doc_id", "source", "url", "word_count", "text"),
    resources=("lakehouse", "lineage", "spark"),
)


def _suppressed_table(rows: list[dict]) -> str:
    if not rows:
        return "none"
    lines = ["| benchmark | item | n-gram | documents |", "|---|---|---|---:|"]
    lines += [f"| {r['benchmark']} | {r['item']} | {r['ngram'][:90]} | {r['documents']} |" for r in rows[:25]]
    return "\n".join(lines) + (f"\n\n… and {len(rows) - 25} more (see the MLflow artifact)" if len(rows) > 25 else "")


def work(ctx: StageContext) -> Outcome:
    o = ctx.options["decontamination"]
    inputs = {"deduplicated": ctx.pin("deduplicated")}
    rewritten = ctx.pin("rewritten", optional=True)
    if rewritten is not None:
        inputs["rewritten"] = rewritten
    index = build_index(o)
    if not o.benchmarks:
        ctx.log.warning("no benchmarks under decontamination.benchmarks: documents are passed through unchecked")
    ctx.log.info(
        f"benchmarks: {', '.join(f'{n} ({index.items[n]} items, {index.too_short[n]} too short)' for n in index.names) or 'none'}; "
        f"{index.ngrams} n-grams of sizes {index.sizes}"
    )
    with ctx.scratch() as scratch:
        stats = decontaminate(
            ctx.spark,
            {k: p.paths for k, p in inputs.items()},
            index,
            o,
            str(scratch),
            ctx.output(SPEC.name).staging_uri,
            ctx.output("rejections").staging_uri,
            ctx.dagster.run_id,
        )
    docs_in = sum(p.rows for p in inputs.values())
    kept, rejected = ctx.output(SPEC.name).staged_rows(), ctx.output("rejections").staged_rows()
    ctx.log.info(
        f"{docs_in} documents: {kept} kept, {rejected} removed as contaminated ({stats.by_benchmark}); "
        f"{len(stats.suppressed)} frequent benchmark n-grams suppressed (in > {stats.threshold:.0f} documents)"
    )
    report = ctx.report_path(".suppressed.json")
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"threshold_documents": stats.threshold, "suppressed": stats.suppressed}, indent=1))

    def crawl_audit(_commits) -> dict:
        """The last stage of a crawl: its funnel report (``sluice audit``) joins its metadata and run."""
        out = ctx.lakehouse.folder(T.REPORTS, "audit", ctx.crawl_id)
        summary = write_report(ctx.lakehouse.path, ctx.crawl_id, out, ctx.lineage.tracking_uri)
        for f in (summary["report"], *summary["plots"]):
            ctx.run.log_artifact(f, "audit")
        ctx.log.info(render(summary))
        return {
            "audit_report": MetadataValue.path(summary["report"]),
            "funnel_conserved": summary["conserved"],
            "crawl_funnel": MetadataValue.md(markdown_image(summary["plots"][0], "funnel") + "\n\n" + audit_table(summary)),
        }

    return Outcome(
        gate=decontaminated_gate(T.DECONTAMINATED.schema().names, sorted(inputs)),
        accounting=accounting_row(docs_in, documents=kept, rejected=rejected),
        documents_in=docs_in,
        reasons={f"{T.DECONTAM}.{k}": v for k, v in stats.by_benchmark.items()},
        metrics={
            "benchmark_ngrams": index.ngrams,
            "matched_documents": stats.matched_docs,
            "suppressed_ngrams": len(stats.suppressed),
            **{f"removed.{k}": v for k, v in stats.removed.items()},
        },
        metadata={
            "benchmarks": MetadataValue.json({n: {"items": index.items[n], "too_short": index.too_short[n]} for n in index.names}),
            "benchmark_ngrams": index.ngrams,
            "removed_by_source": MetadataValue.json(stats.removed),
            "documents_with_any_match": stats.matched_docs,
            "suppression_threshold_documents": round(stats.threshold, 1),
            "suppressed_ngrams": MetadataValue.md(_suppressed_table(stats.suppressed)),
        },
        artifacts=[(report, "reports")],
        on_publish=[crawl_audit],
    )
