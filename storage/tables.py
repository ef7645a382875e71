"""The table contract: every table's name, Arrow schema, partitioning and owning asset, the
pipeline's steps (the `rejections` partitions and the steps of a trace), what audits need to know of
each table (which columns name a document, its text, its row key, its step, whether trace, takedown
and the crawl funnel cover it), and the lakehouse's sub-folders. Jobs write these schemas, gates check
them, the Dagster metadata shows them, audits derive their table lists from them, and tests hold the
README and the stage registry (``assets.stages``) to them.

No Spark and no Dagster here: Spark tasks, GPU programs, assets and the CLI all read it. It is one
long module on purpose: it is the single source of truth for every table, and a reader checking a
column or a table's facts should find all of them in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from documents.rules import PROVENANCE, SIGNAL_COLUMNS

Columns = list[tuple[str, pa.DataType]]


# ---- steps: what a table's rows are the outcome of ------------------------------------------------
# One vocabulary, in pipeline order: a table's ``step``, the `stage` partition of `rejections` (the
# steps that reject) and the steps `sluice trace` shows.

INGEST = "ingest"
FILTER = "filter"
DEDUP = "dedup"
SCORING = "quality"
REWRITE = "rewrite"
DECONTAM = "decontam"
MIXTURE = "mixture"
EXPORT = "export"  # not a table: shards and a manifest under _exports/
TAKEDOWN = "takedown"  # also the reason ingest gives a record whose URL or domain was taken down
STEPS = (INGEST, FILTER, DEDUP, SCORING, REWRITE, DECONTAM, MIXTURE, EXPORT, TAKEDOWN)
NOT_RESPONSE = "not_response"  # the reason ingest gives WARC request, metadata and warcinfo records (bookkeeping, not pages)

# The column through which a derived row (a rewrite, a layer's copy, a mixture row) names the document
# it comes from: a takedown follows it to everything derived from what it removes.
SOURCE_ID = "source_doc_id"


# ---- the lakehouse's folders (beside the tables) --------------------------------------------------

STAGING = ".staging"  # <table>/.staging/<txn>/: a write in progress (storage.delta_table)
RESUME = ".resume"  # <table>/.resume/<key>/: finished chunks of a GPU job not yet published
REPORTS = "_reports"  # _reports/<asset>/*.png: plots
MODELS = "_models"  # trained models, and registry versions downloaded for scoring
QUALITY = "_quality"  # gate results (JSON) and Great Expectations Data Docs
QUARANTINE = "_quarantine"  # _quarantine/<table>/<partition>/<run>-<txn>/: candidates whose gate failed
SCRATCH = "_scratch"  # a stage's intermediate files, deleted when it ends
MLFLOW = "_mlflow"  # the default MLflow store (SQLite, artifacts)
DAGSTER = "_dagster"  # the local Dagster instance

LOGS = "_logs"  # _logs/sluice-run-<time>.log: what `sluice run` keeps off the terminal
EXPORTS = "_exports"  # _exports/<mixture>/: shards and manifest written by `sluice export`

# In a crawl's landing folder: clean texts the quality classifier may take as positives.
REFERENCE_CORPUS = "reference_corpus.jsonl"


@dataclass(frozen=True)
class TableSpec:
    """A table: its schema and partitioning, and what every consumer needs to know of it. The
    keyword-only facts have no default, so a new table cannot be declared without saying them;
    ``tests/test_table_facts.py`` checks them against the columns and the stage registry."""

    name: str
    columns: Columns  # data columns, in file order (partition columns excluded)
    partition_by: tuple[str, ...]
    stage: str  # the asset that writes it
    description: str
    # Columns that depend on the writing stage's options (quality_scored: one pair per scorer), and
    # the config section those options are (``scoring``).
    extra_columns: Callable[[object], Columns] | None = field(default=None, compare=False)
    options_key: str | None = None
    # --- what the audits derive from (no default: a new table must decide each) ---
    # The step (``STEPS``) its rows are the outcome of; None for `rejections`, written by every step.
    step: str | None = field(kw_only=True)
    # Columns that name a document: a takedown deletes a row when any holds a removed id (`` ()``:
    # the table holds no documents, and no takedown touches it).
    id_columns: tuple[str, ...] = field(kw_only=True)
    # The document's text, which a takedown also scrubs from every other file (None: no text).
    text_column: str | None = field(kw_only=True)
    # The columns that tell one row from another within a partition (what `sluice diff` compares).
    row_key: tuple[str, ...] = field(kw_only=True)
    # Whether `sluice trace` reads it (``audit.trace`` has one reader per traced table).
    traced: bool = field(kw_only=True)
    # Columns that point at another document (a cluster's kept copy): a takedown re-points them when it
    # promotes a duplicate, and its proof checks none still points at a removed id.
    ref_columns: tuple[str, ...] = field(default=(), kw_only=True)
    # What `sluice diff` counts added and removed rows by (None: rows).
    group_by: str | None = field(default=None, kw_only=True)
    # The crawl funnel (`sluice audit`): every input document of the step is kept in this table or
    # rejected under its step; ``funnel_input``: the table whose rows of the crawl are that input
    # (None: the input is counted as kept + rejected).
    funnel: bool = field(default=False, kw_only=True)
    funnel_input: str | None = field(default=None, kw_only=True)

    @property
    def taken_down(self) -> bool:
        """Whether a takedown removes rows from it (it holds documents)."""
        return bool(self.id_columns)

    def data_schema(self, options: object = None) -> pa.Schema:
        extra = self.extra_columns(options) if self.extra_columns is not None and options is not None else []
        return pa.schema(self.columns[:1] + extra + self.columns[1:] if extra else self.columns)

    def schema(self, options: object = None) -> pa.Schema:
        """The Delta table's schema: data columns, then the partition columns (strings)."""
        return pa.schema(list(self.data_schema(options)) + [(c, pa.string()) for c in self.partition_by])

    def describe(self, column: str) -> str:
        """What a column means (``COLUMN_DOCS``, below); a scorer's columns (``<name>``,
        ``<name>_label``) by pattern. Empty when undocumented (a test keeps that from happening)."""
        doc = COLUMN_DOCS.get(self.name, {}).get(column)
        if doc is None and self.extra_columns is not None:
            if column.endswith("_label"):
                return f"the argmax label of scorer `{column[: -len('_label')]}`"
            return f"scorer `{column}`: the probability of its chosen label, or its regression output"
        return doc or ""


_TS = pa.timestamp("us", tz="UTC")

RAW_CRAWL_COLUMNS: Columns = [
    ("doc_id", pa.string()),
    ("url", pa.string()),
    ("host", pa.string()),
    ("warc_date", _TS),
    ("warc_record_id", pa.string()),
    ("warc_file", pa.string()),
    ("warc_offset", pa.int64()),
    ("content_type", pa.string()),
    ("charset", pa.string()),
    ("http_status", pa.int32()),
    ("payload_digest", pa.string()),
    ("content_length", pa.int64()),
    ("html", pa.binary()),
]
# One audit table for every stage; stage-specific columns stay null where they do not apply.
REJECTION_COLUMNS: Columns = [
    ("doc_id", pa.string()),
    ("url", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("value", pa.float64()),
    ("related_doc_id", pa.string()),
    ("warc_file", pa.string()),
    ("warc_offset", pa.int64()),
    ("run_id", pa.string()),
    ("word_count", pa.int64()),
]
FILTERED_COLUMNS: Columns = [*[c for c in RAW_CRAWL_COLUMNS if c[0] in PROVENANCE], ("text", pa.string()), *SIGNAL_COLUMNS]
DEDUPLICATED_COLUMNS: Columns = FILTERED_COLUMNS + [
    ("exact_hash", pa.int64()),
    ("dup_cluster_id", pa.string()),
    ("dup_cluster_size", pa.int64()),
]
CLUSTER_COLUMNS: Columns = [
    ("doc_id", pa.string()),
    ("cluster_id", pa.string()),
    ("kept", pa.bool_()),
    ("reason", pa.string()),
    ("jaccard", pa.float64()),
    ("cluster_size", pa.int64()),
]
SIGNATURE_COLUMNS: Columns = [
    ("doc_id", pa.string()),
    ("seq", pa.int64()),
    ("exact_hash", pa.int64()),
    ("quality", pa.float64()),
    ("warc_date", _TS),
    ("minhash", pa.list_(pa.int32())),
    ("band_keys", pa.list_(pa.int64())),
    ("embedding", pa.list_(pa.float32())),
    ("embedding_model", pa.string()),
]
QUALITY_SCORED_COLUMNS: Columns = [("doc_id", pa.string()), ("model_uri", pa.string()), ("model_version", pa.string())]
REWRITTEN_COLUMNS: Columns = [
    ("doc_id", pa.string()),
    ("source_doc_id", pa.string()),
    ("url", pa.string()),
    ("text", pa.string()),
    ("rewriter_model", pa.string()),
    ("prompt_version", pa.string()),
    ("style", pa.string()),
    ("generation_params", pa.string()),
    ("score_before", pa.float64()),
    ("score_after", pa.float64()),
    ("scores_after", pa.string()),
    ("source_words", pa.int64()),
    ("output_words", pa.int64()),
    ("new_tokens", pa.int64()),
    ("facts_kept", pa.float64()),
    ("invented_facts", pa.int64()),
]

# Every text layer a mixture may draw from, after benchmark decontamination, in one shape.
DECONTAMINATED_COLUMNS: Columns = [
    ("doc_id", pa.string()),
    ("source", pa.string()),
    ("source_doc_id", pa.string()),
    ("url", pa.string()),
    ("text", pa.string()),
    ("language", pa.string()),
    ("word_count", pa.int64()),
    ("warc_file", pa.string()),
    ("warc_offset", pa.int64()),
]

# One row per (document, repeat) of a training mixture.
MIXED_COLUMNS: Columns = [
    ("doc_id", pa.string()),
    ("repeat", pa.int64()),
    ("source", pa.string()),
    ("origin", pa.string()),
    ("source_doc_id", pa.string()),
    ("crawl_id", pa.string()),
    ("url", pa.string()),
    ("text", pa.string()),
    ("token_count", pa.int64()),
]


def preview_cell(value: object, width: int = 80) -> str:
    """How a value appears in an asset's Markdown preview (a takedown scrubs exactly this form)."""
    return str(value)[:width].replace("|", "\\|").replace("\n", " ")


def score_columns(scoring_options: object) -> Columns:
    """``<name>`` (the score) and ``<name>_label`` for each configured scorer, then each ensemble."""
    out: Columns = []
    for c in [*scoring_options.scorers, *getattr(scoring_options, "ensembles", [])]:  # type: ignore[attr-defined]
        out += [(c.name, pa.float64()), (f"{c.name}_label", pa.string())]
    return out


_CRAWL = ("crawl_id",)
_DOC = ("doc_id",)
_DERIVED = ("doc_id", SOURCE_ID)
RAW_CRAWL = TableSpec(
    "raw_crawl",
    RAW_CRAWL_COLUMNS,
    _CRAWL,
    "raw_crawl",
    "one row per HTTP 200 HTML response of a WARC file",
    step=INGEST,
    id_columns=_DOC,
    text_column=None,
    row_key=_DOC,
    traced=True,
    funnel=True,
)
# A document may be rejected by several steps (dedup, then its rewrite...): the row key is (doc_id, reason).
REJECTIONS = TableSpec(
    "rejections",
    REJECTION_COLUMNS,
    ("crawl_id", "stage"),
    "every stage",
    "why a record or document left the corpus, at which stage",
    step=None,
    id_columns=_DOC,
    text_column=None,
    row_key=("doc_id", "reason"),
    traced=True,
    ref_columns=("related_doc_id",),
    group_by="reason",
)
FILTERED = TableSpec(
    "filtered",
    FILTERED_COLUMNS,
    _CRAWL,
    "filtered",
    "documents that passed every filter, with their signals",
    step=FILTER,
    id_columns=_DOC,
    text_column="text",
    row_key=_DOC,
    traced=True,
    funnel=True,
    funnel_input="raw_crawl",
)
DEDUPLICATED = TableSpec(
    "deduplicated",
    DEDUPLICATED_COLUMNS,
    _CRAWL,
    "deduplicated",
    "one document per exact or near-duplicate cluster, across every crawl deduplicated so far",
    step=DEDUP,
    id_columns=_DOC,
    text_column="text",
    row_key=_DOC,
    traced=True,
    funnel=True,
    funnel_input="filtered",
)
# The dedup index tables: trace tells a document's dedup story from `deduplicated` and `rejections`.
DEDUP_CLUSTERS = TableSpec(
    "dedup_clusters",
    CLUSTER_COLUMNS,
    _CRAWL,
    "deduplicated",
    "cluster membership of the crawl's documents in clusters of two or more",
    step=DEDUP,
    id_columns=_DOC,
    text_column=None,
    row_key=_DOC,
    traced=False,
    ref_columns=("cluster_id",),
)
DEDUP_SIGNATURES = TableSpec(
    "dedup_signatures",
    SIGNATURE_COLUMNS,
    _CRAWL,
    "deduplicated",
    "MinHash signature, band keys and embedding of every kept document (the index later crawls are checked against)",
    step=DEDUP,
    id_columns=_DOC,
    text_column=None,
    row_key=_DOC,
    traced=False,
)
QUALITY_SCORED = TableSpec(
    "quality_scored",
    QUALITY_SCORED_COLUMNS,
    _CRAWL,
    "quality_scored",
    "one row per document, one score column per configured scorer",
    extra_columns=score_columns,
    options_key="scoring",
    step=SCORING,
    id_columns=_DOC,
    text_column=None,
    row_key=_DOC,
    traced=True,
)
# Rewrites add documents rather than filter the crawl's: not a funnel step.
REWRITTEN = TableSpec(
    "rewritten",
    REWRITTEN_COLUMNS,
    _CRAWL,
    "rewritten",
    "REWIRE-style rewrites of low-scoring documents",
    step=REWRITE,
    id_columns=_DERIVED,
    text_column="text",
    row_key=_DOC,
    traced=True,
)
DECONTAMINATED = TableSpec(
    "decontaminated",
    DECONTAMINATED_COLUMNS,
    _CRAWL,
    "decontaminated",
    "documents of every text layer (deduplicated, rewritten) with no benchmark n-gram overlap",
    step=DECONTAM,
    id_columns=_DERIVED,
    text_column="text",
    row_key=_DOC,
    traced=True,
    group_by="source",
    funnel=True,
)

# A document repeats in `mixed` (one row per epoch): the row key is (doc_id, repeat).
MIXED = TableSpec(
    "mixed",
    MIXED_COLUMNS,
    ("mixture_name",),
    "mixed",
    "one row per document and repeat of a training mixture; source = the mixture's bucket, origin = the text layer",
    step=MIXTURE,
    id_columns=_DERIVED,
    text_column="text",
    row_key=("doc_id", "repeat"),
    traced=True,
    group_by="source",
)

# One row per takedown. A URL or document id is kept only as its sha256 (what ingest's blocklist
# matches), so the record of a removal does not itself hold what was removed; a domain is kept as is.
TAKEDOWN_COLUMNS: Columns = [
    ("takedown_id", pa.string()),
    ("kind", pa.string()),
    ("target", pa.string()),
    ("target_sha256", pa.string()),
    ("url_sha256", pa.list_(pa.string())),
    ("doc_sha256", pa.list_(pa.string())),
    ("reason", pa.string()),
    ("ticket", pa.string()),
    ("requested_at", _TS),
    ("documents", pa.int64()),
    ("rows_removed", pa.string()),
    ("files_purged", pa.int64()),
    ("files_scrubbed", pa.int64()),
    ("exports_flagged", pa.string()),
]
TAKEDOWNS = TableSpec(
    "takedowns",
    TAKEDOWN_COLUMNS,
    (),
    "sluice takedown",
    "what was taken down, when, why (reason, ticket) and how many rows each table lost; ingest's blocklist",
    step=TAKEDOWN,
    id_columns=(),
    text_column=None,
    row_key=("takedown_id",),
    traced=True,
)

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        RAW_CRAWL,
        REJECTIONS,
        FILTERED,
        DEDUPLICATED,
        DEDUP_CLUSTERS,
        DEDUP_SIGNATURES,
        QUALITY_SCORED,
        REWRITTEN,
        DECONTAMINATED,
        MIXED,
        TAKEDOWNS,
    )
}


def takedown_tables() -> list[TableSpec]:
    """The tables a takedown removes rows from (those that hold documents), in contract order."""
    return [t for t in TABLES.values() if t.taken_down]


def derived_tables() -> list[TableSpec]:
    """The tables whose rows derive from another document (``SOURCE_ID``): a takedown's closure."""
    return [t for t in TABLES.values() if SOURCE_ID in t.id_columns]


def traced_tables() -> list[TableSpec]:
    return [t for t in TABLES.values() if t.traced]


def funnel_tables() -> list[TableSpec]:
    """The crawl funnel's steps, in pipeline order."""
    return sorted((t for t in TABLES.values() if t.funnel), key=lambda t: STEPS.index(t.step))


# ---- column descriptions: the one place they are written (Dagster's column schema, the README) ----

_PROVENANCE_DOCS = {
    "doc_id": "stable id: first 32 hex of SHA-256 of the WARC-Record-ID (of file@offset when a record has none)",
    "url": "WARC-Target-URI",
    "host": "the URL's host",
    "warc_date": "WARC-Date (UTC)",
    "warc_record_id": "WARC-Record-ID",
    "warc_file": "the WARC file, relative to the crawl folder",
    "warc_offset": "byte offset of the record's gzip member in its WARC file",
}
_CRAWL_DOC = {"crawl_id": "partition: the crawl snapshot (landing folder name)"}
_SIGNAL_DOCS = {
    "extractor": "the path that produced `text`: `cascade:resiliparse_blocks` or `cascade:trafilatura` (default backend), "
    "else `resiliparse_blocks`, `resiliparse`, `trafilatura`",
    "language": "ISO 639-1 code of the identified language",
    "language_score": "the language model's probability for `language`",
    **{
        n: f"Gopher repetition: {d}"
        for n, d in {
            "dup_line_frac": "share of lines that duplicate another line",
            "dup_line_char_frac": "share of characters in duplicated lines",
            "dup_para_frac": "share of paragraphs that duplicate another",
            "dup_para_char_frac": "share of characters in duplicated paragraphs",
            **{f"top_{k}gram_char_frac": f"character share of the most frequent {k}-gram" for k in (2, 3, 4)},
            **{f"dup_{k}gram_char_frac": f"character share of duplicated {k}-grams" for k in range(5, 11)},
        }.items()
    },
    "mean_word_length": "Gopher quality: mean word length in characters",
    "symbol_word_ratio": "Gopher quality: hash and ellipsis symbols per word",
    "bullet_lines_ratio": "Gopher quality: share of lines starting with a bullet",
    "ellipsis_lines_ratio": "Gopher quality: share of lines ending with an ellipsis",
    "alpha_words_ratio": "Gopher quality: share of words with a letter",
    "stop_word_count": "Gopher quality: English stop words (the, be, to, of, and, that, have, with) in the text",
    "c4_lines_removed": "C4: lines removed (no terminal punctuation, javascript, policy boilerplate)",
    "sentence_count": "C4: sentences in the text",
    "line_punct_ratio": "FineWeb: share of lines ending in punctuation (on the C4-cleaned text)",
    "short_line_ratio": "FineWeb: share of lines of at most 30 characters",
    "char_dup_ratio": "FineWeb: share of characters in duplicated lines",
    "newline_word_ratio": "FineWeb: newlines per word",
    "pii_emails": "e-mail addresses redacted (replaced by `<EMAIL>`)",
    "pii_ips": "IP addresses redacted (replaced by `<IP_ADDRESS>`)",
    "pii_phones": "phone numbers redacted",
    "word_count": "words of the extracted text as Gopher quality counts them (of the final text when that rule is off)",
    "char_count": "characters of the final text",
    "line_count": "lines of the final text",
    "stop_word_ratio": "share of the final text's words in jusText's stop list of `language` (null without a list): read by `builtin:signals-v1`",
    "final_word_count": "words of the final text (`word_count` is Gopher's, before C4 and PII): read by `builtin:signals-v1`",
    "final_line_punct_ratio": "share of the final text's lines ending in terminal punctuation: read by `builtin:signals-v1`",
}
COLUMN_DOCS: dict[str, dict[str, str]] = {
    "raw_crawl": {
        **_PROVENANCE_DOCS,
        "content_type": "MIME type from the HTTP Content-Type header",
        "charset": "charset from the HTTP Content-Type header (empty when none)",
        "http_status": "HTTP status: always 200 here",
        "payload_digest": "WARC-Payload-Digest",
        "content_length": "bytes of `html`",
        "html": "the HTTP body, de-chunked and content-decoded, bytes as served (charset decoding is extraction's job)",
        **_CRAWL_DOC,
    },
    "rejections": {
        "doc_id": "the record or document rejected",
        "url": "its URL",
        "reason": "why, as `<stage rule>.<signal>` (filter: `url.blocked_domain`, `extract.no_text`, `language.low_score`, "
        "`gopher_rep.<signal>`, `gopher_quality.<signal>`, `c4.<rule>`, `fineweb.<signal>`; dedup: `dedup.exact`, "
        "`dedup.near`, `dedup.semantic`) or an ingest reason (`not_response`, `not_http`, `http_status`, `not_html`, `truncated`, "
        "`too_large`, `decoded_too_large`, `unparseable`, `undecodable_body`, `empty_payload`, `unreadable`, `takedown`)",
        "detail": "what was seen (record type, status and redirect target, content type, error) or the bound crossed (`< 50`)",
        "value": "the measured value of the rule that fired (e.g. the language score; dedup: the Jaccard estimate, "
        "or for `dedup.semantic` the cosine similarity of the two embeddings)",
        "related_doc_id": "dedup: the cluster's kept document",
        "warc_file": "the WARC file of the record",
        "warc_offset": "byte offset of the record in its WARC file",
        "run_id": "the Dagster run",
        "word_count": "words of the document's text when it was rejected (a rewrite: of its output); null where there "
        "was no text yet (ingest, and filter rejections ahead of extraction)",
        **_CRAWL_DOC,
        "stage": "partition: the stage that rejected (`ingest`, `filter`, `dedup`, `rewrite`, `decontam`)",
    },
    "filtered": {
        **{c: f"{d} (from `raw_crawl`)" for c, d in _PROVENANCE_DOCS.items()},
        "text": "extracted main text, after C4's line removals and with PII replaced by `<EMAIL>` / `<IP_ADDRESS>`",
        **_SIGNAL_DOCS,
        **_CRAWL_DOC,
    },
    "dedup_clusters": {
        "doc_id": "a document of the crawl in a cluster of two or more",
        "cluster_id": "the cluster (= its kept document's `doc_id`)",
        "kept": "whether this document is the cluster's kept copy",
        "reason": "`dedup.exact`, `dedup.near` or `dedup.semantic` for a removed document",
        "jaccard": "Jaccard similarity to the kept document, estimated from the two MinHash signatures "
        "(`dedup.semantic`: the cosine similarity of the two embeddings)",
        "cluster_size": "documents in the cluster, this crawl's and earlier crawls'",
        **_CRAWL_DOC,
    },
    "dedup_signatures": {
        "doc_id": "a kept document",
        "seq": "the order in which crawls were deduplicated",
        "exact_hash": "64-bit hash of the normalised text",
        "quality": "the value of `dedup.keep.quality_column` (which copy of a cluster is kept)",
        "warc_date": "WARC-Date (UTC)",
        "minhash": "MinHash signature (112 × int32)",
        "band_keys": "LSH band keys (14 × int64)",
        "embedding": "unit embedding of the text (`dedup.semantic`; null when that pass was off)",
        "embedding_model": "the model that made `embedding` (only embeddings of the same model are compared)",
        **_CRAWL_DOC,
    },
    "quality_scored": {
        "doc_id": "the document (of `deduplicated`)",
        "model_uri": "JSON by scorer: the model each score came from",
        "model_version": "JSON by scorer: its registry version (null when not from the registry)",
        **_CRAWL_DOC,
    },
    "rewritten": {
        "doc_id": "the rewrite's own id",
        "source_doc_id": "the document rewritten",
        "url": "the source document's URL",
        "text": "the rewritten text",
        "rewriter_model": "the generative model",
        "prompt_version": "the versioned prompt (`gpu_jobs/prompts/<version>.<style>.txt`)",
        "style": "the rewriting format: `article`, `qa`, `student` or `summary` (a keyed hash of doc_id and seed)",
        "generation_params": "JSON: sampling parameters and the limits applied (the CPU caps)",
        "score_before": "the source's score by `rewrite.score_column`",
        "score_after": "the rewrite's score by the same scorer",
        "scores_after": "JSON: the rewrite's score by every configured scorer",
        "source_words": "words of the source the model was given (after `max_input_words`)",
        "output_words": "words of the rewrite",
        "new_tokens": "tokens the model generated",
        "facts_kept": "share of the source's numbers, URLs and named entities the rewrite keeps (null: the source has none)",
        "invented_facts": "numbers, URLs and named entities of the rewrite absent from its source (within the gate's tolerance)",
        **_CRAWL_DOC,
    },
    "decontaminated": {
        "doc_id": "the document",
        "source": "its text layer: `deduplicated` or `rewritten`",
        "source_doc_id": "the document itself, or a rewrite's source",
        "url": "its URL",
        "text": "its text",
        "language": "ISO 639-1 code",
        "word_count": "words of `text`",
        "warc_file": "the WARC file it came from",
        "warc_offset": "byte offset of its record in that file",
        **_CRAWL_DOC,
    },
    "mixed": {
        "doc_id": "the document",
        "repeat": "0-based epoch of this copy",
        "source": "the mixture's bucket",
        "origin": "the text layer: `deduplicated` or `rewritten`",
        "source_doc_id": "the document itself, or a rewrite's source",
        "crawl_id": "the crawl it came from",
        "url": "its URL",
        "text": "its text",
        "token_count": "tokens of `text` by the mixture's tokenizer",
        "mixture_name": "partition: the configured mixture",
    },
    "takedowns": {
        "takedown_id": "`td-<time>-<hex>`; also in the commit info of every commit the takedown made",
        "kind": "`url`, `domain` or `doc_id`",
        "target": "the domain (a URL or id is not kept in clear)",
        "target_sha256": "SHA-256 of what was named",
        "url_sha256": "SHA-256 of the URL of every document removed: what ingest matches",
        "doc_sha256": 'SHA-256 of every document id removed: `sluice trace ID` still answers "taken down" for them',
        "reason": "why",
        "ticket": "the tracking ticket",
        "requested_at": "when",
        "documents": "documents in the closure",
        "rows_removed": "JSON per table: rows removed, the version after, old files purged",
        "files_purged": "old data files deleted",
        "files_scrubbed": "other files rewritten or deleted to remove the text",
        "exports_flagged": "JSON: each export rewritten without the documents (documents and tokens removed)",
    },
}
COLUMN_DOCS["deduplicated"] = {
    **COLUMN_DOCS["filtered"],
    "exact_hash": "64-bit hash of the normalised text: lower case, punctuation trimmed from words, single spaces",
    "dup_cluster_id": "the cluster (= the kept document's `doc_id`)",
    "dup_cluster_size": "documents in the cluster, this crawl's and earlier crawls'",
}


def readme_contract() -> str:
    """The README's column reference, rendered from the contract (a test keeps the README equal to it):
    ``python -m storage.tables`` prints it."""
    out = []
    for t in TABLES.values():
        part = f", partitioned by {', '.join(f'`{c}`' for c in t.partition_by)}" if t.partition_by else ", unpartitioned"
        out += [f"**`{t.name}`** — {t.description}{part}; written by {t.stage}.", "", "| column | type | meaning |", "|---|---|---|"]
        cols = [
            *t.columns[:1],
            *([("<scorer>", pa.float64()), ("<scorer>_label", pa.string())] if t.extra_columns else []),
            *t.columns[1:],
            *[(c, pa.string()) for c in t.partition_by],
        ]
        out += [f"| `{c}` | {typ} | {t.describe(c)} |" for c, typ in cols]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(readme_contract(), end="")
