"""``raw_crawl`` (bronze): every HTTP 200 HTML response of a crawl snapshot's WARC files.

Every other record goes to ``rejections`` (stage ``ingest``) with its reason — a response whose URL
or domain was taken down (the ``takedowns`` table) with reason ``takedown``; the blocking gate
checks the staged table and that records read = documents + rejections.
"""

from dagster import Failure, MetadataValue

from assets.stage import Outcome, StageContext, StageSpec
from documents.blocklist import Blocklist
from quality.suites import accounting_row, raw_crawl_gate
from spark_jobs.warc_ingest import ingest_warc_files
from storage import tables as T
from storage.delta_table import current_version, read_arrow, table_exists
from storage.warc import discover_warc_files

SPEC = StageSpec(
    name="raw_crawl",
    description=__doc__,
    group="bronze",
    kinds=("spark", "delta"),
    options=lambda cfg: {"ingest": cfg.ingest},
    outputs=(T.RAW_CRAWL, T.REJECTIONS),
    rejection_stage=T.INGEST,
    gate_description="Great Expectations: schema, ids, conservation",
    preview_columns=("doc_id", "url", "content_type", "content_length", "warc_file", "warc_offset"),
    resources=("lakehouse", "lineage", "spark"),
    automation=None,  # the landing sensor requests it for every new crawl folder
)


def takedown_blocklist(uri) -> Blocklist:
    """What `sluice takedown` removed, refused again at ingest (reason ``takedown``)."""
    return Blocklist.from_rows(read_arrow(uri).to_pylist()) if table_exists(uri) else Blocklist()


def work(ctx: StageContext) -> Outcome:
    opts = ctx.options["ingest"]
    folder = ctx.lakehouse.crawl_dir(ctx.crawl_id)
    files = discover_warc_files(folder, opts.file_globs) if folder.is_dir() else []
    if not files:
        raise Failure(
            description=f"crawl {ctx.crawl_id}: no WARC files matching {opts.file_globs} in {folder}",
            metadata={"landing_dir": MetadataValue.path(str(folder))},
            allow_retries=False,
        )
    input_bytes = sum(f.size for f in files)
    ctx.log.info(f"crawl {ctx.crawl_id}: {len(files)} WARC files, {input_bytes / 1e6:.1f} MB")
    ctx.run.log_params({"crawl_dir": str(folder), "warc_files": len(files)})
    blocklist = takedown_blocklist(ctx.lakehouse.uri(T.TAKEDOWNS.name))
    if blocklist:
        ctx.read_input(T.TAKEDOWNS.name, current_version(ctx.lakehouse.uri(T.TAKEDOWNS.name)))
        ctx.log.info(f"blocklist: {len(blocklist.hashes)} URLs/documents and {len(blocklist.domains)} domains taken down")
    summary = ingest_warc_files(
        ctx.spark, files, opts, ctx.output("raw_crawl").staging_uri, ctx.output("rejections").staging_uri, ctx.dagster.run_id, blocklist
    )
    for s in summary.unreadable:
        ctx.log.warning(
            f"{s['warc_file']}: a damaged WARC file, counted as an `unreadable` rejection (the records before the "
            f"damage are kept): {s['detail']}"
        )
    docs, rejected = ctx.output("raw_crawl").staged_rows(), ctx.output("rejections").staged_rows()
    return Outcome(
        gate=raw_crawl_gate(T.RAW_CRAWL.schema().names),
        accounting=accounting_row(summary.records_read, documents=docs, rejected=rejected),
        documents_in=summary.records_read,
        reasons=summary.reasons,
        metrics={
            "records_read": summary.records_read,
            "warc_files": len(files),
            "unreadable_files": len(summary.unreadable),
            "input_mb": input_bytes / 1e6,
        },
        metadata={"records_read": summary.records_read, "warc_files": len(files), "input_mb": round(input_bytes / 1e6, 2)},
    )
