"""``sluice audit``: a crawl's funnel per stage and per reason (documents and words in, kept,
rejected), with conservation checked (in = kept + rejected), the gate results, and the table
versions and timings behind each number — as an HTML report with its plots (PNGs beside it).

Everything is read from the current table versions, the gate results under ``_quality`` and the
stage runs in MLflow; nothing is recomputed. Words are whitespace words (``word_count``), the
pipeline's own token proxy before a tokenizer is chosen. Rejected words are those of the rejected
document's text (``rejections.word_count``, or its row upstream); a record rejected before it had
text (ingest, filter rules ahead of extraction) has none, so the filter's words in are those of the
text extracted (kept + rejected).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from audit.lake import Lake
from quality.plots import funnel_png, reasons_png
from storage import tables as T


@dataclass
class Stage:
    name: str
    table: str | None  # what it keeps
    source: str | None  # what it reads
    rejection_stage: str | None
    docs_in: int = 0
    kept: int = 0
    rejected: int = 0
    words_in: int | None = None
    words_kept: int | None = None
    words_rejected: int | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    version: int | None = None
    commit: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    gate: dict[str, Any] | None = None

    @property
    def conserved(self) -> bool:
        return self.docs_in == self.kept + self.rejected


def _count(lake: Lake, table: str, crawl: str, extra: ds.Expression | None = None) -> int:
    if not lake.has(table):
        return 0
    d, _ = lake.dataset(table)
    expr = ds.field("crawl_id") == crawl
    return d.count_rows(filter=expr if extra is None else expr & extra)


def _words(lake: Lake, table: str, crawl: str, ids: list[str] | None = None) -> int | None:
    if not lake.has(table):
        return None
    d, _ = lake.dataset(table)
    if "word_count" not in d.schema.names:
        return None
    expr = ds.field("crawl_id") == crawl
    if ids is not None:
        if not ids:  # nothing rejected (a crawl with no duplicates): an empty list has no type to compare with
            return 0
        expr = expr & ds.field("doc_id").isin(pa.array(ids, pa.string()))
    t = d.to_table(columns=["word_count"], filter=expr)
    return int(pc.sum(t.column("word_count")).as_py() or 0)


def _reasons(lake: Lake, crawl: str, stage: str) -> tuple[dict[str, int], list[str]]:
    if not lake.has(T.REJECTIONS.name):
        return {}, []
    d, _ = lake.dataset(T.REJECTIONS.name)
    t = d.to_table(columns=["doc_id", "reason"], filter=(ds.field("crawl_id") == crawl) & (ds.field("stage") == stage))
    counts = t.group_by("reason").aggregate([("reason", "count")]).to_pylist()
    return ({r["reason"]: r["reason_count"] for r in sorted(counts, key=lambda r: -r["reason_count"])}, t.column("doc_id").to_pylist())


def _rejected_words(lake: Lake, crawl: str, stage: str) -> int | None:
    """Words the stage's rejections had when rejected (None on a lakehouse written before
    ``rejections.word_count`` existed)."""
    if not lake.has(T.REJECTIONS.name):
        return None
    d, _ = lake.dataset(T.REJECTIONS.name)
    if "word_count" not in d.schema.names:
        return None
    t = d.to_table(columns=["word_count"], filter=(ds.field("crawl_id") == crawl) & (ds.field("stage") == stage))
    return int(pc.sum(t.column("word_count")).as_py() or 0)


def _rewrite_words(lake: Lake, crawl: str, ids: list[str]) -> int:
    """Words of the rewrites among ``ids`` (a rewrite's words are its ``output_words``)."""
    if not ids or not lake.has(T.REWRITTEN.name):
        return 0
    d, _ = lake.dataset(T.REWRITTEN.name)
    t = d.to_table(columns=["output_words"], filter=(ds.field("crawl_id") == crawl) & ds.field("doc_id").isin(pa.array(ids, pa.string())))
    return int(pc.sum(t.column("output_words")).as_py() or 0)


STRUCTURE = T.NOT_RESPONSE  # WARC request, metadata, warcinfo records: the archive's bookkeeping, not pages


def _structure(lake: Lake, crawl: str) -> dict[str, int]:
    """The crawl's non-response WARC records by WARC-Type (they accompany every response)."""
    if not lake.has(T.REJECTIONS.name):
        return {}
    d, _ = lake.dataset(T.REJECTIONS.name)
    t = d.to_table(
        columns=["detail"], filter=(ds.field("crawl_id") == crawl) & (ds.field("stage") == T.INGEST) & (ds.field("reason") == STRUCTURE)
    )
    return {r["values"] or "?": r["counts"] for r in t.column("detail").value_counts().to_pylist()}


def _latest_gate(root: Path, asset: str, crawl: str) -> dict[str, Any] | None:
    files = sorted((root / T.QUALITY / "results" / asset).glob(f"*-{asset}-{crawl}-*.json"))
    if not files:
        return None
    r = json.loads(files[-1].read_text())
    results = [x for s in (r.get("suites") or {}).values() for x in (s.get("results") or [])]
    failed = [x["expectation_config"]["type"] for x in results if not x.get("success")]
    return {"success": bool(r.get("success")), "evaluated": len(results), "failed": failed, "file": str(files[-1])}


def crawl_funnel(root: str | Path, crawl: str, tracking_uri: str | None = None) -> list[Stage]:
    """One funnel stage per table the contract puts in the funnel (``TableSpec.funnel``), in step order."""
    lake = Lake(root)
    stages = [Stage(t.step, t.name, t.funnel_input, t.step) for t in T.funnel_tables()]
    for s in stages:
        s.kept = _count(lake, s.table, crawl)
        s.reasons, rejected_ids = _reasons(lake, crawl, s.rejection_stage)
        if s.name == T.INGEST:  # the funnel starts at HTTP responses; WARC bookkeeping is listed apart
            s.reasons.pop(STRUCTURE, None)
        s.rejected = sum(s.reasons.values())
        s.docs_in = _count(lake, s.source, crawl) if s.source else s.kept + s.rejected
        s.words_kept = _words(lake, s.table, crawl)
        if s.source:
            s.words_in = _words(lake, s.source, crawl)
            s.words_rejected = _words(lake, s.source, crawl, rejected_ids)
        if s.words_rejected is None and s.name != T.INGEST:  # the filters: raw_crawl has no text, the rejection rows say
            s.words_rejected = _rejected_words(lake, crawl, s.rejection_stage)
            if s.words_rejected is not None and s.words_kept is not None:
                s.words_in = s.words_kept + s.words_rejected
        if s.name == T.DECONTAM:
            # its input: every text layer of the crawl (deduplicated documents and rewrites)
            s.words_rejected = (_words(lake, T.DEDUPLICATED.name, crawl, rejected_ids) or 0) + _rewrite_words(lake, crawl, rejected_ids)
            s.words_in = (s.words_kept or 0) + s.words_rejected
        if lake.has(s.table):
            log = lake.log(s.table)
            ours = [
                c
                for c in log.commits.values()
                if (c.info.get("dagster_partition") == crawl or (c.info.get("partition") or {}).get("crawl_id") == crawl)
            ]
            if ours:
                last = max(ours, key=lambda c: c.version)
                s.version, s.commit = last.version, last.runs
        s.gate = _latest_gate(Path(root), s.table, crawl)
    if tracking_uri:
        _timings(stages, tracking_uri)
    return stages


def _timings(stages: list[Stage], tracking_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    for s in stages:
        run_id = s.commit.get("mlflow_run_id")
        if run_id:
            try:
                s.seconds = client.get_run(run_id).data.metrics.get("seconds")
            except Exception:  # noqa: BLE001 - a run deleted from MLflow: no timing, the rest stands
                s.seconds = None


def write_report(root: str | Path, crawl: str, out_dir: str | Path, tracking_uri: str | None = None) -> dict[str, Any]:
    """The HTML report and its PNGs in ``out_dir``; returns a summary (what the CLI prints, what
    the Dagster metadata and MLflow run get)."""
    stages = crawl_funnel(root, crawl, tracking_uri)
    structure = _structure(Lake(root), crawl)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = [("HTTP responses", stages[0].docs_in)] + [(f"after {s.name}", s.kept) for s in stages]
    funnel = funnel_png(steps, f"funnel — {crawl}", out / "funnel.png")
    reasons = {f"{s.name}: {r}": n for s in stages for r, n in s.reasons.items()}
    reasons_plot = reasons_png(reasons, f"rejections by reason — {crawl}", out / "reasons.png") if reasons else None
    rows = []
    for s in stages:
        g = s.gate
        gate = "-" if g is None else ("passed" if g["success"] else "FAILED: " + ", ".join(g["failed"][:5]))
        fmt = lambda v: "n/a¹" if v is None else f"{v:,}"  # noqa: E731
        rows.append(
            f"<tr><td>{s.name}</td><td>{s.docs_in:,}</td><td>{s.kept:,}</td><td>{s.rejected:,}</td>"
            f"<td>{'✓' if s.conserved else '✗ ' + str(s.docs_in - s.kept - s.rejected)}</td>"
            f"<td>{fmt(s.words_in)}</td><td>{fmt(s.words_kept)}</td><td>{fmt(s.words_rejected)}</td>"
            f"<td>{html.escape(gate)}</td><td>{s.table}@v{s.version if s.version is not None else '-'}</td>"
            f"<td>{'-' if s.seconds is None else f'{s.seconds:.1f}'}</td>"
            f"<td>{html.escape(str(s.commit.get('dagster_run_id') or '-'))[:8]}</td><td>{html.escape(str(s.commit.get('code_version') or '-'))}</td></tr>"
        )
    reason_rows = "".join(
        f"<tr><td>{s.name}</td><td>{html.escape(r)}</td><td>{n:,}</td><td>{n / max(s.docs_in, 1):.2%}</td></tr>"
        for s in stages
        for r, n in s.reasons.items()
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Sluice audit — {html.escape(crawl)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}</style></head><body>
<h1>Audit of crawl {html.escape(crawl)}</h1>
<p>Lakehouse {html.escape(str(Path(root).resolve()))}. Conservation: each stage's input equals what it kept plus what it rejected.</p>
<h2>Funnel</h2><p>The funnel starts at the crawl's HTTP responses. The WARC files also hold {sum(structure.values()):,} records that
are the archive's own bookkeeping, not pages ({html.escape(", ".join(f"{k}: {v:,}" for k, v in sorted(structure.items())) or "none")}):
they are recorded in <code>rejections</code> (stage ingest, reason {STRUCTURE}) and counted here apart.</p>
<img src="funnel.png" alt="funnel">
<table><tr><th>stage</th><th>documents in</th><th>kept</th><th>rejected</th><th>in = kept + rejected</th><th>words in</th>
<th>words kept</th><th>words rejected</th><th>gate</th><th>table version</th><th>seconds</th><th>dagster run</th><th>code</th></tr>
{"".join(rows)}</table>
<p>¹ not measured: a record has no text before extraction (ingest), or the lakehouse predates <code>rejections.word_count</code>.
The filter's words are those of the text it extracted: pages it rejected before extraction had none.</p>
<h2>Rejections by reason</h2>{'<img src="reasons.png" alt="reasons">' if reasons_plot else ""}
<table><tr><th>stage</th><th>reason</th><th>documents</th><th>share of the stage's input</th></tr>{reason_rows}</table>
</body></html>"""
    (out / "audit.html").write_text(page, encoding="utf-8")
    summary = {
        "crawl": crawl,
        "report": str(out / "audit.html"),
        "plots": [str(funnel)] + ([str(reasons_plot)] if reasons_plot else []),
        "warc_structure_records": structure,
        "conserved": all(s.conserved for s in stages),
        "gates_passed": all(s.gate is None or s.gate["success"] for s in stages),
        "stages": [
            {
                "stage": s.name,
                "in": s.docs_in,
                "kept": s.kept,
                "rejected": s.rejected,
                "conserved": s.conserved,
                "words_in": s.words_in,
                "words_kept": s.words_kept,
                "words_rejected": s.words_rejected,
                "reasons": s.reasons,
                "table": s.table,
                "version": s.version,
                "seconds": s.seconds,
                "gate": s.gate,
                "runs": s.commit,
            }
            for s in stages
        ],
    }
    (out / "audit.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def audit_table(summary: dict[str, Any]) -> str:
    """The funnel as a Markdown table (for Dagster metadata)."""
    lines = ["| stage | in | kept | rejected | in = kept + rejected | gate |", "|---|---:|---:|---:|---|---|"]
    for s in summary["stages"]:
        g = s["gate"]
        lines.append(
            f"| {s['stage']} | {s['in']:,} | {s['kept']:,} | {s['rejected']:,} | {'yes' if s['conserved'] else 'NO'} | "
            f"{'-' if g is None else 'passed' if g['success'] else 'failed'} |"
        )
    return "\n".join(lines)


def render(summary: dict[str, Any]) -> str:
    lines = [f"audit of crawl {summary['crawl']}:", f"{'stage':<9} {'in':>9} {'kept':>9} {'rejected':>9}  conserved  gate    top reasons"]
    for s in summary["stages"]:
        g = s["gate"]
        gate = "-" if g is None else "passed" if g["success"] else "FAILED"
        top = ", ".join(f"{r} {n}" for r, n in list(s["reasons"].items())[:3])
        lines.append(
            f"{s['stage']:<9} {s['in']:>9,} {s['kept']:>9,} {s['rejected']:>9,}  {'yes' if s['conserved'] else 'NO':<9}  {gate:<6}  {top}"
        )
    structure = summary.get("warc_structure_records") or {}
    if structure:
        lines.append(
            f"(not pages: {sum(structure.values()):,} WARC structure records, "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(structure.items()))
            + ")"
        )
    lines.append(f"report: {summary['report']}")
    return "\n".join(lines)
