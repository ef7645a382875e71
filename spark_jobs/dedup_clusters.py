"""Pass 2 of the dedup job (``spark_jobs.dedup_job``): exact and MinHash clusters.

Exact groups by hash; LSH buckets by (band, key) give candidate pairs; each pair is optionally
verified by exact Jaccard; connected components; the kept document of each cluster is chosen by the
keep policy (:func:`rank`). Documents kept by earlier crawls come from the signature index and
always stay kept. The decision per document (``DECISION_SCHEMA``) is written to scratch,
partitioned by the work unit that read it; the later passes read it. ``DedupStats`` is defined
here because this pass fills most of it; the semantic pass adds its own counts.

Two paths give the same decisions: up to ``LOCAL_MAX_DOCS`` documents the signatures are collected
and decided on the driver (``spark_jobs.dedup_local``); above, in Spark DataFrames (below).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial

import pyarrow as pa

from documents.minhash import DedupOptions, exact_jaccards
from storage.tables import DEDUP

STAGE = DEDUP
DECISION_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("kept", pa.bool_()),
        ("cluster_id", pa.string()),
        ("cluster_size", pa.int64()),
        ("reason", pa.string()),
        ("jaccard", pa.float64()),
    ]
)


def _verify_pairs(batches: Iterator[pa.RecordBatch], ngram: int) -> Iterator[pa.RecordBatch]:
    for b in batches:
        j = exact_jaccards(b.column("text_a"), b.column("text_b"), ngram)
        yield pa.RecordBatch.from_arrays([b.column("a"), b.column("b"), pa.array(j)], names=["a", "b", "jaccard"])


# Candidate pairs verified on the driver, up to this many: their texts (two per pair at most) come
# over as Arrow, about 40 MB for 10,000 pairs of 2 KB texts. Above, the pairs are joined with their
# texts in Spark and verified by Python tasks: two sort-merge joins, a Python job and a checkpoint,
# about 2 s of a tiny crawl's dedup in a fresh process.
LOCAL_MAX_PAIRS = 10_000

# Documents (the crawl's plus the earlier crawls' kept ones) decided on the driver, up to this many:
# 560 bytes of signature each, and about 40 bytes per band key while the buckets are sorted,
# about 0.6 GB of driver memory at this size. Above, the DataFrame path, whose memory the heap bounds.
LOCAL_MAX_DOCS = 500_000


def _verify_on_driver(spark, pairs, needed, o: DedupOptions):
    """The verified edges ``(a, b)`` of a small candidate list, scored on the driver as the driver
    path scores its pairs (``dedup_local.verified``)."""
    from spark_jobs.dedup_local import verified

    p = pairs.select("a", "b").toArrow()
    kept = p.filter(verified(p.column("a").combine_chunks(), p.column("b").combine_chunks(), needed.select("doc_id", "text").toArrow(), o))
    return spark.createDataFrame(kept.to_pandas(), "a string, b string")


@dataclass
class DedupStats:
    docs_in: int = 0
    kept: int = 0
    exact_removed: int = 0
    near_removed: int = 0
    semantic_removed: int = 0
    semantic_model: str | None = None
    semantic_threshold: float | None = None
    semantic_clusters: int = 0  # k of the k-means
    semantic_pairs: int = 0  # pairs at or above the threshold
    earlier_embeddings: int = 0  # earlier kept documents compared (embedded by the same model)
    earlier_other_model: int = 0  # earlier kept documents embedded by another model: not compared
    earlier_docs: int = 0
    candidate_pairs: int = 0
    verified_pairs: int = 0
    cc_rounds: int = 0
    clusters: int = 0
    cluster_sizes: dict[int, int] = field(default_factory=dict)  # size → number of clusters
    missing_kept: int = 0  # removed documents whose kept document exists nowhere (gate: 0)
    hash_clashes: int = 0  # kept documents whose exact hash an earlier crawl already kept (gate: 0)
    seconds: dict[str, float] = field(default_factory=dict)


def rank(df, prio: int):
    from pyspark.sql import functions as F

    # Sorting by this struct ascending = the keep policy: earlier crawls, best quality, earliest date, smallest id.
    return df.withColumn(
        "rank",
        F.struct(
            F.lit(prio).alias("prio"),
            F.coalesce(-F.col("quality"), F.lit(float("inf"))).alias("q"),
            F.coalesce(F.col("warc_date"), F.lit("9999-12-31").cast("timestamp")).alias("date"),
            F.col("doc_id").alias("id"),
        ),
    )


def _pairs_from_buckets(members, max_bucket_pairs: int):
    """Candidate pairs (a better-ranked than b) of each LSH bucket's sorted members."""
    from pyspark.sql import functions as F

    m = F.col("m")
    n = F.size(m)
    all_pairs = F.flatten(
        F.transform(
            F.sequence(F.lit(1), n - 1),
            lambda i: F.transform(F.slice(m, i + 1, n), lambda y: F.struct(F.element_at(m, i).alias("a"), y.alias("b"))),
        )
    )
    star = F.transform(F.slice(m, 2, n), lambda y: F.struct(F.element_at(m, 1).alias("a"), y.alias("b")))
    return (
        members.select(F.explode(F.when(n <= max_bucket_pairs, all_pairs).otherwise(star)).alias("p"))
        .where((F.col("p.a.prio") == 1) | (F.col("p.b.prio") == 1))  # pairs of two earlier docs were settled before
        .select(F.col("p.a.id").alias("a"), F.col("p.b.id").alias("b"))
        .distinct()
    )


def cluster_documents(
    spark, sigs_dir: str, earlier, text_paths: list[str], earlier_texts, o: DedupOptions, decisions_dir: str, stats: DedupStats
) -> None:
    """Decide, for every document in the signatures (pass 1's Parquet folder), whether it is kept
    and which cluster it belongs to; write the decisions (partitioned by ``unit``) to ``decisions_dir``.
    ``text_paths``: the crawl's Parquet files (``doc_id``, ``text``), read for verification only;
    ``earlier_texts``: a DataFrame of the earlier crawls' kept texts, or None."""
    import time

    import pyarrow.dataset as ds

    sig_files = ds.dataset(sigs_dir, format="parquet")
    if sig_files.count_rows() + stats.earlier_docs <= LOCAL_MAX_DOCS:
        return _cluster_on_driver(spark, sig_files, earlier, text_paths, earlier_texts, o, decisions_dir, stats)
    sigs = spark.read.parquet(sigs_dir)
    texts = spark.read.parquet(*text_paths).select("doc_id", "text") if o.verify else None

    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from spark_jobs.components import connected_components
    from spark_jobs.spark_io import checkpoint

    t0 = time.time()
    has_earlier = earlier is not None
    seen = None
    if has_earlier:
        prev = rank(earlier, 0).select("doc_id", "rank", "exact_hash", "minhash", "band_keys")
        # The same WARC record ingested again (same doc_id as a document an earlier crawl kept):
        # settled at once as an exact duplicate of the earlier copy.
        seen = checkpoint(sigs.join(prev.select("doc_id"), "doc_id", "left_semi").select("unit", "doc_id"))
        sigs = sigs.join(seen.select("doc_id"), "doc_id", "left_anti")
    cur = checkpoint(rank(sigs, 1).select("doc_id", "rank", "exact_hash", "minhash", "band_keys"))

    # Exact: every document points at the best-ranked document with its hash.
    if o.exact:
        exact_nodes = cur
        if has_earlier:
            exact_nodes = cur.unionByName(prev.join(cur.select("exact_hash").distinct(), "exact_hash", "left_semi"))
        w = Window.partitionBy("exact_hash").orderBy("rank")
        rep = exact_nodes.select("doc_id", F.first("rank").over(w).alias("rep_rank"), F.col("rank.prio").alias("prio"))
        rep = rep.where("prio = 1").select("doc_id", F.col("rep_rank.id").alias("rep"))
    else:
        rep = cur.select("doc_id", F.col("doc_id").alias("rep"))
    rep = checkpoint(rep)
    stats.seconds["exact"] = time.time() - t0

    # Near: LSH buckets among the exact representatives (and the earlier documents they hit).
    t0 = time.time()
    comp = None
    if o.fuzzy:
        survivors = cur.join(rep.where("rep = doc_id").select("doc_id"), "doc_id", "left_semi")
        cur_bands = survivors.select("rank", F.posexplode("band_keys").alias("band", "key"))
        bands = cur_bands
        if has_earlier:
            prev_bands = prev.select("rank", F.posexplode("band_keys").alias("band", "key"))
            bands = cur_bands.unionByName(prev_bands.join(cur_bands.select("band", "key").distinct(), ["band", "key"], "left_semi"))
        members = (
            bands.groupBy("band", "key")
            .agg(F.sort_array(F.collect_list("rank")).alias("m"))
            .where((F.size("m") > 1) & F.exists("m", lambda x: x["prio"] == 1))
        )
        pairs = checkpoint(_pairs_from_buckets(members, o.max_bucket_pairs))
        stats.candidate_pairs = pairs.count()
        if o.verify and stats.candidate_pairs:
            all_texts = texts if earlier_texts is None else texts.unionByName(earlier_texts)
            # Only the texts of the pairs' documents, shuffled, never broadcast: Spark sizes a text
            # column at 20 bytes a row, so it took all the crawl's texts for a small table and
            # broadcast them (320 MB at 200k documents; out of memory in a 1g driver).
            ids = F.broadcast(pairs.select(F.col("a").alias("doc_id")).unionByName(pairs.select(F.col("b").alias("doc_id"))).distinct())
            # A record ingested again has its text in both: one copy, or its pairs count twice.
            needed = all_texts.join(ids, "doc_id", "left_semi").dropDuplicates(["doc_id"])
            if stats.candidate_pairs <= LOCAL_MAX_PAIRS:
                edges = _verify_on_driver(spark, pairs, needed, o)
            else:
                ta = needed.select(F.col("doc_id").alias("a"), F.col("text").alias("text_a")).hint("merge")
                tb = needed.select(F.col("doc_id").alias("b"), F.col("text").alias("text_b")).hint("merge")
                joined = pairs.join(ta, "a").join(tb, "b").select("a", "b", "text_a", "text_b")
                scored = joined.mapInArrow(partial(_verify_pairs, ngram=o.ngram), "a string, b string, jaccard double")
                edges = checkpoint(scored.where(F.col("jaccard") >= o.verify_threshold).select("a", "b"))
        else:
            edges = pairs
        stats.verified_pairs = edges.count()
        if stats.verified_pairs:
            comp, stats.cc_rounds = connected_components(edges, n_edges=stats.verified_pairs)
    stats.seconds["near"] = time.time() - t0

    # Assemble: each document → its exact representative → that one's component → the component's
    # best-ranked member is the cluster's kept document.
    t0 = time.time()
    nodes = cur.select("doc_id", "rank")
    if has_earlier:
        nodes = nodes.unionByName(
            prev.join(rep.select(F.col("rep").alias("doc_id")).distinct(), "doc_id", "left_semi").select("doc_id", "rank")
        )
        if comp is not None:
            nodes = nodes.unionByName(prev.join(comp.select(F.col("node").alias("doc_id")), "doc_id", "left_semi").select("doc_id", "rank"))
        nodes = nodes.dropDuplicates(["doc_id"])
    if comp is not None:
        nodes = nodes.join(comp.withColumnRenamed("node", "doc_id"), "doc_id", "left")
    else:
        nodes = nodes.withColumn("component", F.lit(None).cast("string"))
    nodes = nodes.withColumn("component", F.coalesce("component", "doc_id"))
    kept_of = nodes.groupBy("component").agg(F.min("rank").alias("kept_rank")).select("component", F.col("kept_rank.id").alias("kept_id"))
    node_kept = nodes.join(kept_of, "component").select("doc_id", "kept_id")
    # Current documents through their exact representative; earlier documents belong to their component.
    cur_kept = rep.join(node_kept.withColumnRenamed("doc_id", "rep"), "rep").select("doc_id", "kept_id")
    members_all = cur_kept.unionByName(node_kept.join(cur.select("doc_id"), "doc_id", "left_anti")).distinct()
    sizes = members_all.groupBy("kept_id").agg(F.count("*").alias("cluster_size"))
    kept_sig = cur.select("doc_id", "exact_hash", "minhash")
    if has_earlier:
        kept_sig = kept_sig.unionByName(prev.select("doc_id", "exact_hash", "minhash"))
    kept_sig = kept_sig.select(F.col("doc_id").alias("kept_id"), F.col("exact_hash").alias("k_hash"), F.col("minhash").alias("k_mh"))
    same = F.size(F.filter(F.arrays_zip("minhash", "k_mh"), lambda z: z["minhash"] == z["k_mh"]))
    decisions = (
        sigs.select("unit", "doc_id", "exact_hash", "minhash")
        .join(cur_kept, "doc_id")
        .join(sizes, "kept_id")
        .join(kept_sig, "kept_id", "left")
        .select(
            "unit",
            "doc_id",
            (F.col("kept_id") == F.col("doc_id")).alias("kept"),
            F.col("kept_id").alias("cluster_id"),
            "cluster_size",
            F.when(F.col("kept_id") == F.col("doc_id"), F.lit(None))
            .when(F.col("exact_hash") == F.col("k_hash"), F.lit(f"{STAGE}.exact"))
            .when(F.col("k_hash").isNull(), F.lit(f"{STAGE}.missing_kept"))
            .otherwise(F.lit(f"{STAGE}.near"))
            .alias("reason"),
            F.when(F.col("kept_id") == F.col("doc_id"), F.lit(1.0))
            .when(F.col("k_mh").isNull(), F.lit(None).cast("double"))
            .otherwise(same / F.size("minhash"))
            .alias("jaccard"),
        )
    )
    if seen is not None:
        decisions = decisions.unionByName(
            seen.select(
                "unit",
                "doc_id",
                F.lit(False).alias("kept"),
                F.col("doc_id").alias("cluster_id"),
                F.lit(2).cast("long").alias("cluster_size"),
                F.lit(f"{STAGE}.exact").alias("reason"),
                F.lit(1.0).alias("jaccard"),
            )
        )
    decisions.write.mode("overwrite").partitionBy("unit").parquet(decisions_dir)
    d = spark.read.parquet(decisions_dir)
    # one job for both the counts by decision and the histogram of kept clusters' sizes
    _count(stats, [r.asDict() for r in d.groupBy("kept", "reason", "cluster_size").agg(F.count("*").alias("n")).collect()])
    if has_earlier and o.exact:
        stats.hash_clashes = (
            sigs.join(d.where("kept").select("doc_id"), "doc_id", "left_semi")
            .join(prev.select("exact_hash"), "exact_hash", "left_semi")
            .count()
        )
    stats.seconds["assemble"] = time.time() - t0


def _count(stats: DedupStats, groups: list[dict]) -> None:
    """The counts by decision and the histogram of kept clusters' sizes, from (kept, reason,
    cluster_size, n) groups of the decisions."""
    counts: dict[tuple, int] = {}
    for r in groups:
        counts[(r["kept"], r["reason"])] = counts.get((r["kept"], r["reason"]), 0) + r["n"]
    stats.kept = sum(v for (k, _), v in counts.items() if k)
    stats.exact_removed = counts.get((False, f"{STAGE}.exact"), 0)
    stats.near_removed = counts.get((False, f"{STAGE}.near"), 0)
    stats.missing_kept = counts.get((False, f"{STAGE}.missing_kept"), 0)
    stats.docs_in = sum(counts.values())
    stats.cluster_sizes = {int(r["cluster_size"]): int(r["n"]) for r in groups if r["kept"]}
    stats.clusters = sum(n for s, n in stats.cluster_sizes.items() if s > 1)


def _texts_in_files(paths: list[str], ids: pa.Array) -> pa.Table:
    """(doc_id, text) of the given documents, read from Parquet files a batch at a time: only the
    matching texts are held."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    wanted = (ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids).cast(pa.string())
    parts = [pa.table({"doc_id": pa.array([], pa.string()), "text": pa.array([], pa.string())})]
    for path in paths:
        with pq.ParquetFile(path) as f:
            for b in f.iter_batches(batch_size=4096, columns=["doc_id", "text"], use_threads=False):
                hit = pc.is_in(b.column("doc_id"), value_set=wanted)
                if pc.any(hit).as_py():
                    parts.append(pa.Table.from_batches([b.filter(hit)]).cast(parts[0].schema))
    return pa.concat_tables(parts)


def _cluster_on_driver(
    spark, sig_files, earlier, text_paths: list[str], earlier_texts, o: DedupOptions, decisions_dir: str, stats: DedupStats
) -> None:
    """``cluster_documents`` for a crawl that fits the driver: the signatures, and the crawl's
    texts that verification needs, read straight from their Parquet files (not through the JVM,
    whose heap would grow by the crawl's texts and stay grown: about 160 MB of the peak at 100,000
    documents); two collects instead of ~60 jobs."""
    import shutil
    import time

    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    from spark_jobs.dedup_local import COLUMNS, decide

    t0 = time.time()
    cur = sig_files.to_table(columns=["unit", *COLUMNS])
    prev = earlier.select(*COLUMNS).toArrow() if earlier is not None else None
    pa.default_memory_pool().release_unused()  # the Parquet reader's buffers: 70 MB at 100,000 documents
    collected = time.time() - t0

    def texts_of(ids: pa.Array) -> pa.Table:
        found = [_texts_in_files(text_paths, ids)]
        if earlier_texts is not None:
            wanted = F.broadcast(spark.createDataFrame(pa.table({"doc_id": ids})))
            found.append(earlier_texts.join(wanted, "doc_id", "left_semi").select("doc_id", "text").toArrow())
        return pa.concat_tables(found, promote_options="permissive")

    decisions = decide(cur, prev, o, texts_of, stats)
    del cur, prev
    # The arrays are gone; hand their pages back (Arrow's mimalloc pool keeps them), or they stay on
    # top of the output pass's peak: 320 MB of 590 at 100,000 documents.
    pa.default_memory_pool().release_unused()
    t0 = time.time()
    shutil.rmtree(decisions_dir, ignore_errors=True)
    pq.write_to_dataset(decisions, decisions_dir, partition_cols=["unit"])
    groups = decisions.group_by(["kept", "reason", "cluster_size"]).aggregate([("doc_id", "count")]).to_pylist()
    _count(stats, [{**g, "n": g["doc_id_count"]} for g in groups])
    stats.seconds["exact"] += collected
    stats.seconds["assemble"] += time.time() - t0
