"""Shards and a manifest from a pinned version of a mixture: what a training job reads, and the
proof of where it came from.

The rows of one ``mixed`` partition at one Delta version are put in training order (a keyed hash of
(doc_id, repeat, seed): a shuffle that does not depend on the table's file layout), cut into shards
of ``shard_docs`` documents, and written twice: JSONL compressed with zstd (``id``, ``text``,
``source``, ``token_count``) and Parquet. ``index.parquet`` maps each (doc_id, repeat) to its
(shard, row). ``manifest.json`` pins the mixture spec and its hash, the seed, the tokenizer file's
hash, the table versions read (``mixed`` and, from its Delta commit info, what the mixture was built
from), the code version, requested vs delivered tokens per source, and each file's sha256. Rebuilding
from a manifest reads the same pinned version (Delta time travel) and must give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from documents.mixture import MixtureSpec, file_sha256, tokenizer_file
from storage.delta_table import LakehouseError, commit_info, current_version, read_arrow
from storage.tables import MIXED, MIXED_COLUMNS

SHARD_COLUMNS = ["doc_id", "repeat", "source", "origin", "source_doc_id", "crawl_id", "url", "token_count", "text"]


def mixture_hash(spec: MixtureSpec) -> str:
    return hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def write_jsonl_shard(path: str | Path, t: pa.Table) -> None:
    """A shard as a training job reads it: zstd JSONL of ``id`` (doc_id:repeat), ``text``, ``source``, ``token_count``."""
    with pa.CompressedOutputStream(str(path), "zstd") as fh:
        for r in t.select(["doc_id", "repeat", "source", "token_count", "text"]).to_pylist():
            fh.write(
                (
                    json.dumps(
                        {"id": f"{r['doc_id']}:{r['repeat']}", "text": r["text"], "source": r["source"], "token_count": r["token_count"]},
                        ensure_ascii=False,
                        sort_keys=True,
                    )
                    + "\n"
                ).encode()
            )


def training_order(t: pa.Table, seed: int) -> pa.Table:
    """Rows sorted by a keyed hash of (doc_id, repeat, seed); ties (never in practice) by doc_id, repeat."""
    import pandas as pd

    t = t.take(pc.sort_indices(t, [("doc_id", "ascending"), ("repeat", "ascending")]))
    ids = t.column("doc_id").to_pylist()
    reps = t.column("repeat").to_pylist()
    keys = pd.util.hash_array(np.array([f"{d}\x00{r}\x00{seed}" for d, r in zip(ids, reps)], dtype=object))
    return t.take(pa.array(np.argsort(keys, kind="stable")))


def export_mixture(
    root: str | Path, spec: MixtureSpec, out_dir: str | Path, version: int | None = None, plan: dict[str, dict[str, float]] | None = None
) -> dict[str, Any]:
    """Write the shards, index and manifest of ``spec`` at ``version`` of ``mixed`` (default: the
    current one) into ``out_dir``; returns the manifest. ``plan``: per source, what was requested
    (``target_tokens``, ``epochs``), as the mixture's run recorded it."""
    uri = Path(root) / MIXED.name
    v = current_version(uri) if version is None else version
    if v is None:
        raise LakehouseError(f"no {MIXED.name} table in {root}: materialize the mixture first")
    part = {"mixture_name": spec.name}
    t = read_arrow(uri, v, part, columns=[c for c, _ in MIXED_COLUMNS])
    if not t.num_rows:
        raise LakehouseError(f"{MIXED.name}@v{v} has no rows for mixture {spec.name!r}")
    t = training_order(t, spec.seed).select(SHARD_COLUMNS)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    shard_of = np.zeros(t.num_rows, np.int64)
    for i, lo in enumerate(range(0, t.num_rows, spec.shard_docs)):
        part_t = t.slice(lo, spec.shard_docs)
        shard_of[lo : lo + part_t.num_rows] = i
        pq_path = out / f"shard-{i:05d}.parquet"
        pq.write_table(part_t, pq_path, compression="zstd")
        js_path = out / f"shard-{i:05d}.jsonl.zst"
        write_jsonl_shard(js_path, part_t)
        shards.append(
            {
                "shard": i,
                "documents": part_t.num_rows,
                "tokens": int(pc.sum(part_t.column("token_count")).as_py()),
                "files": {p.name: {"sha256": file_sha256(p), "bytes": p.stat().st_size} for p in (js_path, pq_path)},
            }
        )
    index = pa.table(
        {
            "doc_id": t.column("doc_id"),
            "repeat": t.column("repeat"),
            "shard": pa.array(shard_of),
            "row": pa.array(np.arange(t.num_rows) - np.array([s * spec.shard_docs for s in shard_of])),
        }
    )
    pq.write_table(index, out / "index.parquet", compression="zstd")

    delivered: dict[str, dict[str, Any]] = {}
    for s in spec.sources:
        rows = t.filter(pc.equal(t.column("source"), s.name))
        got = int(pc.sum(rows.column("token_count")).as_py() or 0)
        req = (plan or {}).get(s.name, {})
        delivered[s.name] = {
            "weight": s.weight,
            "requested_tokens": req.get("target_tokens", s.weight * spec.token_budget),
            "delivered_tokens": got,
            "epochs": req.get("epochs"),
            "documents": rows.num_rows,
            "unique_documents": len(set(rows.column("doc_id").to_pylist())),
            "synthetic": s.synthetic,
        }
    info = commit_info(uri, v)
    tok = tokenizer_file(spec.tokenizer)
    manifest = {
        "mixture": spec.model_dump(mode="json"),
        "mixture_hash": mixture_hash(spec),
        "seed": spec.seed,
        "tokenizer": {"name": spec.tokenizer, "file": tok.name, "sha256": file_sha256(tok)},
        "tables": {
            "mixed": {"version": v, "partition": part},
            **{name: {"version": ver} for name, ver in (info.get("inputs") or {}).items()},
        },
        "code_version": info.get("code_version"),
        "git_sha": info.get("git_sha"),
        "dagster_run_id": info.get("dagster_run_id"),
        "mlflow_run_id": info.get("mlflow_run_id"),
        "documents": t.num_rows,
        "tokens": int(pc.sum(t.column("token_count")).as_py()),
        "sources": delivered,
        "shards": shards,
        "index": {"file": "index.parquet", "sha256": file_sha256(out / "index.parquet"), "columns": ["doc_id", "repeat", "shard", "row"]},
        "written_with": {"pyarrow": pa.__version__},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def rebuild(manifest_path: str | Path, root: str | Path, out_dir: str | Path) -> list[str]:
    """Rebuild the shards of a manifest from its pinned table version; the files whose sha256
    differs from the manifest's (empty: byte for byte the same)."""
    manifest = json.loads(Path(manifest_path).read_text())
    spec = MixtureSpec.model_validate(manifest["mixture"])
    if mixture_hash(spec) != manifest["mixture_hash"]:
        raise LakehouseError("the manifest's mixture does not match its hash: it was edited")
    plan = {n: {"target_tokens": s["requested_tokens"], "epochs": s["epochs"]} for n, s in manifest["sources"].items()}
    again = export_mixture(root, spec, out_dir, version=manifest["tables"]["mixed"]["version"], plan=plan)
    want = {name: f["sha256"] for s in manifest["shards"] for name, f in s["files"].items()}
    got = {name: f["sha256"] for s in again["shards"] for name, f in s["files"].items()}
    bad = sorted(n for n in want.keys() | got.keys() if want.get(n) != got.get(n))
    if manifest["index"]["sha256"] != again["index"]["sha256"]:
        bad.append("index.parquet")
    return bad
