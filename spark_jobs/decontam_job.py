"""Spark job: the pinned text layers of a crawl (``deduplicated``, and ``rewritten`` when it exists)
→ `decontaminated` documents and `rejections` (stage ``decontam``) with the evidence.

Pass 1 reads only ``doc_id`` and ``text`` of each row group and finds every benchmark n-gram in it
(``documents.decontam.match_batch``, vectorised over the batch; the index is broadcast once). Its
output is small (only documents with a match) and goes to scratch Parquet. Spark then counts, per
benchmark n-gram, the documents holding it: n-grams above the frequency threshold are common web
text and are suppressed. Pass 2 copies every row group into `decontaminated`, except the documents
with at least ``min_matches`` remaining n-grams, which become rejection rows carrying the benchmark,
the item, the matched n-gram, its character offset and the number of matching n-grams.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

from documents.decontam import BenchmarkIndex, DecontamOptions, match_batch, word_spans
from spark_jobs.units import plan_units, row_group_batches
from storage.tables import DECONTAM, DECONTAMINATED_COLUMNS, REJECTION_COLUMNS

MATCH_SCHEMA = pa.schema(
    [("doc_id", pa.string()), ("hash", pa.int64()), ("size", pa.int32()), ("pos", pa.int32()), ("entry", pa.int64()), ("bench", pa.int32())]
)
SUMMARY_SCHEMA = pa.schema(
    [("part", pa.int64()), ("source", pa.string()), ("docs_in", pa.int64()), ("kept", pa.int64()), ("rejected", pa.int64())]
)
# What each source layer contributes to `decontaminated` (the rest of its columns stay null).
SOURCE_COLUMNS = {
    "deduplicated": {
        "doc_id": "doc_id",
        "source_doc_id": "doc_id",
        "url": "url",
        "text": "text",
        "language": "language",
        "word_count": "word_count",
        "warc_file": "warc_file",
        "warc_offset": "warc_offset",
    },
    "rewritten": {"doc_id": "doc_id", "source_doc_id": "source_doc_id", "url": "url", "text": "text", "word_count": "output_words"},
}


def _match_tasks(batches: Iterator[pa.RecordBatch], units: list, index_bc) -> Iterator[pa.RecordBatch]:
    index: BenchmarkIndex = index_bc.value
    for ids in batches:
        for task in ids.column("id").to_pylist():
            for _source, path, row_group in units[task]:
                for b in row_group_batches(path, row_group, ["doc_id", "text"]):
                    m = match_batch(b.column("text"), index)
                    if not len(m.row):
                        continue
                    yield pa.RecordBatch.from_arrays(
                        [
                            b.column("doc_id").take(pa.array(m.row)),
                            pa.array(m.hash.view(np.int64)),
                            pa.array(m.size),
                            pa.array(m.pos),
                            pa.array(m.entry),
                            pa.array(m.bench),
                        ],
                        schema=MATCH_SCHEMA,
                    )


def _project(t: pa.Table, source: str) -> pa.Table:
    cols = SOURCE_COLUMNS[source]
    n = t.num_rows
    out = {}
    for name, typ in DECONTAMINATED_COLUMNS:
        if name == "source":
            out[name] = pa.array([source] * n, pa.string())
        elif name in cols:
            out[name] = t.column(cols[name]).cast(typ)
        else:
            out[name] = pa.nulls(n, typ)
    return pa.table(out, schema=pa.schema(DECONTAMINATED_COLUMNS))


def _evidence(text: str, hit: dict[str, Any], index: BenchmarkIndex) -> dict[str, Any]:
    spans = word_spans(text)
    pos, size = hit["pos"], hit["size"]
    start = spans[pos][0] if pos < len(spans) else None
    end = spans[min(pos + size, len(spans)) - 1][1] if pos < len(spans) else None
    b = int(index.bench[size][hit["entry"]])
    return {
        "benchmark": index.names[b],
        "item": index.item_ids[b][int(index.item[size][hit["entry"]])],
        "ngram": " ".join(text[s:e].lower() for s, e in spans[pos : pos + size]),
        "offset": start,
        "length": (end - start) if start is not None else None,
        "matches": hit["matches"],
        "by_benchmark": hit["by_benchmark"],
    }


def _write_tasks(
    batches: Iterator[pa.RecordBatch], units: list, index_bc, hits: dict[str, dict], kept_dir: str, rejects_dir: str, run_id: str
) -> Iterator[pa.RecordBatch]:
    import pyarrow.compute as pc

    from storage.task_output import TaskOutputs

    index: BenchmarkIndex = index_bc.value
    targets = {"kept": (kept_dir, pa.schema(DECONTAMINATED_COLUMNS)), "rejected": (rejects_dir, pa.schema(REJECTION_COLUMNS))}
    contaminated = pa.array(list(hits), pa.string())
    for ids in batches:
        for task in ids.column("id").to_pylist():
            counts: Counter[tuple[str, str]] = Counter()
            with TaskOutputs(targets, task) as out:
                for source, path, row_group in units[task]:
                    for batch in row_group_batches(path, row_group, list(set(SOURCE_COLUMNS[source].values()))):
                        docs = _project(pa.Table.from_batches([batch]), source)
                        counts[(source, "in")] += docs.num_rows
                        bad = pc.is_in(docs.column("doc_id"), value_set=contaminated) if hits else None
                        if bad is None or not pc.any(bad).as_py():
                            out.write("kept", docs)
                            continue
                        out.write("kept", docs.filter(pc.invert(bad)))
                        rows = []
                        for d in docs.filter(bad).to_pylist():
                            ev = _evidence(d["text"] or "", hits[d["doc_id"]], index)
                            rows.append(
                                {
                                    "doc_id": d["doc_id"],
                                    "url": d["url"],
                                    "reason": f"{DECONTAM}.{ev['benchmark']}",
                                    "detail": json.dumps({**ev, "source": source}, ensure_ascii=False),
                                    "value": float(ev["matches"]),
                                    "related_doc_id": d["source_doc_id"] if source != "deduplicated" else None,
                                    "warc_file": d["warc_file"],
                                    "warc_offset": d["warc_offset"],
                                    "run_id": run_id,
                                    "word_count": d.get("word_count"),
                                }
                            )
                        out.write("rejected", pa.Table.from_pylist(rows, schema=pa.schema(REJECTION_COLUMNS)))
                        counts[(source, "rejected")] += len(rows)
            for source in sorted({s for s, _ in counts}):
                yield pa.RecordBatch.from_pylist(
                    [
                        {
                            "part": task,
                            "source": source,
                            "docs_in": counts[(source, "in")],
                            "kept": counts[(source, "in")] - counts[(source, "rejected")],
                            "rejected": counts[(source, "rejected")],
                        }
                    ],
                    schema=SUMMARY_SCHEMA,
                )


@dataclass
class DecontamStats:
    docs_in: dict[str, int] = field(default_factory=dict)  # by source
    removed: dict[str, int] = field(default_factory=dict)  # by source
    by_benchmark: dict[str, int] = field(default_factory=dict)  # documents removed, by the benchmark of their first match
    matched_docs: int = 0  # documents with any benchmark n-gram before suppression
    threshold: float = 0.0  # document frequency above which an n-gram is suppressed
    suppressed: list[dict[str, Any]] = field(default_factory=list)  # the frequent n-grams: benchmark, item, ngram, documents


def decontaminate(
    spark,
    inputs: dict[str, list[str]],
    index: BenchmarkIndex,
    o: DecontamOptions,
    scratch: str,
    kept_dir: str,
    rejects_dir: str,
    run_id: str,
    tasks: int | None = None,
) -> DecontamStats:
    """``inputs``: source layer → its pinned Parquet files. Writes into the two staging folders."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    source_of = {p: s for s, paths in inputs.items() for p in paths}
    units = [
        [(source_of[p], p, rg) for p, rg in u] for u in plan_units(list(source_of), tasks or spark.sparkContext.defaultParallelism * 4)
    ]
    stats = DecontamStats()
    if not units:
        return stats
    index_bc = spark.sparkContext.broadcast(index)
    ids = spark.range(0, len(units), 1, numPartitions=len(units))
    match_dir = f"{scratch}/matches"
    ids.mapInArrow(partial(_match_tasks, units=units, index_bc=index_bc), from_arrow_schema(MATCH_SCHEMA)).write.mode("overwrite").parquet(
        match_dir
    )
    m = spark.read.parquet(match_dir)
    import pyarrow.parquet as pq

    total = sum(pq.ParquetFile(p).metadata.num_rows for p in source_of)
    stats.threshold = max(float(o.frequent_min_docs), o.frequent_doc_share * total)
    df = m.select("doc_id", "hash", "size", "entry").distinct().groupBy("hash", "size", "entry").agg(F.count("*").alias("docs"))
    stats.matched_docs = m.select("doc_id").distinct().count()
    frequent = df.where(F.col("docs") > stats.threshold).orderBy(F.desc("docs")).collect()  # at most the index's n-grams
    for r in frequent:
        b = int(index.bench[r["size"]][r["entry"]])
        stats.suppressed.append(
            {
                "benchmark": index.names[b],
                "item": index.item_ids[b][int(index.item[r["size"]][r["entry"]])],
                "ngram": index.ngram_text(r["size"], r["entry"]),
                "documents": int(r["docs"]),
            }
        )
    if frequent:
        m = m.join(spark.createDataFrame([(int(r["hash"]),) for r in frequent], "hash long"), "hash", "left_anti")
    per_doc = (
        m.groupBy("doc_id")
        .agg(
            F.count("*").alias("matches"),
            F.min(F.struct("pos", "size", "entry")).alias("first"),
            F.collect_list("bench").alias("bench_list"),
        )
        .where(F.col("matches") >= o.min_matches)
    )
    hits: dict[str, dict[str, Any]] = {}
    for r in per_doc.collect():  # the contaminated documents: few by nature
        per_bench = Counter(index.names[b] for b in r["bench_list"])
        hits[r["doc_id"]] = {
            "pos": int(r["first"]["pos"]),
            "size": int(r["first"]["size"]),
            "entry": int(r["first"]["entry"]),
            "matches": int(r["matches"]),
            "by_benchmark": dict(per_bench),
        }
    rows = ids.mapInArrow(
        partial(_write_tasks, units=units, index_bc=index_bc, hits=hits, kept_dir=kept_dir, rejects_dir=rejects_dir, run_id=run_id),
        from_arrow_schema(SUMMARY_SCHEMA),
    ).collect()
    for r in rows:
        stats.docs_in[r.source] = stats.docs_in.get(r.source, 0) + r.docs_in
        stats.removed[r.source] = stats.removed.get(r.source, 0) + r.rejected
    for h in hits.values():
        first = index.names[int(index.bench[h["size"]][h["entry"]])]
        stats.by_benchmark[first] = stats.by_benchmark.get(first, 0) + 1
    index_bc.unpersist()
    return stats
