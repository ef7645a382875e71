"""The table contract: every table's name, Arrow schema, partitioning and owning stage, the stage
names used as `rejections` partitions, and the lakehouse's sub-folders. Jobs write these schemas,
gates check them, the Dagster metadata shows them, and a test holds the README to them.

No Spark and no Dagster here: Spark tasks, GPU programs, assets and the CLI all read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa

from documents.rules import PROVENANCE, SIGNAL_COLUMNS

Columns = list[tuple[str, pa.DataType]]


# ---- stages: the `stage` partition of `rejections` ------------------------------------------------

INGEST = "ingest"
FILTER = "filter"
DEDUP = "dedup"
REWRITE = "rewrite"
DECONTAM = "decontam"
TAKEDOWN = "takedown"  # the reason ingest gives a record whose URL or domain was taken down


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
    name: str
    columns: Columns  # data columns, in file order (partition columns excluded)
    partition_by: tuple[str, ...]
    stage: str  # the asset that writes it
    description: str
    # Columns that depend on the writing stage's options (quality_scored: one pair per scorer), and
    # the config section those options are (``scoring``).
    extra_columns: Callable[[object], Columns] | None = field(default=None, compare=False)
    options_key: str | None = None

    def data_schema(self, options: object = None) -> pa.Schema:
        extra = self.extra_columns(options) if self.extra_columns is not None and options is not None else []
        return pa.schema(self.columns[:1] + extra + self.columns[1:] if extra else self.columns)

    def schema(self, options: object = None) -> pa.Schema:
        """The Delta table's schema: data columns, then the partition columns (strings)."""
        return pa.schema(list(self.data_schema(options)) + [(c, pa.string()) for c in self.partition_by])


_TS = pa.timestamp("us", tz="UTC")

RAW_CRAWL_COLUMNS: Columns = [
    ("doc_id", pa.string()), ("url", pa.string()), ("host", pa.string()), ("warc_date", _TS),
    ("warc_record_id", pa.string()), ("warc_file", pa.string()), ("warc_offset", pa.int64()),
    ("content_type", pa.string()), ("charset", pa.string()), ("http_status", pa.int32()),
    ("payload_digest", pa.string()), ("content_length", pa.int64()), ("html", pa.binary()),
]
# One audit table for every stage; stage-specific columns stay null where they do not apply.
REJECTION_COLUMNS: Columns = [
    ("doc_id", pa.string()), ("url", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
    ("value", pa.float64()), ("related_doc_id", pa.string()), ("warc_file", pa.string()),
    ("warc_offset", pa.int64()), ("run_id", pa.string()),
]
FILTERED_COLUMNS: Columns = [*[c for c in RAW_CRAWL_COLUMNS if c[0] in PROVENANCE], ("text", pa.string()), *SIGNAL_COLUMNS]
DEDUPLICATED_COLUMNS: Columns = FILTERED_COLUMNS + [
    ("exact_hash", pa.int64()), ("dup_cluster_id", pa.string()), ("dup_cluster_size", pa.int64()),
]
CLUSTER_COLUMNS: Columns = [
    ("doc_id", pa.string()), ("cluster_id", pa.string()), ("kept", pa.bool_()), ("reason", pa.string()),
    ("jaccard", pa.float64()), ("cluster_size", pa.int64()),
]
SIGNATURE_COLUMNS: Columns = [
    ("doc_id", pa.string()), ("seq", pa.int64()), ("exact_hash", pa.int64()), ("quality", pa.float64()),
    ("warc_date", _TS), ("minhash", pa.list_(pa.int32())), ("band_keys", pa.list_(pa.int64())),
]
QUALITY_SCORED_COLUMNS: Columns = [("doc_id", pa.string()), ("model_uri", pa.string()), ("model_version", pa.string())]
REWRITTEN_COLUMNS: Columns = [
    ("doc_id", pa.string()), ("source_doc_id", pa.string()), ("url", pa.string()), ("text", pa.string()),
    ("rewriter_model", pa.string()), ("prompt_version", pa.string()), ("generation_params", pa.string()),
    ("score_before", pa.float64()), ("score_after", pa.float64()), ("source_words", pa.int64()), ("output_words", pa.int64()),
]

# Every text layer a mixture may draw from, after benchmark decontamination, in one shape.
DECONTAMINATED_COLUMNS: Columns = [
    ("doc_id", pa.string()), ("source", pa.string()), ("source_doc_id", pa.string()), ("url", pa.string()), ("text", pa.string()),
    ("language", pa.string()), ("word_count", pa.int64()), ("warc_file", pa.string()), ("warc_offset", pa.int64()),
]

# One row per (document, repeat) of a training mixture.
MIXED_COLUMNS: Columns = [
    ("doc_id", pa.string()), ("repeat", pa.int64()), ("source", pa.string()), ("origin", pa.string()), ("source_doc_id", pa.string()),
    ("crawl_id", pa.string()), ("url", pa.string()), ("text", pa.string()), ("token_count", pa.int64()),
]


def preview_cell(value: object, width: int = 80) -> str:
    """How a value appears in an asset's Markdown preview (a takedown scrubs exactly this form)."""
    return str(value)[:width].replace("|", "\\|").replace("\n", " ")


def score_columns(scoring_options: object) -> Columns:
    """``<name>`` (the score) and ``<name>_label`` for each configured scorer, then each ensemble."""
    out: Columns = []
    for c in [*scoring_options.classifiers, *getattr(scoring_options, "ensembles", [])]:  # type: ignore[attr-defined]
        out += [(c.name, pa.float64()), (f"{c.name}_label", pa.string())]
    return out


_CRAWL = ("crawl_id",)
RAW_CRAWL = TableSpec("raw_crawl", RAW_CRAWL_COLUMNS, _CRAWL, "raw_crawl", "one row per HTTP 200 HTML response of a WARC file")
REJECTIONS = TableSpec("rejections", REJECTION_COLUMNS, ("crawl_id", "stage"), "every stage",
                       "why a record or document left the corpus, at which stage")
FILTERED = TableSpec("filtered", FILTERED_COLUMNS, _CRAWL, "filtered", "documents that passed every filter, with their signals")
DEDUPLICATED = TableSpec("deduplicated", DEDUPLICATED_COLUMNS, _CRAWL, "deduplicated",
                         "one document per exact or near-duplicate cluster, across every crawl deduplicated so far")
DEDUP_CLUSTERS = TableSpec("dedup_clusters", CLUSTER_COLUMNS, _CRAWL, "deduplicated",
                           "cluster membership of the crawl's documents in clusters of two or more")
DEDUP_SIGNATURES = TableSpec("dedup_signatures", SIGNATURE_COLUMNS, _CRAWL, "deduplicated",
                             "MinHash signature and band keys of every kept document (the index later crawls are checked against)")
QUALITY_SCORED = TableSpec("quality_scored", QUALITY_SCORED_COLUMNS, _CRAWL, "quality_scored",
                           "one row per document, one score column per configured scorer", extra_columns=score_columns,
                           options_key="scoring")
REWRITTEN = TableSpec("rewritten", REWRITTEN_COLUMNS, _CRAWL, "rewritten", "REWIRE-style rewrites of low-scoring documents")
DECONTAMINATED = TableSpec("decontaminated", DECONTAMINATED_COLUMNS, _CRAWL, "decontaminated",
                           "documents of every text layer (deduplicated, rewritten) with no benchmark n-gram overlap")

MIXED = TableSpec("mixed", MIXED_COLUMNS, ("mixture_name",), "mixed",
                  "one row per document and repeat of a training mixture; source = the mixture's bucket, origin = the text layer")

# One row per takedown. A URL or document id is kept only as its sha256 (what ingest's blocklist
# matches), so the record of a removal does not itself hold what was removed; a domain is kept as is.
TAKEDOWN_COLUMNS: Columns = [
    ("takedown_id", pa.string()), ("kind", pa.string()), ("target", pa.string()), ("target_sha256", pa.string()),
    ("url_sha256", pa.list_(pa.string())), ("doc_sha256", pa.list_(pa.string())),
    ("reason", pa.string()), ("ticket", pa.string()), ("requested_at", _TS), ("documents", pa.int64()),
    ("rows_removed", pa.string()), ("files_purged", pa.int64()), ("files_scrubbed", pa.int64()), ("exports_flagged", pa.string()),
]
TAKEDOWNS = TableSpec("takedowns", TAKEDOWN_COLUMNS, (), "sluice takedown",
                      "what was taken down, when, why (reason, ticket) and how many rows each table lost; ingest's blocklist")

TABLES: dict[str, TableSpec] = {t.name: t for t in (
    RAW_CRAWL, REJECTIONS, FILTERED, DEDUPLICATED, DEDUP_CLUSTERS, DEDUP_SIGNATURES, QUALITY_SCORED, REWRITTEN, DECONTAMINATED, MIXED,
    TAKEDOWNS)}
