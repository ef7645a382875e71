"""The ingest Spark job: one task per WARC file, each streaming its file through the reader
(``storage.warc``) and writing its documents and rejections as Parquet files straight into the
staging folders; only one summary row per file comes back to the driver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyarrow as pa

from documents.blocklist import Blocklist
from storage.tables import RAW_CRAWL_COLUMNS, REJECTION_COLUMNS
from storage.warc import IngestOptions, WarcFile, read_warc_file


def write_file_outputs(
    f: WarcFile, index: int, opts: IngestOptions, docs_dir: str, rejects_dir: str, run_id: str, blocklist: Blocklist | None = None
) -> dict[str, Any]:
    """Read one WARC file and write its documents and rejections as Parquet files (named after
    the file's index, see :class:`TaskOutputs`). Returns the file's summary (counts by outcome)."""
    import pyarrow.compute as pc

    from storage.task_output import TaskOutputs

    summary: dict[str, Any] = {
        "warc_file": f.rel,
        "records": 0,
        "documents": 0,
        "rejected": 0,
        "file_bytes": f.size,
        "reason": None,
        "detail": None,
    }
    reasons: dict[str, int] = {}
    targets = {"doc": (docs_dir, pa.schema(RAW_CRAWL_COLUMNS)), "reject": (rejects_dir, pa.schema(REJECTION_COLUMNS))}
    with TaskOutputs(targets, index, plain=("html",)) as out:
        for batch in read_warc_file(f.path, f.rel, f.size, opts, blocklist):
            kinds = batch.column("kind")
            docs = batch.filter(pc.equal(kinds, "doc"))
            out.write("doc", docs.select(out.schema("doc").names))
            rej = batch.filter(pc.equal(kinds, "reject"))
            if rej.num_rows:
                for r in rej.column("reason").to_pylist():
                    reasons[r] = reasons.get(r, 0) + 1
                n = rej.num_rows
                out.write(
                    "reject",
                    pa.RecordBatch.from_arrays(
                        [
                            rej.column("doc_id"),
                            rej.column("url"),
                            rej.column("reason"),
                            rej.column("detail"),
                            pa.nulls(n, pa.float64()),
                            pa.nulls(n, pa.string()),
                            rej.column("warc_file"),
                            rej.column("warc_offset"),
                            pa.array([run_id] * n, pa.string()),
                            pa.nulls(n, pa.int64()),  # no text before extraction
                        ],
                        schema=out.schema("reject"),
                    ),
                )
            for row in batch.filter(pc.equal(kinds, "file")).to_pylist():
                summary.update(records=row["records"], reason=row["reason"], detail=row["detail"])
        summary["documents"], summary["rejected"] = out.rows["doc"], out.rows["reject"]
    summary["reasons"] = json.dumps(reasons, sort_keys=True)
    return summary


SUMMARY_SCHEMA = pa.schema(
    [
        ("warc_file", pa.string()),
        ("records", pa.int64()),
        ("documents", pa.int64()),
        ("rejected", pa.int64()),
        ("file_bytes", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("reasons", pa.string()),
    ]
)


def _ingest_partition(
    batches: Iterator[pa.RecordBatch],
    files: list[tuple[str, str, int]],
    opts: dict[str, Any],
    docs_dir: str,
    rejects_dir: str,
    run_id: str,
    blocklist: Blocklist | None = None,
) -> Iterator[pa.RecordBatch]:
    options = IngestOptions(**opts)
    for batch in batches:
        for index in batch.column("id").to_pylist():
            path, rel, size = files[index]
            summary = write_file_outputs(WarcFile(path, rel, size), index, options, docs_dir, rejects_dir, run_id, blocklist)
            yield pa.RecordBatch.from_pylist([summary], schema=SUMMARY_SCHEMA)


# ---- the Spark job ------------------------------------------------------------------------------------


@dataclass
class IngestSummary:
    files: list[dict[str, Any]]

    @property
    def records_read(self) -> int:
        return sum(f["records"] for f in self.files)

    @property
    def documents(self) -> int:
        return sum(f["documents"] for f in self.files)

    @property
    def rejected(self) -> int:
        return sum(f["rejected"] for f in self.files)

    @property
    def unreadable(self) -> list[dict[str, Any]]:
        return [f for f in self.files if f["reason"]]

    @property
    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            for k, v in json.loads(f["reasons"]).items():
                out[k] = out.get(k, 0) + v
        return out


def ingest_warc_files(
    spark, files: list[WarcFile], opts: IngestOptions, docs_dir: str, rejects_dir: str, run_id: str, blocklist: Blocklist | None = None
) -> IngestSummary:
    """One Spark task per WARC file. Tasks stream their file and write Parquet straight into the
    two staging folders (on a cluster: shared storage), so page bodies never cross into the JVM;
    only one summary row per file comes back to the driver."""
    from pyspark.sql.pandas.types import from_arrow_schema

    # Largest files first so that the longest tasks start early; the task list is a JVM-side
    # range (one id per partition), so no Python RDD stage runs before the real work.
    ordered = sorted(files, key=lambda f: -f.size)
    table = [(f.path, f.rel, f.size) for f in ordered]
    ids = spark.range(0, len(table), 1, numPartitions=max(1, len(table)))
    fn = partial(
        _ingest_partition,
        files=table,
        opts=opts.model_dump(),
        docs_dir=docs_dir,
        rejects_dir=rejects_dir,
        run_id=run_id,
        blocklist=blocklist,
    )
    out = ids.mapInArrow(fn, from_arrow_schema(SUMMARY_SCHEMA)).collect()
    return IngestSummary(sorted((r.asDict() for r in out), key=lambda r: r["warc_file"]))
