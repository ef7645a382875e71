"""``sluice trace``: one document's full history across every table of the lakehouse.

Every table the contract marks ``traced`` (``storage.tables``) is asked for the document by its
reader (``READERS``), by ``doc_id`` (and for what derives from it by ``source_doc_id`` /
``related_doc_id``); each answer names the table version read and the commit
that wrote the row, so every step links to its Dagster run, MLflow run and code version. Rejected
documents answer as well as kept ones: ``rejections`` holds every drop with its rule and value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from audit.lake import Lake
from documents.blocklist import host_of, parent_domains
from storage import tables as T

_SHOWN_SIGNALS = ("language", "language_score", "word_count", "mean_word_length", "stop_word_count")


def sha256(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def doc_ids_for_url(lake: Lake, url: str) -> list[str]:
    ids: set[str] = set()
    for table in (T.RAW_CRAWL.name, T.REJECTIONS.name):
        t, _ = lake.find(table, "url", [url], ["doc_id"])
        ids.update(t.column("doc_id").to_pylist() if t.num_rows else [])
    return sorted(i for i in ids if i)


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if k in ("text", "html", "minhash", "band_keys"):
            continue
        out[k] = v.isoformat() if hasattr(v, "isoformat") else v
    return out


def _rejection_text(r: dict[str, Any]) -> str:
    stage, reason, value, detail = r.get("stage"), r["reason"], r.get("value"), r.get("detail")
    if stage == T.INGEST:
        return (
            f"rejected at ingest: {reason}"
            + (f" ({detail})" if detail else "")
            + f" — record in {r['warc_file']} at offset {r['warc_offset']}"
        )
    if stage == T.DEDUP and reason == f"{T.DEDUP}.semantic":
        model = detail.split(";")[0].split(" by ", 1)[-1] if detail and " by " in detail else None
        sim = f" (cosine similarity {value:.3f}" + (f", {model})" if model else ")") if value is not None else ""
        return f"dropped as a semantic duplicate{sim}; the cluster kept {r.get('related_doc_id')}"
    if stage == T.DEDUP:
        kind = "exact" if reason.endswith("exact") else "near"
        sim = f" (Jaccard {value:.3f})" if value is not None else ""
        return f"dropped as an {kind} duplicate{sim}; the cluster kept {r.get('related_doc_id')}"
    if stage == T.DECONTAM:
        return f"removed: {reason}" + (f" — evidence {detail}" if detail else "")
    measured = f"{value:g}" if isinstance(value, float) and value == value else None
    if measured is not None and detail:
        return f"dropped at {reason}: {measured} {detail}"
    return f"dropped at {reason}" + (f": {detail}" if detail else f": {measured}" if measured is not None else "")


@dataclass
class _Doc:
    """What every reader of a trace shares: the document, its raw records and its rejections (one
    scan of each, made first: they say its URL and crawl), and the steps found so far."""

    doc_id: str
    raw: list[dict[str, Any]]
    by_stage: dict[str, list[dict[str, Any]]]  # its own rejections, by `stage`
    absorbed: list[dict[str, Any]]  # the duplicates it absorbed (their rejections point to it)
    url: str | None
    crawl: str | None
    steps: list[dict[str, Any]] = field(default_factory=list)

    def step(self, kind: str, text: str, src: dict[str, Any] | None = None, **extra: Any) -> None:
        self.steps.append(
            {
                "step": kind,
                "says": text,
                **({"commit": src.pop("_commit")} if src and "_commit" in src else {}),
                **({"row": _clean(src)} if src else {}),
                **extra,
            }
        )


class Tracer:
    def __init__(self, root: str | Path) -> None:
        self.lake = Lake(root)
        self.read: dict[str, int] = {}

    def _find(self, table: str, column: str | dict, values: list[str] = (), columns: list[str] | None = None) -> list[dict[str, Any]]:
        t, v = self.lake.find(table, column, values, columns)
        if v is not None:
            self.read[table] = v
        return self.lake.rows_with_commits(table, t)

    def trace(self, doc_id: str) -> dict[str, Any]:
        """The history of one document id, as steps in pipeline order: every table the contract marks
        ``traced`` is asked by its reader (``READERS``), each step followed by the rejections of its stage."""
        raw = self._find(T.RAW_CRAWL.name, "doc_id", [doc_id], [c for c, _ in T.RAW_CRAWL.columns if c != "html"] + ["crawl_id"])
        # One scan of `rejections`: the document's own rejections and the duplicates it absorbed.
        both = self._find(T.REJECTIONS.name, {"doc_id": [doc_id], "related_doc_id": [doc_id]})
        rejected = [r for r in both if r["doc_id"] == doc_id]
        absorbed = [r for r in both if r.get("related_doc_id") == doc_id and r.get("stage") == T.DEDUP]
        by_stage: dict[str, list[dict]] = {}
        for r in rejected:
            by_stage.setdefault(r.get("stage") or "", []).append(r)
        url = (raw[0]["url"] if raw else None) or next((r["url"] for r in rejected if r.get("url")), None)
        crawl = (raw[0]["crawl_id"] if raw else None) or next((r["crawl_id"] for r in rejected if r.get("crawl_id")), None)
        doc = _Doc(doc_id, raw, by_stage, absorbed, url, crawl)

        done: set[str] = set()
        for spec in T.traced_tables():
            if spec.name == T.REJECTIONS.name:  # read above; its rows follow each step's own
                continue
            READERS[spec.name](self, doc)
            if spec.step not in done:
                done.add(spec.step)
                for r in by_stage.get(spec.step, []):
                    doc.step(spec.step, _rejection_text(r), r, **({"kept_doc_id": r.get("related_doc_id")} if spec.step == T.DEDUP else {}))

        steps = sorted(doc.steps, key=lambda s: T.STEPS.index(s["step"]))
        return {"doc_id": doc_id, "url": url, "crawl_id": crawl, "found": bool(steps), "steps": steps}

    # ---- one reader per traced table ------------------------------------------------------------------

    def _raw_crawl(self, doc: _Doc) -> None:
        for r in doc.raw:
            doc.step(
                T.INGEST,
                f"ingested from {r['warc_file']} at offset {r['warc_offset']} (HTTP {r['http_status']}, {r['content_type']}, "
                f"fetched {r['warc_date']})",
                r,
            )

    def _filtered(self, doc: _Doc) -> None:
        for r in self._find(T.FILTERED.name, "doc_id", [doc.doc_id], ["doc_id", *_SHOWN_SIGNALS, "crawl_id"]):
            sig = ", ".join(f"{k} {r[k]:.3g}" if isinstance(r[k], float) else f"{k} {r[k]}" for k in _SHOWN_SIGNALS if r.get(k) is not None)
            doc.step(T.FILTER, f"kept by every filter ({sig})", r)

    def _deduplicated(self, doc: _Doc) -> None:
        absorbed = doc.absorbed
        dedup = self._find(
            T.DEDUPLICATED.name, "doc_id", [doc.doc_id], ["doc_id", "dup_cluster_id", "dup_cluster_size", "exact_hash", "crawl_id"]
        )
        for r in dedup:
            size = r.get("dup_cluster_size") or 1
            txt = (
                "kept as the only copy" if size <= 1 else f"kept as the representative of cluster {r['dup_cluster_id']} ({size} documents)"
            )
            if absorbed:
                txt += "; absorbed " + ", ".join(f"{a['doc_id']} ({a['reason']}, {a['crawl_id']})" for a in absorbed)
            if (r.get("_commit") or {}).get("takedown_id"):
                txt += f" — promoted to the kept copy by takedown {r['_commit']['takedown_id']} (the cluster's kept copy was taken down)"
            doc.step(T.DEDUP, txt, r, absorbed=[_clean({k: v for k, v in a.items() if k != "_commit"}) for a in absorbed])
        if not dedup and absorbed:  # the kept copy left later (a takedown): who it had absorbed
            doc.step(T.DEDUP, "was the kept copy of a cluster whose other members were " + ", ".join(a["doc_id"] for a in absorbed), None)

    def _quality_scored(self, doc: _Doc) -> None:
        for r in self._find(T.QUALITY_SCORED.name, "doc_id", [doc.doc_id]):
            uris = json.loads(r.get("model_uri") or "{}")
            versions = json.loads(r.get("model_version") or "{}")
            scores = []
            for name, uri in uris.items():
                val = r.get(name)
                scores.append(
                    f"{name} {'null' if val is None else f'{val:.3f}'} ({uri}" + (f" v{versions[name]}" if versions.get(name) else "") + ")"
                )
            for name in [k for k in r if f"{k}_label" in r and k not in uris]:  # ensembles (scoring.ensembles)
                scores.append(f"{name} {'null' if r[name] is None else f'{r[name]:.3f}'} (ensemble)")
            doc.step(T.SCORING, "scored: " + "; ".join(scores), r)

    def _rewritten(self, doc: _Doc) -> None:
        rewrites = self._find(
            T.REWRITTEN.name,
            {"doc_id": [doc.doc_id], T.SOURCE_ID: [doc.doc_id]},
            columns=[c for c, _ in T.REWRITTEN.columns if c != "text"] + ["crawl_id"],
        )
        for r in [r for r in rewrites if r[T.SOURCE_ID] == doc.doc_id]:
            after = "null" if r["score_after"] is None else f"{r['score_after']:.3f}"
            before = "null" if r["score_before"] is None else f"{r['score_before']:.3f}"
            doc.step(
                T.REWRITE,
                f"rewritten as {r['doc_id']} by {r['rewriter_model']} ({r['prompt_version']}, {r.get('style') or '-'}): "
                f"score {before} → {after}",
                r,
                rewrite_doc_id=r["doc_id"],
            )
        for r in [r for r in rewrites if r["doc_id"] == doc.doc_id]:
            doc.step(
                T.REWRITE,
                f"is a rewrite of {r[T.SOURCE_ID]} by {r['rewriter_model']} ({r['prompt_version']})",
                r,
                source_doc_id=r[T.SOURCE_ID],
            )

    def _decontaminated(self, doc: _Doc) -> None:
        for r in self._find(T.DECONTAMINATED.name, "doc_id", [doc.doc_id], ["doc_id", "source", T.SOURCE_ID, "crawl_id"]):
            doc.step(T.DECONTAM, f"kept: no benchmark n-gram overlap (as layer {r['source']})", r)

    def _mixed(self, doc: _Doc) -> None:
        mixed = self._find(T.MIXED.name, "doc_id", [doc.doc_id], ["doc_id", "repeat", "source", "origin", "token_count", "mixture_name"])
        mixtures: dict[str, list[dict]] = {}
        for r in mixed:
            mixtures.setdefault(r["mixture_name"], []).append(r)
        for name, rows in mixtures.items():
            doc.step(
                T.MIXTURE,
                f"in mixture {name!r}, bucket {rows[0]['source']}, {len(rows)} repeat(s), {rows[0]['token_count']} tokens each",
                rows[0],
                repeats=len(rows),
            )
        for e in self._exports(doc.doc_id):  # exports are of mixtures (shards under _exports/, not a table)
            doc.step(T.EXPORT, f"exported in {e['export']}: shard {e['shard']} row {e['row']} (repeat {e['repeat']})", None, **e)

    def _takedowns(self, doc: _Doc) -> None:
        for r in self.takedowns(doc.doc_id, doc.url):
            doc.step(
                T.TAKEDOWN,
                f"taken down {r['requested_at']}: {r['reason']}"
                + (f" (ticket {r['ticket']})" if r.get("ticket") else "")
                + f" — takedown {r['takedown_id']}",
                r,
            )

    def _exports(self, doc_id: str) -> list[dict[str, Any]]:
        out = []
        for index in sorted((self.lake.root / T.EXPORTS).glob("*/*/index.parquet")):
            t = pq.read_table(index, filters=[("doc_id", "=", doc_id)])
            for r in t.to_pylist():
                out.append({"export": str(index.parent), "shard": r["shard"], "row": r["row"], "repeat": r["repeat"]})
        return out

    def takedowns(self, doc_id: str, url: str | None) -> list[dict[str, Any]]:
        """The takedowns that name this document: by its id, its URL or its domain (the table
        keeps only hashes of ids and URLs; it is small, so it is read whole)."""
        if not self.lake.has(T.TAKEDOWNS.name):
            return []
        d, v = self.lake.dataset(T.TAKEDOWNS.name)
        self.read[T.TAKEDOWNS.name] = v
        rows = self.lake.rows_with_commits(T.TAKEDOWNS.name, d.to_table(columns=d.schema.names + ["__filename"]))
        doc_h, url_h = sha256(doc_id) if doc_id else None, sha256(url) if url else None
        domains = set(parent_domains(host_of(url))) if url else set()
        return [
            r
            for r in rows
            if r["target_sha256"] in (doc_h, url_h)
            or doc_h in (r.get("doc_sha256") or [])
            or url_h in (r.get("url_sha256") or [])
            or (r.get("kind") == "domain" and r.get("target") in domains)
        ]


# The reader of each traced table (``TableSpec.traced``); a test holds this to the contract.
READERS: dict[str, Callable[[Tracer, _Doc], None]] = {
    T.RAW_CRAWL.name: Tracer._raw_crawl,
    T.FILTERED.name: Tracer._filtered,
    T.DEDUPLICATED.name: Tracer._deduplicated,
    T.QUALITY_SCORED.name: Tracer._quality_scored,
    T.REWRITTEN.name: Tracer._rewritten,
    T.DECONTAMINATED.name: Tracer._decontaminated,
    T.MIXED.name: Tracer._mixed,
    T.TAKEDOWNS.name: Tracer._takedowns,
}


def trace(root: str | Path, doc_id: str | None = None, url: str | None = None) -> dict[str, Any]:
    """The history of a document id, or of every document fetched from a URL."""
    tracer = Tracer(root)
    ids = [doc_id] if doc_id else doc_ids_for_url(tracer.lake, url or "")
    docs = [tracer.trace(i) for i in ids]
    if not docs and url:
        # Nothing left in any table: perhaps taken down (the takedowns table keeps the URL's hash).
        gone = tracer.takedowns("", url)
        docs = [
            {
                "doc_id": None,
                "url": url,
                "found": bool(gone),
                "steps": [
                    {
                        "step": "takedown",
                        "says": f"taken down {r['requested_at']}: {r['reason']} — takedown {r['takedown_id']}",
                        "row": _clean(r),
                    }
                    for r in gone
                ],
            }
        ]
    return {"lakehouse": str(tracer.lake.root), "query": {"doc_id": doc_id, "url": url}, "tables_read": tracer.read, "documents": docs}


def render(result: dict[str, Any]) -> str:
    """The trace as a person reads it: one line per step, with its table version and runs."""
    lines = []
    if not result["documents"] or not any(d["found"] for d in result["documents"]):
        q = result["query"]
        return f"no document {q['doc_id'] or q['url']!r} in any table of {result['lakehouse']}"
    for d in result["documents"]:
        lines.append(f"document {d['doc_id']}  {d.get('url') or ''}  (crawl {d.get('crawl_id') or '?'})")
        for s in d["steps"]:
            c = s.get("commit") or {}
            where = f"{c['table']}@v{c['version']}" if c.get("version") is not None else (c.get("table") or "")
            runs = ", ".join(f"{k.split('_')[0]} {str(c[k])[:8]}" for k in ("dagster_run_id", "mlflow_run_id") if c.get(k))
            lines.append(f"  {s['step']:<9} {s['says']}")
            if where or runs:
                lines.append(
                    f"  {'':<9}   ↳ {where}"
                    + (f"  [{runs}]" if runs else "")
                    + (f"  code {c['code_version']}" if c.get("code_version") else "")
                )
    lines.append("tables read: " + ", ".join(f"{k}@v{v}" for k, v in sorted(result["tables_read"].items())))
    return "\n".join(lines)


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=1, default=str)
