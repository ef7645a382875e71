"""Pass 3 of the dedup job (``spark_jobs.dedup_job``): outputs.

Python tasks again, one per work unit: each joins its row groups with its decisions and writes the
kept documents, the rejections, the cluster rows and the signature index rows (MinHash and
embedding) of the kept documents straight into the four transactions' staging folders.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from spark_jobs.dedup_clusters import DECISION_SCHEMA
from spark_jobs.dedup_semantic import SEMANTIC
from spark_jobs.dedup_signatures import unit_signatures
from spark_jobs.units import row_group_batches
from storage.tables import CLUSTER_COLUMNS, DEDUPLICATED_COLUMNS, REJECTION_COLUMNS, SIGNATURE_COLUMNS

SUMMARY_SCHEMA = pa.schema([("part", pa.int64()), ("docs_in", pa.int64()), ("kept", pa.int64()), ("rejected", pa.int64())])


def output_tasks(
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

    from storage.task_output import TaskOutputs

    dirs = json.loads(dirs_json)
    targets = {name: (dirs[name], schema) for name, schema in output_schemas().items()}
    for ids in batches:
        for unit in ids.column("id").to_pylist():
            part_dir = os.path.join(decisions_dir, f"unit={unit}")
            dec = ds.dataset(part_dir, format="parquet").to_table() if os.path.isdir(part_dir) else DECISION_SCHEMA.empty_table()
            sig = unit_signatures(sigs_dir, unit)
            by_id = {d: i for i, d in enumerate(dec.column("doc_id").to_pylist())}
            sig_by_id = {d: i for i, d in enumerate(sig.column("doc_id").to_pylist())}
            emb = None
            if emb_dir is not None and os.path.isdir(os.path.join(emb_dir, f"unit={unit}")):
                emb = ds.dataset(os.path.join(emb_dir, f"unit={unit}"), format="parquet").to_table(columns=["doc_id", "embedding"])
            docs_in = 0
            with TaskOutputs(targets, unit) as out:
                for path, row_group in units[unit]:
                    for batch in row_group_batches(path, row_group):
                        docs_in += batch.num_rows
                        _write_unit(out, pa.Table.from_batches([batch]), dec, by_id, sig, sig_by_id, seq, run_id, emb, model)
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
                "word_count": table.column("word_count").filter(removed) if "word_count" in table.column_names else pa.nulls(n, pa.int64()),
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
