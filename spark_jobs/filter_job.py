"""Spark job: a pinned `raw_crawl` partition → `filtered` documents and their rejections.

Spark scans the pinned Delta snapshot and splits it into tasks; each task runs the per-document
filters over Arrow batches (``mapInArrow``) and writes kept documents and rejections straight into
the two transactions' staging folders (see ``TaskOutputs``), returning one summary row: counts by
rule and by language, for the funnel, the metrics and the gate.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Any, Iterator

import pyarrow as pa

from spark_jobs.filters.pipeline import FILTERED_COLUMNS, INPUT_COLUMNS, FilterOptions, get_filter
from spark_jobs.warc_ingest import REJECTION_COLUMNS

SUMMARY_SCHEMA = pa.schema([("part", pa.int64()), ("docs_in", pa.int64()), ("kept", pa.int64()), ("rejected", pa.int64()),
                            ("reasons", pa.string()), ("languages", pa.string())])


def _filter_partition(batches: Iterator[pa.RecordBatch], options_json: str, kept_dir: str, rejects_dir: str, run_id: str) -> Iterator[pa.RecordBatch]:
    from pyspark import TaskContext

    from spark_jobs.lakehouse.task_output import TaskOutputs

    part = TaskContext.get().partitionId()
    f = get_filter(options_json)
    docs_in = 0
    reasons: Counter[str] = Counter()
    langs: Counter[str] = Counter()
    targets = {"kept": (kept_dir, pa.schema(FILTERED_COLUMNS)), "rejected": (rejects_dir, pa.schema(REJECTION_COLUMNS))}
    with TaskOutputs(targets, part) as out:
        for batch in batches:
            docs_in += batch.num_rows
            kept, rejected = f.batch(batch, run_id)
            out.write("kept", kept)
            out.write("rejected", rejected)
            reasons.update(rejected.column("reason").to_pylist())
            langs.update(kept.column("language").to_pylist())
        kept_n, rej_n = out.rows["kept"], out.rows["rejected"]
    yield pa.RecordBatch.from_pylist(
        [{"part": part, "docs_in": docs_in, "kept": kept_n, "rejected": rej_n,
          "reasons": json.dumps(reasons), "languages": json.dumps({str(k): v for k, v in langs.items()})}],
        schema=SUMMARY_SCHEMA,
    )


@dataclass
class FilterSummary:
    docs_in: int
    kept: int
    rejected: int
    reasons: dict[str, int]
    languages: dict[str, int]


def filter_documents(spark, raw_df, options: FilterOptions, kept_dir: str, rejects_dir: str, run_id: str, input_bytes: int = 0) -> FilterSummary:
    from pyspark.sql.pandas.types import from_arrow_schema

    # Enough splits to keep every core busy even when the input is a handful of files.
    target_tasks = max(1, spark.sparkContext.defaultParallelism * 4)
    if input_bytes:
        spark.conf.set("spark.sql.files.maxPartitionBytes", str(max(1 << 20, input_bytes // target_tasks)))
    fn = partial(_filter_partition, options_json=options.model_dump_json(), kept_dir=kept_dir, rejects_dir=rejects_dir, run_id=run_id)
    rows = raw_df.select(*INPUT_COLUMNS).mapInArrow(fn, from_arrow_schema(SUMMARY_SCHEMA)).collect()
    reasons: Counter[str] = Counter()
    langs: Counter[str] = Counter()
    for r in rows:
        reasons.update(json.loads(r.reasons))
        langs.update(json.loads(r.languages))
    return FilterSummary(
        docs_in=sum(r.docs_in for r in rows), kept=sum(r.kept for r in rows), rejected=sum(r.rejected for r in rows),
        reasons=dict(reasons), languages=dict(langs),
    )
