"""``mixed`` (gold): the rows of a training mixture, one partition per mixture named under
``mixing.mixtures``.

Reads the current versions of `decontaminated` (every crawl; a current version always passed its
gate) and `quality_scored` (for rules over scores), assigns each document to the first source whose
rule it meets, counts tokens with the mixture's tokenizer, and samples each source to its share of
the token budget by a keyed hash of (doc_id, seed) — so the same specification and inputs give the
same rows on any partitioning (``spark_jobs.mix_job``). An infeasible specification fails before
anything is written, with what cannot be met. Gate: realised shares within the tolerance, synthetic
share under its cap, every row traceable to a `decontaminated` row, none contaminated.
"""

from dagster import AssetSelection, AutomationCondition, Failure, MetadataValue, StaticPartitionsDefinition

from assets.stage import Outcome, StageContext, StageSpec
from documents.mixture import file_sha256, static_problems, tokenizer_file
from quality.plots import markdown_image, shares_png
from quality.suites import mixed_gate
from spark_jobs.mix_job import MixtureInfeasible, build_mixture
from spark_jobs.spark_io import read_table
from storage import tables as T

SPEC = StageSpec(
    name="mixed",
    description=__doc__,
    group="gold",
    kinds=("spark", "delta"),
    options=lambda cfg: {"mixing": cfg.mixing},
    upstreams=("decontaminated", "quality_scored"),
    outputs=(T.MIXED,),
    gate_description="Great Expectations: token shares, synthetic cap, traceable and clean rows",
    preview_columns=("doc_id", "repeat", "source", "token_count", "text"),
    resources=("lakehouse", "lineage", "spark"),
    partitions=lambda cfg: StaticPartitionsDefinition([m.name for m in cfg.mixing.mixtures]),
    partition_column="mixture_name",
    enabled=lambda cfg: bool(cfg.mixing.mixtures),
    automation=lambda cfg: rebuild_on_cron(cfg.dagster.mixture_cron),
)


def rebuild_on_cron(cron: str, tz: str = "UTC") -> AutomationCondition:
    """At each tick of ``cron``, rebuild a mixture whose inputs changed since it was last built (or
    asked for), or that was never built while its inputs exist; otherwise leave it alone.

    Not Dagster's ``on_cron``: that waits until *every* dependency is updated after the tick, and a
    mixture reads crawls finished long before, so it would never fire."""
    A = AutomationCondition
    inputs_changed = A.any_deps_match(A.newly_updated()).since(A.newly_requested() | A.newly_updated())
    # the text it mixes: at least one crawl decontaminated (quality_scored alone is not enough)
    has_text = A.any_deps_match(~A.missing()).allow(AssetSelection.assets("decontaminated"))
    # a crawl half-way through its stages waits for the next tick rather than be mixed half-done
    return (
        A.cron_tick_passed(cron, tz) & has_text & (inputs_changed | A.missing()) & ~A.in_progress() & ~A.any_deps_in_progress()
    ).with_label(f"at {cron} ({tz}) when its inputs changed since it was built")


NOT_SCORES = {"doc_id", "model_uri", "model_version", "crawl_id"}


def work(ctx: StageContext) -> Outcome:
    from pyspark.sql import functions as F

    spec = next(m for m in ctx.options["mixing"].mixtures if m.name == ctx.key)
    problems = static_problems(spec)
    if problems:
        raise Failure(f"mixture {spec.name!r} is not a valid specification:\n- " + "\n- ".join(problems), allow_retries=False)
    tok_file = tokenizer_file(spec.tokenizer)
    lh, spark = ctx.lakehouse, ctx.spark
    dec = ctx.pin_current("decontaminated")
    docs = read_table(spark, lh.uri(dec.table), dec.version)
    scores = ctx.pin_current("quality_scored", optional=True)
    if scores is not None:
        qs = read_table(spark, lh.uri(scores.table), scores.version)
        score_cols = [c for c in qs.columns if c not in NOT_SCORES and not c.endswith("_label")]
        docs = docs.join(qs.select(F.col("doc_id").alias("source_doc_id"), "crawl_id", *score_cols), ["source_doc_id", "crawl_id"], "left")
    try:
        with ctx.scratch() as scratch:
            stats = build_mixture(spark, docs, spec, str(scratch), ctx.output(SPEC.name).staging_uri)
    except MixtureInfeasible as e:
        raise Failure(str(e), allow_retries=False) from None

    staged = ctx.staged(SPEC.name)
    delivered = {r["source"]: int(r["tokens"]) for r in staged.groupBy("source").agg(F.sum("token_count").alias("tokens")).collect()}
    total = sum(delivered.values()) or 1
    shares = {s.name: delivered.get(s.name, 0) / total for s in spec.sources}
    untraceable = staged.select("doc_id").distinct().join(docs.select("doc_id"), "doc_id", "left_anti").count()
    rejections = ctx.pin_current("rejections")
    contaminated = (
        read_table(spark, lh.uri(rejections.table), rejections.version)
        .where(F.col("stage") == T.DECONTAM)
        .select("doc_id")
        .join(staged.select("doc_id"), "doc_id")
        .count()
    )
    ctx.log.info(
        f"mixture {spec.name}: {total} tokens (budget {spec.token_budget}); shares "
        + ", ".join(f"{n} {shares[n]:.1%} (target {s.weight:.1%}, {stats.epochs[n]:.2f} epochs)" for s in spec.sources for n in [s.name])
    )
    plot = shares_png({s.name: s.weight for s in spec.sources}, shares, f"mixture {spec.name}: token shares", ctx.report_path())
    table = [
        "| source | where | weight | documents | available tokens | target tokens | epochs | delivered tokens | share |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    table += [
        f"| {s.name} | `{s.where}` | {s.weight:.1%} | {stats.documents.get(s.name, 0)} | {stats.available.get(s.name, 0)} | "
        f"{stats.targets[s.name]:.0f} | {stats.epochs[s.name]:.2f} | {delivered.get(s.name, 0)} | {shares[s.name]:.1%} |"
        for s in spec.sources
    ]
    return Outcome(
        gate=mixed_gate(T.MIXED.schema().names, {s.name: s.weight for s in spec.sources}, spec.tolerance, spec.synthetic_cap),
        accounting={
            **{f"share.{n}": v for n, v in shares.items()},
            "synthetic_share": sum(shares[s.name] for s in spec.sources if s.synthetic),
            "untraceable_rows": untraceable,
            "contaminated_rows": contaminated,
        },
        metrics={
            "tokens": total,
            "token_budget": spec.token_budget,
            "unassigned_documents": stats.unassigned,
            **{f"share.{n}": v for n, v in shares.items()},
            **{f"epochs.{n}": v for n, v in stats.epochs.items()},
        },
        metadata={
            "mixture": MetadataValue.json(spec.model_dump(mode="json")),
            "plan": MetadataValue.md("\n".join(table)),
            "shares": MetadataValue.md(markdown_image(plot, "token shares")),
            "tokens": total,
            "tokenizer": f"{spec.tokenizer} (sha256 {file_sha256(tok_file)[:16]}…)",
            "unassigned_documents": stats.unassigned,
        },
        artifacts=[(plot, "plots")],
    )
