"""``deduplicated`` (silver): one document per exact or near-duplicate cluster, across every crawl
deduplicated so far.

Reads the pinned ``filtered`` version of the partition and the signature index of the crawls
deduplicated before this one (``dedup_signatures``, never recomputed). Writes four tables, each a
partition replace (re-running a crawl is idempotent): ``deduplicated``, ``dedup_clusters``,
``dedup_signatures`` (the kept documents' MinHash band keys, for later crawls) and ``rejections``
(stage ``dedup``: reason exact or near, the kept document's id, the estimated Jaccard).

Crawls are ordered by when they were first deduplicated (``seq`` in the index): a crawl is
compared with the crawls before it, so a re-run of an old crawl gives the same result as its
first run, and later crawls never remove documents an earlier one kept.
"""

import shutil
import time

import pyarrow as pa
from dagster import AssetCheckSpec, AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from assets.partitions import crawl_partitions
from assets.stage import REJECTIONS, commit, counts_table, gate_check, open_write, pinned_upstream, preview, stage_run
from quality.gate import run_gate
from quality.plots import cluster_sizes_png, cluster_sizes_table, markdown_image
from quality.suites import accounting_row, deduplicated_gate
from spark_jobs.dedup_job import CLUSTER_COLUMNS, INDEX_COLUMNS, STAGE, OutputDirs, deduplicate, output_schemas
from spark_jobs.lakehouse.delta_table import open_table, snapshot_files, table_exists
from spark_jobs.lakehouse.spark_io import read_table

ASSET = "deduplicated"
UPSTREAM = "filtered"
CLUSTERS = "dedup_clusters"
INDEX = "dedup_signatures"
PREVIEW_COLUMNS = ["doc_id", "url", "dup_cluster_id", "dup_cluster_size", "text"]


def crawl_sequence(index_uri: str, crawl_id: str) -> tuple[int, dict[str, int], int | None]:
    """(this crawl's position, position of every crawl in the index, index version read)."""
    if not table_exists(index_uri):
        return 0, {}, None
    dt = open_table(index_uri)
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    seqs = {a["partition.crawl_id"]: int(a["min.seq"]) for a in actions if a.get("min.seq") is not None}
    mine = seqs.get(crawl_id, max(seqs.values(), default=-1) + 1)
    return mine, seqs, dt.version()


def _schema(columns) -> pa.Schema:
    return pa.schema(list(columns) + [("crawl_id", pa.string())])


@asset(
    name=ASSET,
    partitions_def=crawl_partitions,
    deps=[AssetKey(UPSTREAM)],
    required_resource_keys={"settings", "spark", "lakehouse", "lineage"},
    group_name="silver",
    kinds={"spark", "delta"},
    # Two crawls deduplicated at once would not see each other's documents.
    pool="dedup_index",
    check_specs=[AssetCheckSpec("gate", asset=ASSET, blocking=True, description="Great Expectations: unique hashes, conservation, kept documents exist")],
    description=__doc__,
)
def deduplicated(context: AssetExecutionContext) -> MaterializeResult:
    from pyspark.sql import functions as F

    settings = context.resources.settings
    lh = context.resources.lakehouse
    crawl_id = context.partition_key
    opts = settings.dedup
    part = {"crawl_id": crawl_id}
    upstream_version, _ = pinned_upstream(context, UPSTREAM)
    seq, seqs, index_version = crawl_sequence(lh.uri(INDEX), crawl_id)
    earlier_crawls = sorted(c for c, s in seqs.items() if s < seq)

    with stage_run(context, ASSET) as run:
        run.log_params({"crawl_id": crawl_id, "dedup": opts.model_dump(), "crawl_seq": seq,
                        "earlier_crawls": ",".join(earlier_crawls), "lsh_threshold": round(opts.lsh_threshold, 4)})
        run.log_table(UPSTREAM, lh.uri(UPSTREAM), upstream_version, "input")
        spark = context.resources.spark.get()
        spark.sparkContext.setJobGroup(f"{ASSET}:{crawl_id}", f"sluice {ASSET} {crawl_id}")
        files = snapshot_files(lh.uri(UPSTREAM), upstream_version, part)
        docs_in = sum(f.num_records or 0 for f in files)
        earlier = earlier_texts = None
        if earlier_crawls:
            earlier = read_table(spark, lh.uri(INDEX), index_version).where(F.col("crawl_id").isin(earlier_crawls))
            run.log_table(INDEX, lh.uri(INDEX), index_version, "input")
            if opts.verify:
                dedup_version = open_table(lh.uri(ASSET)).version()
                earlier_texts = read_table(spark, lh.uri(ASSET), dedup_version).where(F.col("crawl_id").isin(earlier_crawls)).select("doc_id", "text")
                run.log_table(ASSET, lh.uri(ASSET), dedup_version, "input")
        context.log.info(
            f"{UPSTREAM} v{upstream_version}: {docs_in} documents; compared with {len(earlier_crawls)} earlier crawls "
            f"(LSH {opts.bands}×{opts.rows}, threshold ≈ {opts.lsh_threshold:.2f}, verify={opts.verify})"
        )
        scratch = lh.root / "_scratch" / ASSET / f"{crawl_id}-{context.run_id[:8]}"
        t0 = time.time()
        try:
            with open_write(context, ASSET, part, ["crawl_id"]) as docs_txn, \
                    open_write(context, REJECTIONS, {**part, "stage": STAGE}, ["crawl_id", "stage"]) as rej_txn, \
                    open_write(context, CLUSTERS, part, ["crawl_id"]) as cl_txn, \
                    open_write(context, INDEX, part, ["crawl_id"]) as idx_txn:
                stats = deduplicate(
                    spark, [f.path for f in files], opts, str(scratch),
                    OutputDirs(docs_txn.staging_uri, rej_txn.staging_uri, cl_txn.staging_uri, idx_txn.staging_uri),
                    seq, context.run_id, earlier=earlier, earlier_texts=earlier_texts,
                )
                schemas = output_schemas()
                kept = commit(context, docs_txn, run.run_id, empty_schema=_schema(schemas["documents"]))
                rej = commit(context, rej_txn, run.run_id)
                clusters = commit(context, cl_txn, run.run_id, empty_schema=_schema(CLUSTER_COLUMNS))
                index = commit(context, idx_txn, run.run_id, empty_schema=_schema(INDEX_COLUMNS))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        elapsed = time.time() - t0
        context.log.info(
            f"deduplicated {docs_in} documents in {elapsed:.1f}s: {kept.rows} kept, {stats.exact_removed} exact and "
            f"{stats.near_removed} near duplicates removed; {stats.candidate_pairs} candidate pairs, "
            f"{stats.verified_pairs} verified, {stats.clusters} clusters ({stats.cc_rounds} component rounds)"
        )

        # Checked on the committed tables, independently of the job's own bookkeeping.
        docs_df = read_table(spark, lh.uri(ASSET), kept.version, part)
        known = docs_df.select("doc_id")
        if earlier is not None:
            known = known.unionByName(earlier.select("doc_id"))
        cluster_rows = read_table(spark, lh.uri(CLUSTERS), clusters.version, part)
        without_kept = cluster_rows.select("cluster_id").distinct().join(known.withColumnRenamed("doc_id", "cluster_id"), "cluster_id", "left_anti").count()
        reasons = {k: v for k, v in {f"{STAGE}.exact": stats.exact_removed, f"{STAGE}.near": stats.near_removed,
                                     f"{STAGE}.missing_kept": stats.missing_kept}.items() if v}
        gate = run_gate(
            deduplicated_gate(list(_schema(schemas["documents"]).names)),
            lh.quality_dir,
            run_key=f"{ASSET}-{crawl_id}-{context.run_id[:8]}",
            table_data=docs_df,
            accounting={**accounting_row(docs_in, documents=kept.rows, rejected=rej.rows),
                        "clusters_without_kept": without_kept, "hash_clashes_with_earlier": stats.hash_clashes},
        )
        context.log.info(gate.describe())
        plot = cluster_sizes_png(stats.cluster_sizes, f"duplicate clusters — {crawl_id}",
                                 lh.root / "_reports" / ASSET / f"{crawl_id}-{context.run_id[:8]}.png")
        run.log_metrics({
            "documents_in": docs_in, "kept": kept.rows, "rejected": rej.rows,
            "exact_removed": stats.exact_removed, "near_removed": stats.near_removed,
            "candidate_pairs": stats.candidate_pairs, "verified_pairs": stats.verified_pairs,
            "clusters": stats.clusters, "earlier_documents": stats.earlier_docs, "cc_rounds": stats.cc_rounds,
            "docs_per_s": docs_in / elapsed if elapsed else 0.0, "gate_passed": float(gate.success),
            **{f"seconds.{k}": v for k, v in stats.seconds.items()},
        })
        for name, res in ((ASSET, kept), (REJECTIONS, rej), (CLUSTERS, clusters), (INDEX, index)):
            run.log_table(name, lh.uri(name), res.version, "output", res.rows)
        run.log_artifact(gate.result_json, "gates")
        run.log_artifact(plot, "plots")

    return MaterializeResult(
        metadata={
            "delta_version": kept.version,
            "dagster/row_count": kept.rows,
            "upstream": f"{UPSTREAM}@v{upstream_version}",
            "compared_with_crawls": MetadataValue.json(earlier_crawls),
            "index_read": f"{INDEX}@v{index_version}" if index_version is not None else "-",
            "rejections_version": rej.version,
            "clusters_version": clusters.version,
            "signatures_version": index.version,
            "documents_in": docs_in,
            "exact_removed": stats.exact_removed,
            "near_removed": stats.near_removed,
            "candidate_pairs": stats.candidate_pairs,
            "verified_pairs": stats.verified_pairs,
            "clusters": stats.clusters,
            "docs_per_s": round(docs_in / elapsed, 1) if elapsed else 0.0,
            "seconds_by_pass": MetadataValue.json({k: round(v, 2) for k, v in stats.seconds.items()}),
            "table_uri": MetadataValue.path(lh.uri(ASSET)),
            "preview": MetadataValue.md(preview(lh.uri(ASSET), kept.version, part, PREVIEW_COLUMNS)),
            "cluster_sizes": MetadataValue.md(markdown_image(plot, "cluster sizes") + "\n\n" + cluster_sizes_table(stats.cluster_sizes)),
            "cluster_sizes_png": MetadataValue.path(str(plot)),
            "rejections_by_reason": MetadataValue.md(counts_table(reasons)),
            "mlflow_run": MetadataValue.url(run.url),
            "mlflow_run_id": run.run_id,
            "gate_report": MetadataValue.path(gate.result_json),
            "gate_passed": gate.success,
        },
        check_results=[gate_check(ASSET, gate)],
    )
