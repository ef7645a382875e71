"""Pass 1 of the dedup job (``spark_jobs.dedup_job``): signatures.

Python tasks over the Parquet row groups (as in the filter job) compute, per document, the exact
hash of the normalised text, the MinHash signature and the LSH band keys, and write them to a
scratch folder, one Parquet file per work unit (``part-<unit>.parquet``), from the task itself: the
signatures never pass through the JVM, whose heap would grow by them and stay grown for the rest of
the run (about 150 MB of the dedup's peak at 100,000 documents). Spark reads the folder back when
the crawl is too large for the driver's pass.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from documents.minhash import DedupOptions, band_keys, exact_hashes, minhash, shingles, words
from spark_jobs.units import row_group_batches

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


# What a signature task returns to the driver: its unit and how many signatures it wrote.
SIG_SUMMARY_SCHEMA = pa.schema([("unit", pa.int64()), ("rows", pa.int64())])


def signature_tasks(
    batches: Iterator[pa.RecordBatch], units: list, options_json: str, quality_column: str | None, out_dir: str
) -> Iterator[pa.RecordBatch]:
    from storage.task_output import TaskOutputs

    o = DedupOptions.model_validate_json(options_json)
    columns = SIG_READ_COLUMNS + ([quality_column] if quality_column else [])
    for ids in batches:
        for unit in ids.column("id").to_pylist():
            with TaskOutputs({"sigs": (out_dir, SIG_SCHEMA)}, unit) as out:
                for path, row_group in units[unit]:
                    for batch in row_group_batches(path, row_group, columns):
                        out.write("sigs", signature_batch(batch, unit, o, quality_column))
                rows = out.rows["sigs"]
            yield pa.RecordBatch.from_pylist([{"unit": unit, "rows": rows}], schema=SIG_SUMMARY_SCHEMA)
    # The worker outlives the task (Spark reuses it): its freed Arrow pages would stay resident
    # through the passes that follow.
    pa.default_memory_pool().release_unused()


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


def unit_signatures(sigs_dir: str, unit: int) -> pa.Table:
    """One unit's signatures (none when its task wrote no row)."""
    import pyarrow.parquet as pq

    from storage.task_output import TaskOutputs

    path = TaskOutputs.file_of(sigs_dir, unit)
    return pq.read_table(path) if path.exists() else SIG_SCHEMA.empty_table()
