"""Spark job: a pinned `raw_crawl` partition → `filtered` documents and their rejections.

The work units are the Parquet row groups of the pinned snapshot's files (from delta-rs's file
list), spread over Spark tasks. A task reads its row groups with pyarrow and runs the per-document
filters over those Arrow batches: the page bodies, by far the largest column, never pass through the
JVM (a Spark scan + ``mapInArrow`` would decode them in the JVM and ship them back to Python). It
writes kept documents and rejections straight into the two transactions' staging folders (see
``TaskOutputs``) and returns one summary row: counts by rule and by language, for the funnel, the
metrics and the gate.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyarrow as pa

from documents.rules import INPUT_COLUMNS, DocumentFilter, FilterOptions, get_filter
from spark_jobs.units import plan_units, row_group_batches
from storage.tables import FILTERED_COLUMNS, REJECTION_COLUMNS

SUMMARY_SCHEMA = pa.schema(
    [
        ("part", pa.int64()),
        ("docs_in", pa.int64()),
        ("kept", pa.int64()),
        ("rejected", pa.int64()),
        ("reasons", pa.string()),
        ("languages", pa.string()),
    ]
)


def filter_batch(f: DocumentFilter, batch: pa.RecordBatch, run_id: str) -> tuple[pa.Table, pa.Table]:
    """One Arrow batch of raw_crawl rows → (kept documents, rejections) in the contract's schemas."""
    kept: list[dict[str, Any]] = []
    rejected: dict[str, list[Any]] = {name: [] for name, _ in REJECTION_COLUMNS}
    rows = batch.to_pylist()
    for row, (doc, why, words) in zip(rows, f.judged(rows)):
        if doc is not None:
            kept.append(doc)
            continue
        rule, detail, value = why  # type: ignore[misc]
        for k, v in (
            ("doc_id", row["doc_id"]),
            ("url", row["url"]),
            ("reason", rule),
            ("detail", detail),
            ("value", value),
            ("related_doc_id", None),
            ("warc_file", row["warc_file"]),
            ("warc_offset", row["warc_offset"]),
            ("run_id", run_id),
            ("word_count", words),
        ):
            rejected[k].append(v)
    cols = {name: [d.get(name) for d in kept] for name, _ in FILTERED_COLUMNS}
    for name, typ in FILTERED_COLUMNS:
        if pa.types.is_integer(typ):
            cols[name] = [None if v is None else int(v) for v in cols[name]]
    return (
        pa.Table.from_pydict(cols, schema=pa.schema(FILTERED_COLUMNS)),
        pa.Table.from_pydict(rejected, schema=pa.schema(REJECTION_COLUMNS)),
    )


def _filter_tasks(
    batches: Iterator[pa.RecordBatch], units: list[list[tuple[str, int]]], options_json: str, kept_dir: str, rejects_dir: str, run_id: str
) -> Iterator[pa.RecordBatch]:
    from storage.task_output import TaskOutputs

    f = get_filter(options_json)
    targets = {"kept": (kept_dir, pa.schema(FILTERED_COLUMNS)), "rejected": (rejects_dir, pa.schema(REJECTION_COLUMNS))}
    for ids in batches:
        for task in ids.column("id").to_pylist():
            docs_in = 0
            reasons: Counter[str] = Counter()
            langs: Counter[str] = Counter()
            with TaskOutputs(targets, task) as out:
                for path, row_group in units[task]:
                    for batch in row_group_batches(path, row_group, INPUT_COLUMNS, batch_size=256):
                        docs_in += batch.num_rows
                        kept, rejected = filter_batch(f, batch, run_id)
                        out.write("kept", kept)
                        out.write("rejected", rejected)
                        reasons.update(rejected.column("reason").to_pylist())
                        langs.update(kept.column("language").to_pylist())
                kept_n, rej_n = out.rows["kept"], out.rows["rejected"]
            yield pa.RecordBatch.from_pylist(
                [
                    {
                        "part": task,
                        "docs_in": docs_in,
                        "kept": kept_n,
                        "rejected": rej_n,
                        "reasons": json.dumps(reasons),
                        "languages": json.dumps({str(k): v for k, v in langs.items()}),
                    }
                ],
                schema=SUMMARY_SCHEMA,
            )


@dataclass
class FilterSummary:
    docs_in: int
    kept: int
    rejected: int
    reasons: dict[str, int]
    languages: dict[str, int]


def filter_documents(spark, paths: list[str], options: FilterOptions, kept_dir: str, rejects_dir: str, run_id: str) -> FilterSummary:
    """Filter the documents of the given raw_crawl Parquet files (a pinned snapshot's file list)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    # A few tasks per core: even load without paying Spark's per-task overhead too often.
    units = plan_units(paths, spark.sparkContext.defaultParallelism * 4)
    if not units:
        return FilterSummary(0, 0, 0, {}, {})
    ids = spark.range(0, len(units), 1, numPartitions=len(units))
    fn = partial(
        _filter_tasks, units=units, options_json=options.model_dump_json(), kept_dir=kept_dir, rejects_dir=rejects_dir, run_id=run_id
    )
    rows = ids.mapInArrow(fn, from_arrow_schema(SUMMARY_SCHEMA)).collect()
    reasons: Counter[str] = Counter()
    langs: Counter[str] = Counter()
    for r in rows:
        reasons.update(json.loads(r.reasons))
        langs.update(json.loads(r.languages))
    return FilterSummary(
        docs_in=sum(r.docs_in for r in rows),
        kept=sum(r.kept for r in rows),
        rejected=sum(r.rejected for r in rows),
        reasons=dict(reasons),
        languages=dict(langs),
    )
