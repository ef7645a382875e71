"""``deduplicated`` (silver): one document per exact, near- or semantic-duplicate cluster, across
every crawl deduplicated so far.

Reads the pinned ``filtered`` version of the partition and the signature index of the crawls
deduplicated before this one (``dedup_signatures``, never recomputed). Stages four tables, each a
partition replace (re-running a crawl is idempotent), published together when the gate passes:
``deduplicated``, ``dedup_clusters``, ``dedup_signatures`` (the kept documents' MinHash band keys
and embeddings, for later crawls) and ``rejections`` (stage ``dedup``: reason exact, near or
semantic, the kept document's id, the estimated Jaccard or the cosine similarity).

Three passes: exact hashes, MinHash-LSH, then semantic (embeddings, k-means, cosine ≥ threshold;
``dedup.semantic``). The semantic pass is a pass of this stage rather than a stage of its own: it
needs the same crawl order, keep policy, cluster table and cross-crawl index, and one gate then
checks the three together.

Crawls are ordered by when they were first deduplicated (``seq`` in the index): a crawl is
compared with the crawls before it, so a re-run of an old crawl gives the same result as its
first run, and later crawls never remove documents an earlier one kept.
"""

import pyarrow as pa
import pyarrow.compute as pc
from dagster import MetadataValue

from assets.stage import Outcome, StageContext, StageSpec
from quality.plots import cluster_sizes_png, cluster_sizes_table, markdown_image
from quality.suites import accounting_row, deduplicated_gate
from spark_jobs.dedup_job import OutputDirs, deduplicate
from spark_jobs.dedup_semantic import embedding_model
from spark_jobs.spark_io import read_table
from storage import tables as T
from storage.delta_table import current_version, open_table, table_exists

SPEC = StageSpec(
    name="deduplicated",
    description=__doc__,
    group="silver",
    kinds=("spark", "delta"),
    options=lambda cfg: {"dedup": cfg.dedup},
    upstreams=("filtered",),
    outputs=(T.DEDUPLICATED, T.REJECTIONS, T.DEDUP_CLUSTERS, T.DEDUP_SIGNATURES),
    rejection_stage=T.DEDUP,
    gate_description="Great Expectations: unique hashes, conservation, kept documents exist",
    preview_columns=("doc_id", "url", "dup_cluster_id", "dup_cluster_size", "text"),
    resources=("lakehouse", "lineage", "spark"),
    # Two crawls deduplicated at once would not see each other's documents.
    pool="dedup_index",
)


def crawl_sequence(index_uri: str, crawl_id: str) -> tuple[int, dict[str, int], int | None]:
    """(this crawl's position, position of every crawl in the index, index version read)."""
    if not table_exists(index_uri):
        return 0, {}, None
    dt = open_table(index_uri)
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    seqs = {a["partition.crawl_id"]: int(a["min.seq"]) for a in actions if a.get("min.seq") is not None}
    mine = seqs.get(crawl_id, max(seqs.values(), default=-1) + 1)
    return mine, seqs, dt.version()


def work(ctx: StageContext) -> Outcome:
    from pyspark.sql import functions as F

    opts = ctx.options["dedup"]
    lh, spark = ctx.lakehouse, ctx.spark
    index_name = T.DEDUP_SIGNATURES.name
    seq, seqs, index_version = crawl_sequence(lh.uri(index_name), ctx.crawl_id)
    earlier_crawls = sorted(c for c, s in seqs.items() if s < seq)
    ctx.run.log_params({"crawl_seq": seq, "earlier_crawls": ",".join(earlier_crawls), "lsh_threshold": round(opts.lsh_threshold, 4)})
    docs = ctx.pin("filtered")
    earlier = earlier_texts = None
    if earlier_crawls:
        earlier = read_table(spark, lh.uri(index_name), index_version).where(F.col("crawl_id").isin(earlier_crawls))
        ctx.read_input(index_name, index_version)
        if opts.verify:
            dedup_version = current_version(lh.uri(SPEC.name))
            earlier_texts = (
                read_table(spark, lh.uri(SPEC.name), dedup_version).where(F.col("crawl_id").isin(earlier_crawls)).select("doc_id", "text")
            )
            ctx.read_input(SPEC.name, dedup_version)
    # Resolved (and on first use distilled, then cached) once, here, before any task starts.
    model = embedding_model(opts.semantic) if opts.semantic.enabled else None
    ctx.log.info(
        f"filtered v{docs.version}: {docs.rows} documents; compared with {len(earlier_crawls)} earlier crawls "
        f"(LSH {opts.bands}×{opts.rows}, threshold ≈ {opts.lsh_threshold:.2f}, verify={opts.verify}; semantic: "
        + (f"{model.name}, cosine ≥ {model.threshold:.2f})" if model else "off)")
    )
    if model:
        ctx.run.log_params({"semantic_model": model.name, "semantic_threshold": model.threshold})
    with ctx.scratch() as scratch:
        stats = deduplicate(
            spark,
            docs.paths,
            opts,
            str(scratch),
            OutputDirs(*(ctx.output(t.name).staging_uri for t in SPEC.outputs)),
            seq,
            ctx.dagster.run_id,
            earlier=earlier,
            earlier_texts=earlier_texts,
            model=model,
        )
    kept, rejected = ctx.output(SPEC.name).staged_rows(), ctx.output("rejections").staged_rows()
    ctx.log.info(
        f"{kept} kept, {stats.exact_removed} exact, {stats.near_removed} near and {stats.semantic_removed} semantic duplicates removed; "
        f"{stats.candidate_pairs} candidate pairs, {stats.verified_pairs} verified, {stats.clusters} clusters "
        + (
            f"({stats.cc_rounds} Spark component rounds)"
            if stats.cc_rounds
            else "(components found on the driver)"
            if stats.verified_pairs
            else ""
        )
    )
    # Checked on the staged tables, independently of the job's own bookkeeping: every cluster's id
    # is a kept document of this crawl or of an earlier one. Read with pyarrow (ids only), and only
    # the ids this crawl does not keep are looked up in the index with Spark: a first crawl's check
    # needs no Spark job (a distinct and an anti-join cost about 1.3 s even on a tiny crawl).
    cluster_ids = pc.unique(ctx.staged_arrow(T.DEDUP_CLUSTERS.name, ["cluster_id"]).column("cluster_id"))
    kept_ids = ctx.staged_arrow(SPEC.name, ["doc_id"]).column("doc_id").combine_chunks()
    elsewhere = cluster_ids.filter(pc.invert(pc.is_in(cluster_ids, value_set=kept_ids)))
    without_kept = len(elsewhere)
    if without_kept and earlier is not None:
        ids = spark.createDataFrame(pa.table({"doc_id": elsewhere}).to_pandas())
        without_kept = ids.join(earlier.select("doc_id"), "doc_id", "left_anti").count()
    reasons = {
        k: v
        for k, v in {
            f"{T.DEDUP}.exact": stats.exact_removed,
            f"{T.DEDUP}.near": stats.near_removed,
            f"{T.DEDUP}.semantic": stats.semantic_removed,
            f"{T.DEDUP}.missing_kept": stats.missing_kept,
        }.items()
        if v
    }
    if stats.earlier_other_model:
        ctx.log.warning(
            f"{stats.earlier_other_model} documents kept by earlier crawls have no embedding by {stats.semantic_model} "
            "(another model, or the semantic pass was off): not compared semantically"
        )
    plot = cluster_sizes_png(stats.cluster_sizes, f"duplicate clusters — {ctx.crawl_id}", ctx.report_path())
    return Outcome(
        gate=deduplicated_gate(T.DEDUPLICATED.schema().names),
        accounting={
            **accounting_row(docs.rows, documents=kept, rejected=rejected),
            "clusters_without_kept": without_kept,
            "hash_clashes_with_earlier": stats.hash_clashes,
        },
        documents_in=docs.rows,
        reasons=reasons,
        metrics={
            "exact_removed": stats.exact_removed,
            "near_removed": stats.near_removed,
            "semantic_removed": stats.semantic_removed,
            "semantic_pairs": stats.semantic_pairs,
            "semantic_clusters": stats.semantic_clusters,
            "earlier_embeddings": stats.earlier_embeddings,
            "candidate_pairs": stats.candidate_pairs,
            "verified_pairs": stats.verified_pairs,
            "clusters": stats.clusters,
            "earlier_documents": stats.earlier_docs,
            "cc_rounds": stats.cc_rounds,
            **{f"seconds.{k}": v for k, v in stats.seconds.items()},
        },
        metadata={
            "compared_with_crawls": MetadataValue.json(earlier_crawls),
            "exact_removed": stats.exact_removed,
            "near_removed": stats.near_removed,
            "semantic_removed": stats.semantic_removed,
            "semantic_model": stats.semantic_model or "off",
            "semantic_threshold": MetadataValue.float(stats.semantic_threshold)
            if stats.semantic_threshold is not None
            else MetadataValue.text("off"),
            "semantic_kmeans_clusters": stats.semantic_clusters,
            "earlier_without_embedding": stats.earlier_other_model,
            "candidate_pairs": stats.candidate_pairs,
            "verified_pairs": stats.verified_pairs,
            "clusters": stats.clusters,
            "seconds_by_pass": MetadataValue.json({k: round(v, 2) for k, v in stats.seconds.items()}),
            "cluster_sizes": MetadataValue.md(markdown_image(plot, "cluster sizes") + "\n\n" + cluster_sizes_table(stats.cluster_sizes)),
            "cluster_sizes_png": MetadataValue.path(str(plot)),
        },
        artifacts=[(plot, "plots")],
    )
