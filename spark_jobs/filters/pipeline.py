"""The `filtered` stage on one Arrow batch of `raw_crawl` rows, in FineWeb's order:

URL filter → main-text extraction → language ID → Gopher repetition → Gopher quality → C4 →
FineWeb rules → PII redaction.

A document leaves at the first rule it fails, as a rejection row carrying the rule and the
measured value. A kept document carries every signal measured on it, so later analysis needs no
recompute. The stored ``text`` is the final one (C4 line removals and PII placeholders applied);
Gopher signals are measured on the extracted text, FineWeb signals on the C4-cleaned text.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field

from spark_jobs.filters import quality_rules as Q
from spark_jobs.filters.extract import ExtractOptions, Extractor
from spark_jobs.filters.language import LanguageIdentifier, LanguageOptions
from spark_jobs.filters.pii import PiiOptions, redact
from spark_jobs.filters.url_filter import UrlFilter, UrlFilterOptions
from spark_jobs.warc_ingest import RAW_CRAWL_COLUMNS, REJECTION_COLUMNS

STAGE = "filter"


class FilterOptions(BaseModel):
    url: UrlFilterOptions = Field(default_factory=UrlFilterOptions)
    extract: ExtractOptions = Field(default_factory=ExtractOptions)
    language: LanguageOptions = Field(default_factory=LanguageOptions)
    gopher_repetition: Q.GopherRepetitionOptions = Field(default_factory=Q.GopherRepetitionOptions)
    gopher_quality: Q.GopherQualityOptions = Field(default_factory=Q.GopherQualityOptions)
    c4: Q.C4Options = Field(default_factory=Q.C4Options)
    fineweb: Q.FineWebOptions = Field(default_factory=Q.FineWebOptions)
    pii: PiiOptions = Field(default_factory=PiiOptions)


# Rules in pipeline order: what the funnel plot and the rejection reasons are grouped by.
STAGES = ["url", "extract", "language", "gopher_rep", "gopher_quality", "c4", "fineweb"]

SIGNAL_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("language", pa.string()),
    ("language_score", pa.float64()),
    ("extractor", pa.string()),
    ("char_count", pa.int64()),
    ("line_count", pa.int64()),
    ("word_count", pa.int64()),
    ("mean_word_length", pa.float64()),
    ("symbol_word_ratio", pa.float64()),
    ("bullet_lines_ratio", pa.float64()),
    ("ellipsis_lines_ratio", pa.float64()),
    ("alpha_words_ratio", pa.float64()),
    ("stop_word_count", pa.int64()),
    ("dup_line_frac", pa.float64()),
    ("dup_line_char_frac", pa.float64()),
    ("dup_para_frac", pa.float64()),
    ("dup_para_char_frac", pa.float64()),
    *[(f"top_{n}gram_char_frac", pa.float64()) for n in (2, 3, 4)],
    *[(f"dup_{n}gram_char_frac", pa.float64()) for n in range(5, 11)],
    ("c4_lines_removed", pa.int64()),
    ("sentence_count", pa.int64()),
    ("line_punct_ratio", pa.float64()),
    ("short_line_ratio", pa.float64()),
    ("char_dup_ratio", pa.float64()),
    ("newline_word_ratio", pa.float64()),
    ("pii_emails", pa.int64()),
    ("pii_ips", pa.int64()),
    ("pii_phones", pa.int64()),
]
PROVENANCE = ["doc_id", "url", "host", "warc_date", "warc_record_id", "warc_file", "warc_offset"]
FILTERED_COLUMNS: list[tuple[str, pa.DataType]] = [
    *[c for c in RAW_CRAWL_COLUMNS if c[0] in PROVENANCE],
    ("text", pa.string()),
    *SIGNAL_COLUMNS,
]
INPUT_COLUMNS = [*PROVENANCE, "charset", "html"]


def filtered_schema() -> pa.Schema:
    return pa.schema(FILTERED_COLUMNS + [("crawl_id", pa.string())])


class DocumentFilter:
    """Holds the loaded models and lists; one per Python worker (see :func:`get_filter`)."""

    def __init__(self, o: FilterOptions) -> None:
        self.o = o
        self.url = UrlFilter(o.url) if o.url.enabled else None
        self.extractor = Extractor(o.extract)
        self.lang = LanguageIdentifier(o.language) if o.language.enabled else None
        self.languages = set(o.language.languages)

    def one(self, row: dict[str, Any]) -> tuple[dict[str, Any] | None, tuple[str, str | None, float | None] | None]:
        """(kept row, None) or (None, (rule, detail, value))."""
        o = self.o
        if self.url is not None:
            hit = self.url.check(row["url"])
            if hit:
                return None, (hit[0], hit[1], None)
        try:
            text, path = self.extractor.extract_with_path(row["html"], row.get("charset"))
        except Exception as e:  # an undecodable or unparseable page is explained, never fatal
            return None, ("extract.failed", f"{type(e).__name__}: {e}"[:300], None)
        text = text.strip()
        if not text:
            return None, ("extract.no_text", None, 0.0)
        sig: dict[str, Any] = {"extractor": path}
        if self.lang is not None:
            lang, score = self.lang.identify(text)
            sig["language"], sig["language_score"] = lang, score
            if self.languages and lang not in self.languages:
                return None, ("language.not_selected", lang, score)
            if score < o.language.min_score:
                return None, ("language.low_score", lang, score)
        words = Q.words_of(text)
        for signals, verdict, opts in (
            (Q.gopher_repetition_signals, Q.gopher_repetition_verdict, o.gopher_repetition),
            (Q.gopher_quality_signals, Q.gopher_quality_verdict, o.gopher_quality),
        ):
            if opts.enabled:
                s = signals(text, words, opts)
                sig.update(s)
                v = verdict(s, opts)
                if v:
                    return None, (v[0], None, v[1])
        if o.c4.enabled:
            new, v, s = Q.c4_clean(text, o.c4)
            sig.update(s)
            if v:
                return None, (v[0], None, v[1])
            text = new
            words = Q.words_of(text)
        if o.fineweb.enabled:
            s = Q.fineweb_signals(text, words, o.fineweb)
            sig.update(s)
            v = Q.fineweb_verdict(s, o.fineweb)
            if v:
                return None, (v[0], None, v[1])
        text, counts = redact(text, o.pii)
        sig.update(counts)
        sig["char_count"] = len(text)
        sig["line_count"] = text.count("\n") + 1
        sig.setdefault("word_count", len(words))
        out = {k: row[k] for k in PROVENANCE}
        out["text"] = text
        out.update(sig)
        return out, None

    def batch(self, batch: pa.RecordBatch, run_id: str) -> tuple[pa.Table, pa.Table]:
        kept: list[dict[str, Any]] = []
        rejected: dict[str, list[Any]] = {name: [] for name, _ in REJECTION_COLUMNS}
        for row in batch.to_pylist():
            doc, why = self.one(row)
            if doc is not None:
                kept.append(doc)
                continue
            rule, detail, value = why  # type: ignore[misc]
            for k, v in (
                ("doc_id", row["doc_id"]), ("url", row["url"]), ("reason", rule), ("detail", detail),
                ("value", value), ("related_doc_id", None), ("warc_file", row["warc_file"]),
                ("warc_offset", row["warc_offset"]), ("run_id", run_id),
            ):
                rejected[k].append(v)
        kept_schema = pa.schema(FILTERED_COLUMNS)
        cols = {name: [d.get(name) for d in kept] for name in kept_schema.names}
        for name, typ in FILTERED_COLUMNS:
            if pa.types.is_integer(typ):
                cols[name] = [None if v is None else int(v) for v in cols[name]]
        return (
            pa.Table.from_pydict(cols, schema=kept_schema),
            pa.Table.from_pydict(rejected, schema=pa.schema(REJECTION_COLUMNS)),
        )


_CACHE: dict[str, DocumentFilter] = {}


def get_filter(options_json: str) -> DocumentFilter:
    """One DocumentFilter per worker process and configuration (models load once)."""
    f = _CACHE.get(options_json)
    if f is None:
        f = _CACHE[options_json] = DocumentFilter(FilterOptions.model_validate_json(options_json))
    return f
