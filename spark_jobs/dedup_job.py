"""Spark job: a pinned `filtered` partition → exact, MinHash-LSH and semantic deduplication, across crawls.

This module is the job's entry (:func:`deduplicate`) and runs its passes in order, each in a module
of its own:

1. **Signatures** (``dedup_signatures``): Python tasks write the exact hash, MinHash signature and
   LSH band keys of every document to a scratch folder.
2. **Clusters** (``dedup_clusters``, Spark DataFrames): exact groups, LSH candidate pairs, optional
   Jaccard verification, connected components and the keep policy, against this crawl and the
   documents earlier crawls kept (the signature index); the decision per document goes to scratch.
   **Semantic** (``dedup_semantic``, ``dedup.semantic``): the documents still kept are embedded and
   compared with each other and with the earlier crawls' kept embeddings; the decisions are
   rewritten with the removals.
3. **Outputs** (``dedup_outputs``): one Python task per work unit writes the kept documents, the
   rejections, the cluster rows and the index rows straight into the four transactions' staging
   folders.

Everything is ordered by (earlier crawl first, higher quality, earlier date, smaller doc_id), so
the result does not depend on partitioning or the number of cores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial

import pyarrow as pa

from documents.embeddings import ModelSpec
from documents.minhash import DedupOptions
from spark_jobs.dedup_clusters import DedupStats, cluster_documents
from spark_jobs.dedup_outputs import SUMMARY_SCHEMA, output_schemas, output_tasks
from spark_jobs.dedup_semantic import embedding_model, semantic_pass
from spark_jobs.dedup_signatures import SIG_SCHEMA, SIG_SUMMARY_SCHEMA, signature_tasks
from spark_jobs.units import plan_units
from storage.tables import FILTERED_COLUMNS


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
    import os
    import shutil
    import time

    import pyarrow.parquet as pq
    from pyspark.sql.pandas.types import from_arrow_schema

    from storage.task_output import TaskOutputs

    stats = DedupStats()
    units = plan_units(paths, tasks or spark.sparkContext.defaultParallelism * 4)
    if not units:
        return stats
    t0 = time.time()
    ids = spark.range(0, len(units), 1, numPartitions=len(units))
    quality_column = o.keep.quality_column
    sigs_dir, decisions_dir = f"{scratch}/signatures", f"{scratch}/decisions"
    shutil.rmtree(sigs_dir, ignore_errors=True)
    fn = partial(signature_tasks, units=units, options_json=o.model_dump_json(), quality_column=quality_column, out_dir=sigs_dir)
    written = sum(r.rows for r in ids.mapInArrow(fn, from_arrow_schema(SIG_SUMMARY_SCHEMA)).collect())
    if not written:  # units of empty row groups only: an empty folder would have no schema to read
        os.makedirs(sigs_dir, exist_ok=True)
        pq.write_table(SIG_SCHEMA.empty_table(), TaskOutputs.file_of(sigs_dir, 0))
    stats.seconds["signatures"] = time.time() - t0

    if earlier is not None:
        stats.earlier_docs = earlier.count()
    cluster_documents(spark, sigs_dir, earlier, paths, earlier_texts, o, decisions_dir, stats)
    emb_dir = None
    if o.semantic.enabled:
        model = model or embedding_model(o.semantic)
        decisions_dir, emb_dir = semantic_pass(spark, ids, units, sigs_dir, decisions_dir, scratch, o, model, earlier, stats)

    t0 = time.time()
    dirs = {"documents": out.documents, "rejected": out.rejected, "clusters": out.clusters, "index": out.index}
    fn = partial(
        output_tasks,
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
    spark, paths: list[str], o: DedupOptions, workdir: str, tasks: int | None = None, columns: dict[str, list[str]] | None = None
) -> tuple[DedupStats, dict[str, pa.Table]]:
    """Deduplicate Parquet files of documents outside the lakehouse (benchmarks, text collections):
    the four outputs are written under ``workdir`` and returned as Arrow tables, with only the
    ``columns`` named for an output (e.g. ``{"rejected": ["doc_id"]}``: the kept texts stay on disk)."""
    import pyarrow.dataset as ds

    dirs = {name: f"{workdir}/{name}" for name in ("documents", "rejected", "clusters", "index")}
    stats = deduplicate(spark, paths, o, f"{workdir}/scratch", OutputDirs(**dirs), 0, "standalone", tasks=tasks)
    schemas = output_schemas()
    tables = {}
    for name, d in dirs.items():
        import os

        cols = (columns or {}).get(name)
        tables[name] = (
            ds.dataset(d, format="parquet").to_table(columns=cols)
            if os.path.isdir(d)
            else schemas[name].empty_table().select(cols or schemas[name].names)
        )
    return stats, tables


def documents_table(doc_ids: list[str], texts: list[str], **columns) -> pa.Table:
    """Documents in `filtered`'s schema from ids and texts (other columns null unless given), for
    running the dedup job on text collections that did not come from a crawl."""
    n = len(doc_ids)
    data = {"doc_id": doc_ids, "text": texts, **columns}
    schema = pa.schema(FILTERED_COLUMNS)
    return pa.table({f.name: pa.array(data[f.name], f.type) if f.name in data else pa.nulls(n, f.type) for f in schema}, schema=schema)
