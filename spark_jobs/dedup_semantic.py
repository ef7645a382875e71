"""The dedup job's semantic pass (``dedup.semantic``, after the exact and MinHash passes).

Python tasks embed the documents still kept; the driver clusters their embeddings with those of
the documents earlier crawls kept (read from the index, never recomputed) and removes the
within-cluster pairs above the cosine threshold (``documents.semantic``); the decisions of pass 2
are rewritten with those removals. Also the pass's model, resolved once by the driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from documents.embeddings import ModelSpec, embed, prepare_model
from documents.minhash import DedupOptions
from documents.semantic import SemanticOptions, semantic_duplicates
from spark_jobs.dedup_clusters import DECISION_SCHEMA, STAGE, DedupStats
from spark_jobs.units import row_group_batches

EMBEDDING_SCHEMA = pa.schema([("unit", pa.int32()), ("doc_id", pa.string()), ("embedding", pa.list_(pa.float32()))])
SEMANTIC = f"{STAGE}.semantic"

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


def _embedding_tasks(
    batches: Iterator[pa.RecordBatch], units: list, decisions_dir: str, spec_json: str, batch_size: int
) -> Iterator[pa.RecordBatch]:
    """Embeddings of the documents the exact and MinHash passes kept, unit by unit."""
    import os

    import pyarrow.dataset as ds

    spec = ModelSpec.from_json(spec_json)
    for ids in batches:
        for unit in ids.column("id").to_pylist():
            part_dir = os.path.join(decisions_dir, f"unit={unit}")
            if not os.path.isdir(part_dir):
                continue
            dec = ds.dataset(part_dir, format="parquet").to_table(columns=["doc_id", "kept"])
            kept = pa.array(dec.filter(dec.column("kept")).column("doc_id").to_pylist(), pa.string())
            for path, row_group in units[unit]:
                for b in row_group_batches(path, row_group, ["doc_id", "text"], batch_size=1024):
                    part = b.filter(pc.is_in(b.column("doc_id"), value_set=kept))
                    if not part.num_rows:
                        continue
                    v = embed(part.column("text").to_pylist(), spec, batch_size)
                    yield pa.RecordBatch.from_arrays(
                        [pa.array(np.full(part.num_rows, unit, np.int32)), part.column("doc_id"), _list_array(v)],
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
    """The keep order of ``dedup_clusters.rank`` as Python tuples: best quality, earliest date, smallest id."""
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
