"""Spark job: a pinned `filtered` partition → exact and MinHash-LSH deduplication, across crawls.

Three passes:

1. **Signatures** (Python tasks over the Parquet row groups, as in the filter job): exact hash of
   the normalised text, MinHash signature and LSH band keys per document, written to a scratch
   folder — small rows; page texts stay in Python.
2. **Clusters** (Spark DataFrames): exact groups by hash; LSH buckets by (band, key) → candidate
   pairs; optional exact-Jaccard verification of each pair; connected components; the kept
   document of each cluster chosen by the keep policy. Documents kept by earlier crawls come from
   the signature index and always stay kept. The decision per document is written to scratch,
   partitioned by the work unit that read it.
   **Semantic** (``dedup.semantic``, after exact and MinHash): Python tasks embed the documents
   still kept; the driver clusters their embeddings with those earlier crawls kept (read from the
   index, never recomputed) and removes the within-cluster pairs above the cosine threshold
   (``documents.semantic``); the decisions are rewritten with those removals.
3. **Outputs** (Python tasks again, one per work unit): each task joins its row groups with its
   decisions and writes the kept documents, the rejections, the cluster rows and the signature
   index rows (MinHash and embedding) of the kept documents straight into the four transactions'
   staging folders.

Everything is ordered by (earlier crawl first, higher quality, earlier date, smaller doc_id), so
the result does not depend on partitioning or the number of cores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from documents.minhash import DedupOptions, band_keys, exact_hashes, exact_jaccards, minhash, shingles, words
from documents.semantic import ModelSpec, SemanticOptions, embed, prepare_model, semantic_duplicates
from spark_jobs.filter_job import plan_units
from storage.tables import CLUSTER_COLUMNS, DEDUP, DEDUPLICATED_COLUMNS, FILTERED_COLUMNS, REJECTION_COLUMNS, SIGNATURE_COLUMNS

STAGE = DEDUP
SIG_READ_COLUMNS = ["doc_id", "url", "warc_file", "warc_offset", "warc_date", "text"]

# One row per input document after pass 1.
SIG_SCHEMA = pa.schema(
    [
        ("unit", pa.int32()),
        ("doc_id", pa.string()),
        ("url", pa.string()),
        ("warc_file", pa.string()),
        ("warc_offset", pa.int64()),
        ("warc_date", pa.timestamp("us", tz="UTC")),
        ("quality", pa.float64()),
        ("exact_hash", pa.int64()),
        ("n_shingles", pa.int32()),
        ("minhash", pa.list_(pa.int32())),
        ("band_keys", pa.list_(pa.int64())),
    ]
)
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
SUMMARY_SCHEMA = pa.schema([("part", pa.int64()), ("docs_in", pa.int64()), ("kept", pa.int64()), ("rejected", pa.int64())])
EMBEDDING_SCHEMA = pa.schema([("unit", pa.int32()), ("doc_id", pa.string()), ("embedding", pa.list_(pa.float32()))])
SEMANTIC = f"{STAGE}.semantic"


# ---- pass 1: signatures --------------------------------------------------------------------------


def _signature_tasks(
    batches: Iterator[pa.RecordBatch], units: list, options_json: str, quality_column: str | None
) -> Iterator[pa.RecordBatch]:
    import pyarrow.parquet as pq

    o = DedupOptions.model_validate_json(options_json)
    columns = SIG_READ_COLUMNS + ([quality_column] if quality_column else [])
    for ids in batches:
        for unit in ids.column("id").to_pylist():
            for path, row_group in units[unit]:
                table = pq.ParquetFile(path).read_row_group(row_group, columns=columns)
                for batch in table.to_batches(max_chunksize=2048):
                    yield signature_batch(batch, unit, o, quality_column)


def signature_batch(batch: pa.RecordBatch, unit: int, o: DedupOptions, quality_column: str | None) -> pa.RecordBatch:
    texts = batch.column("text")
    n = batch.num_rows
    wl = words(texts)
    sh = shingles(texts, o.ngram, wl)
    sig = minhash(sh, o.num_perm, o.seed)
    keys = band_keys(sig, o.bands, o.rows)
    quality = batch.column(quality_column).cast(pa.float64()) if quality_column else pa.nulls(n, pa.float64())
    no_shingles = sh.counts == 0
    band_arr = pa.ListArray.from_arrays(
        np.arange(0, (n + 1) * o.bands, o.bands, dtype=np.int32), pa.array(keys.ravel()), mask=pa.array(no_shingles)
    )
    mh_arr = pa.ListArray.from_arrays(np.arange(0, (n + 1) * o.num_perm, o.num_perm, dtype=np.int32), pa.array(sig.view(np.int32).ravel()))
    return pa.RecordBatch.from_arrays(
        [
            pa.array(np.full(n, unit, np.int32)),
            batch.column("doc_id"),
            batch.column("url"),
            batch.column("warc_file"),
            batch.column("warc_offset"),
            batch.column("warc_date").cast(pa.timestamp("us", tz="UTC")),
            quality,
            pa.array(exact_hashes(texts, wl)),
            pa.array(sh.counts.astype(np.int32)),
            mh_arr,
            band_arr,
        ],
        schema=SIG_SCHEMA,
    )


# ---- pass 2: clusters ----------------------------------------------------------------------------


def _verify_pairs(batches: Iterator[pa.RecordBatch], ngram: int) -> Iterator[pa.RecordBatch]:
    for b in batches:
        j = exact_jaccards(b.column("text_a"), b.column("text_b"), ngram)
        yield pa.RecordBatch.from_arrays([b.column("a"), b.column("b"), pa.array(j)], names=["a", "b", "jaccard"])


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


def _rank(df, prio: int):
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


def cluster_documents(spark, sigs, earlier, texts, earlier_texts, o: DedupOptions, decisions_dir: str, stats: DedupStats) -> None:
    """Decide, for every document in ``sigs``, whether it is kept and which cluster it belongs to;
    write the decisions (partitioned by ``unit``) to ``decisions_dir``."""
    import time

    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from spark_jobs.components import connected_components

    t0 = time.time()
    has_earlier = earlier is not None
    seen = None
    if has_earlier:
        prev = _rank(earlier, 0).select("doc_id", "rank", "exact_hash", "minhash", "band_keys")
        # The same WARC record ingested again (same doc_id as a document an earlier crawl kept):
        # settled at once as an exact duplicate of the earlier copy.
        seen = sigs.join(prev.select("doc_id"), "doc_id", "left_semi").select("unit", "doc_id").localCheckpoint()
        sigs = sigs.join(seen.select("doc_id"), "doc_id", "left_anti")
    cur = _rank(sigs, 1).select("doc_id", "rank", "exact_hash", "minhash", "band_keys").localCheckpoint()

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
    rep = rep.localCheckpoint()
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
        pairs = _pairs_from_buckets(members, o.max_bucket_pairs).localCheckpoint()
        stats.candidate_pairs = pairs.count()
        if o.verify and stats.candidate_pairs:
            all_texts = texts if earlier_texts is None else texts.unionByName(earlier_texts)
            ta = all_texts.select(F.col("doc_id").alias("a"), F.col("text").alias("text_a"))
            tb = all_texts.select(F.col("doc_id").alias("b"), F.col("text").alias("text_b"))
            joined = pairs.join(ta, "a").join(tb, "b").select("a", "b", "text_a", "text_b")
            scored = joined.mapInArrow(partial(_verify_pairs, ngram=o.ngram), "a string, b string, jaccard double")
            edges = scored.where(F.col("jaccard") >= o.verify_threshold).select("a", "b").localCheckpoint()
        else:
            edges = pairs
        stats.verified_pairs = edges.count()
        if stats.verified_pairs:
            comp, stats.cc_rounds = connected_components(edges)
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
    counts = {(r["kept"], r["reason"]): r["n"] for r in d.groupBy("kept", "reason").agg(F.count("*").alias("n")).collect()}
    stats.kept = sum(v for (k, _), v in counts.items() if k)
    stats.exact_removed = counts.get((False, f"{STAGE}.exact"), 0)
    stats.near_removed = counts.get((False, f"{STAGE}.near"), 0)
    stats.missing_kept = counts.get((False, f"{STAGE}.missing_kept"), 0)
    stats.docs_in = sum(counts.values())
    hist = d.where("kept").groupBy("cluster_size").agg(F.count("*").alias("n")).collect()
    stats.cluster_sizes = {int(r["cluster_size"]): int(r["n"]) for r in hist}
    stats.clusters = sum(n for s, n in stats.cluster_sizes.items() if s > 1)
    if has_earlier and o.exact:
        stats.hash_clashes = (
            sigs.join(d.where("kept").select("doc_id"), "doc_id", "left_semi")
            .join(prev.select("exact_hash"), "exact_hash", "left_semi")
            .count()
        )
    stats.seconds["assemble"] = time.time() - t0


# ---- the semantic pass's model --------------------------------------------------------------------

BACKGROUND_DOCUMENTS = 500  # generated English articles whose mean static embedding is the background


def embedding_model(o: SemanticOptions) -> ModelSpec:
    """The semantic pass's model, resolved (and distilled at first use) once, by the driver, with
    its background: the mean embedding of generated English articles (``sample_crawl.text``: fixed
    seed, so every run and every crawl subtracts the same vector; see ``ModelSpec.with_background``)."""
    import random

    from sample_crawl import text as sample_text

    spec = prepare_model(o)
    rng = random.Random(0)
    generic = []
    for _ in range(BACKGROUND_DOCUMENTS):
        title, paras = sample_text.article(rng)
        generic.append(title + "\n\n" + "\n\n".join(paras))
    return spec.with_background(generic)


# ---- pass 2b: semantic ---------------------------------------------------------------------------


def _embedding_tasks(
    batches: Iterator[pa.RecordBatch], units: list, decisions_dir: str, spec_json: str, batch_size: int
) -> Iterator[pa.RecordBatch]:
    """Embeddings of the documents the exact and MinHash passes kept, unit by unit."""
    import os

    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    spec = ModelSpec.from_json(spec_json)
    for ids in batches:
        for unit in ids.column("id").to_pylist():
            part_dir = os.path.join(decisions_dir, f"unit={unit}")
            if not os.path.isdir(part_dir):
                continue
            dec = ds.dataset(part_dir, format="parquet").to_table(columns=["doc_id", "kept"])
            kept = pa.array(dec.filter(dec.column("kept")).column("doc_id").to_pylist(), pa.string())
            for path, row_group in units[unit]:
                t = pq.ParquetFile(path).read_row_group(row_group, columns=["doc_id", "text"])
                t = t.filter(pc.is_in(t.column("doc_id"), value_set=kept))
                for start in range(0, t.num_rows, 1024):
                    part = t.slice(start, 1024)
                    v = embed(part.column("text").to_pylist(), spec, batch_size)
                    yield pa.RecordBatch.from_arrays(
                        [pa.array(np.full(part.num_rows, unit, np.int32)), part.column("doc_id").combine_chunks(), _list_array(v)],
                        schema=EMBEDDING_SCHEMA,
                    )


def _list_array(v: np.ndarray) -> pa.ListArray:
    n, dim = v.shape
    return pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32)), pa.array(v.astype(np.float32).ravel()))


def _read_dir(path: str, schema: pa.Schema) -> pa.Table:
    """A Spark-written Parquet folder partitioned by ``unit``, through Arrow; empty when it has no rows."""
    import os

    import pyarrow.dataset as ds

    if not os.path.isdir(path) or not any(f.startswith("unit=") for f in os.listdir(path)):
        return schema.empty_table()
    return ds.dataset(path, format="parquet", partitioning="hive").to_table(columns=schema.names).cast(schema)


def _ranks(t: pa.Table) -> list[tuple]:
    """The keep order of ``_rank`` as Python tuples: best quality, earliest date, smallest id."""
    q = [float("inf") if x is None else -x for x in t.column("quality").to_pylist()]
    dates = pc.fill_null(t.column("warc_date").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()), np.iinfo(np.int64).max).to_pylist()
    return list(zip(q, dates, t.column("doc_id").to_pylist()))


def _vectors(t: pa.Table) -> np.ndarray:
    col = t.column("embedding").combine_chunks()
    if len(col) == 0:
        return np.zeros((0, 0), np.float32)
    return col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(col), -1)


def semantic_pass(
    spark, ids, units: list, sigs_dir: str, decisions_dir: str, scratch: str, o: DedupOptions, spec: ModelSpec, earlier, stats: DedupStats
) -> tuple[str, str]:
    """Embed the documents still kept, find semantic duplicates among them and against the
    earlier crawls' kept documents, and rewrite the decisions: (decisions folder, embeddings folder)."""
    import time

    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    t0 = time.time()
    emb_dir = f"{scratch}/embeddings"
    fn = partial(_embedding_tasks, units=units, decisions_dir=decisions_dir, spec_json=spec.to_json(), batch_size=o.semantic.batch_size)
    ids.mapInArrow(fn, from_arrow_schema(EMBEDDING_SCHEMA)).write.mode("overwrite").partitionBy("unit").parquet(emb_dir)
    stats.seconds["embed"] = time.time() - t0

    t0 = time.time()
    emb = _read_dir(emb_dir, EMBEDDING_SCHEMA)
    sig = ds.dataset(sigs_dir, format="parquet").to_table(columns=["doc_id", "quality", "warc_date"])
    emb = emb.sort_by("doc_id")  # Arrow joins do not carry list columns: aligned by position
    at = {d: i for i, d in enumerate(sig.column("doc_id").to_pylist())}
    info = sig.take(pa.array([at[d] for d in emb.column("doc_id").to_pylist()], pa.int64())).append_column(
        "embedding", emb.column("embedding")
    )
    prev = None
    if earlier is not None and "embedding_model" not in earlier.columns:  # an index written before the semantic pass
        stats.earlier_other_model = stats.earlier_docs
    elif earlier is not None:
        # Earlier crawls' kept documents embedded by the same model (a model's vectors are not
        # comparable with another's); their embeddings are read, never recomputed.
        same = F.col("embedding_model") == F.lit(spec.name)
        prev = earlier.where(same & F.col("embedding").isNotNull()).select("doc_id", "quality", "warc_date", "embedding").toArrow()
        prev = prev.sort_by("doc_id")
        stats.earlier_embeddings = prev.num_rows
        stats.earlier_other_model = stats.earlier_docs - prev.num_rows
    result = semantic_duplicates(
        info.column("doc_id").to_pylist(),
        _ranks(info),
        _vectors(info),
        prev.column("doc_id").to_pylist() if prev is not None else (),
        _ranks(prev) if prev is not None else (),
        _vectors(prev) if prev is not None and prev.num_rows else None,
        threshold=spec.threshold,
        o=o.semantic,
    )
    stats.semantic_model, stats.semantic_threshold = spec.name, spec.threshold
    stats.semantic_clusters, stats.semantic_pairs = result.clusters, result.pairs
    stats.semantic_removed = len(result.removed)
    if not result.removed:
        stats.seconds["semantic"] = time.time() - t0
        return decisions_dir, emb_dir

    # Removed documents point at their kept partner; the documents MinHash had put in a removed
    # document's cluster follow it into the partner's cluster.
    dec = ds.dataset(decisions_dir, format="parquet", partitioning="hive").to_table()
    size_of = dict(zip(dec.column("cluster_id").to_pylist(), dec.column("cluster_size").to_pylist()))
    merged: dict[str, int] = {}
    for r, (p, _) in sorted(result.removed.items()):
        merged[p] = merged.get(p, size_of.get(p, 1)) + size_of.get(r, 1)
    rows = dec.to_pydict()
    for i, d in enumerate(rows["doc_id"]):
        if d in result.removed:
            p, cos = result.removed[d]
            rows["kept"][i], rows["cluster_id"][i], rows["reason"][i], rows["jaccard"][i] = False, p, SEMANTIC, cos
        elif rows["cluster_id"][i] in result.removed:
            rows["cluster_id"][i] = result.removed[rows["cluster_id"][i]][0]
        if rows["cluster_id"][i] in merged:
            rows["cluster_size"][i] = merged[rows["cluster_id"][i]]
    out = pa.table(rows).cast(pa.schema([*DECISION_SCHEMA, ("unit", dec.schema.field("unit").type)]))
    new_dir = f"{scratch}/decisions-semantic"
    pq.write_to_dataset(out, new_dir, partition_cols=["unit"])
    kept = out.filter(out.column("kept"))
    stats.kept = kept.num_rows
    sizes = pc.value_counts(kept.column("cluster_size")).to_pylist()
    stats.cluster_sizes = {int(x["values"]): int(x["counts"]) for x in sizes}
    stats.clusters = sum(n for s, n in stats.cluster_sizes.items() if s > 1)
    stats.seconds["semantic"] = time.time() - t0
    return new_dir, emb_dir


# ---- pass 3: outputs -----------------------------------------------------------------------------


def _output_tasks(
    batches: Iterator[pa.RecordBatch],
    units: list,
    decisions_dir: str,
    sigs_dir: str,
    dirs_json: str,
    seq: int,
    run_id: str,
    emb_dir: str | None = None,
    model: str | None = None,
) -> Iterator[pa.RecordBatch]:
    import os

    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from storage.task_output import TaskOutputs

    dirs = json.loads(dirs_json)
    targets = {name: (dirs[name], schema) for name, schema in output_schemas().items()}
    for ids in batches:
        for unit in ids.column("id").to_pylist():
            part_dir = os.path.join(decisions_dir, f"unit={unit}")
            dec = ds.dataset(part_dir, format="parquet").to_table() if os.path.isdir(part_dir) else DECISION_SCHEMA.empty_table()
            sig = ds.dataset(sigs_dir, format="parquet").to_table(filter=pc.field("unit") == unit)
            by_id = {d: i for i, d in enumerate(dec.column("doc_id").to_pylist())}
            sig_by_id = {d: i for i, d in enumerate(sig.column("doc_id").to_pylist())}
            emb = None
            if emb_dir is not None and os.path.isdir(os.path.join(emb_dir, f"unit={unit}")):
                emb = ds.dataset(os.path.join(emb_dir, f"unit={unit}"), format="parquet").to_table(columns=["doc_id", "embedding"])
            docs_in = 0
            with TaskOutputs(targets, unit) as out:
                for path, row_group in units[unit]:
                    table = pq.ParquetFile(path).read_row_group(row_group)
                    docs_in += table.num_rows
                    _write_unit(out, table, dec, by_id, sig, sig_by_id, seq, run_id, emb, model)
                kept, rejected = out.rows["documents"], out.rows["rejected"]
            yield pa.RecordBatch.from_pylist(
                [{"part": unit, "docs_in": docs_in, "kept": kept, "rejected": rejected}], schema=SUMMARY_SCHEMA
            )


def output_schemas() -> dict[str, pa.Schema]:
    return {
        "documents": pa.schema(DEDUPLICATED_COLUMNS),
        "rejected": pa.schema(REJECTION_COLUMNS),
        "clusters": pa.schema(CLUSTER_COLUMNS),
        "index": pa.schema(SIGNATURE_COLUMNS),
    }


def _write_unit(
    out,
    table: pa.Table,
    dec: pa.Table,
    by_id: dict,
    sig: pa.Table,
    sig_by_id: dict,
    seq: int,
    run_id: str,
    emb: pa.Table | None = None,
    model: str | None = None,
) -> None:
    ids = table.column("doc_id").to_pylist()
    di = pa.array([by_id[d] for d in ids], pa.int64())
    si = pa.array([sig_by_id[d] for d in ids], pa.int64())
    d = dec.take(di)
    s = sig.take(si)
    kept_mask = d.column("kept")
    docs_schema = out.schema("documents")
    n_in = table.num_rows
    docs = (
        pa.table(
            {
                # Columns a `filtered` table has and a plain text collection may lack are left null.
                **{f.name: table.column(f.name) if f.name in table.column_names else pa.nulls(n_in, f.type) for f in docs_schema},
                "exact_hash": s.column("exact_hash"),
                "dup_cluster_id": d.column("cluster_id"),
                "dup_cluster_size": d.column("cluster_size"),
            }
        )
        .filter(kept_mask)
        .select(docs_schema.names)
        .cast(docs_schema)
    )
    out.write("documents", docs)
    removed = pc.invert(kept_mask)
    rd, rs = d.filter(removed), s.filter(removed)
    n = rd.num_rows
    out.write(
        "rejected",
        pa.table(
            {
                "doc_id": rd.column("doc_id"),
                "url": rs.column("url"),
                "reason": rd.column("reason"),
                "detail": pa.array(
                    [
                        f"cosine {v:.3f} by {model}; cluster of {k}" if r == SEMANTIC else f"cluster of {k}"
                        for r, v, k in zip(
                            rd.column("reason").to_pylist(), rd.column("jaccard").to_pylist(), rd.column("cluster_size").to_pylist()
                        )
                    ],
                    pa.string(),
                ),
                "value": rd.column("jaccard"),
                "related_doc_id": rd.column("cluster_id"),
                "warc_file": rs.column("warc_file"),
                "warc_offset": rs.column("warc_offset"),
                "run_id": pa.array([run_id] * n, pa.string()),
            }
        ).cast(out.schema("rejected")),
    )
    in_cluster = pc.greater(d.column("cluster_size"), 1)
    out.write("clusters", d.filter(in_cluster).select([c for c, _ in CLUSTER_COLUMNS]).cast(out.schema("clusters")))
    ks = s.filter(kept_mask)
    if emb is not None and emb.num_rows:
        at = {d: i for i, d in enumerate(emb.column("doc_id").to_pylist())}
        vectors = emb.column("embedding").take(pa.array([at.get(d) for d in ks.column("doc_id").to_pylist()], pa.int64()))
    else:
        vectors = pa.nulls(ks.num_rows, pa.list_(pa.float32()))
    models = (
        pa.array([model if v is not None else None for v in vectors.to_pylist()], pa.string()) if ks.num_rows else pa.array([], pa.string())
    )
    out.write(
        "index",
        pa.table(
            {
                "doc_id": ks.column("doc_id"),
                "seq": pa.array([seq] * ks.num_rows, pa.int64()),
                "exact_hash": ks.column("exact_hash"),
                "quality": ks.column("quality"),
                "warc_date": ks.column("warc_date"),
                "minhash": ks.column("minhash"),
                "band_keys": ks.column("band_keys"),
                "embedding": vectors,
                "embedding_model": models,
            }
        ).cast(out.schema("index")),
    )


# ---- the job -------------------------------------------------------------------------------------


@dataclass
class OutputDirs:
    documents: str
    rejected: str
    clusters: str
    index: str


def deduplicate(
    spark,
    paths: list[str],
    o: DedupOptions,
    scratch: str,
    out: OutputDirs,
    seq: int,
    run_id: str,
    earlier=None,
    earlier_texts=None,
    tasks: int | None = None,
    model: ModelSpec | None = None,
) -> DedupStats:
    """Deduplicate the documents of the given `filtered` Parquet files (a pinned snapshot's file
    list) against themselves and against ``earlier`` (index rows of earlier crawls), writing the
    four outputs into the given staging folders. ``model``: the semantic pass's embedding model
    (resolved from ``o.semantic`` when not given)."""
    import time

    from pyspark.sql.pandas.types import from_arrow_schema

    stats = DedupStats()
    units = plan_units(paths, tasks or spark.sparkContext.defaultParallelism * 4)
    if not units:
        return stats
    t0 = time.time()
    ids = spark.range(0, len(units), 1, numPartitions=len(units))
    quality_column = o.keep.quality_column
    sigs_dir, decisions_dir = f"{scratch}/signatures", f"{scratch}/decisions"
    fn = partial(_signature_tasks, units=units, options_json=o.model_dump_json(), quality_column=quality_column)
    ids.mapInArrow(fn, from_arrow_schema(SIG_SCHEMA)).write.mode("overwrite").parquet(sigs_dir)
    sigs = spark.read.parquet(sigs_dir)
    stats.seconds["signatures"] = time.time() - t0

    texts = spark.read.parquet(*paths).select("doc_id", "text") if o.verify else None
    if earlier is not None:
        stats.earlier_docs = earlier.count()
    cluster_documents(spark, sigs, earlier, texts, earlier_texts, o, decisions_dir, stats)
    emb_dir = None
    if o.semantic.enabled:
        model = model or embedding_model(o.semantic)
        decisions_dir, emb_dir = semantic_pass(spark, ids, units, sigs_dir, decisions_dir, scratch, o, model, earlier, stats)

    t0 = time.time()
    dirs = {"documents": out.documents, "rejected": out.rejected, "clusters": out.clusters, "index": out.index}
    fn = partial(
        _output_tasks,
        units=units,
        decisions_dir=decisions_dir,
        sigs_dir=sigs_dir,
        dirs_json=json.dumps(dirs),
        seq=seq,
        run_id=run_id,
        emb_dir=emb_dir,
        model=model.name if emb_dir else None,
    )
    rows = ids.mapInArrow(fn, from_arrow_schema(SUMMARY_SCHEMA)).collect()
    stats.seconds["outputs"] = time.time() - t0
    written_in = sum(r.docs_in for r in rows)
    if written_in != stats.docs_in:
        raise RuntimeError(f"dedup decided {stats.docs_in} documents but the output pass read {written_in}")
    return stats


def deduplicate_files(
    spark, paths: list[str], o: DedupOptions, workdir: str, tasks: int | None = None
) -> tuple[DedupStats, dict[str, pa.Table]]:
    """Deduplicate Parquet files of documents outside the lakehouse (benchmarks, text collections):
    the four outputs are written under ``workdir`` and returned as Arrow tables."""
    import pyarrow.dataset as ds

    dirs = {name: f"{workdir}/{name}" for name in ("documents", "rejected", "clusters", "index")}
    stats = deduplicate(spark, paths, o, f"{workdir}/scratch", OutputDirs(**dirs), 0, "standalone", tasks=tasks)
    schemas = output_schemas()
    tables = {}
    for name, d in dirs.items():
        import os

        tables[name] = ds.dataset(d, format="parquet").to_table() if os.path.isdir(d) else schemas[name].empty_table()
    return stats, tables


def documents_table(doc_ids: list[str], texts: list[str], **columns) -> pa.Table:
    """Documents in `filtered`'s schema from ids and texts (other columns null unless given), for
    running the dedup job on text collections that did not come from a crawl."""
    n = len(doc_ids)
    data = {"doc_id": doc_ids, "text": texts, **columns}
    schema = pa.schema(FILTERED_COLUMNS)
    return pa.table({f.name: pa.array(data[f.name], f.type) if f.name in data else pa.nulls(n, f.type) for f in schema}, schema=schema)
