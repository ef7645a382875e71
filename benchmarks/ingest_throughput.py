"""WARC ingestion throughput: Sluice's raw_crawl stage vs a one-process warcio loop, same files.

    .venv/bin/python benchmarks/ingest_throughput.py --pages 20000

Both sides read every record of the same generated crawl, keep HTTP 200 HTML responses and write
them as Parquet (Sluice: Spark on 2 cores, Delta commit through delta-rs, rejections table too;
peer: warcio + pyarrow in one process, the way a batch script would do it). Prints records/s, MB/s,
peak memory of each side (all processes) and the ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure


def run_sluice(spark, crawl: Path, lake: Path) -> dict:
    """The raw_crawl stage's work (as the asset does it, minus gate and lineage)."""
    from spark_jobs import warc_ingest as ingest
    from storage import warc
    from storage.delta_table import Transaction
    from storage.tables import RAW_CRAWL, REJECTIONS

    opts = warc.IngestOptions()
    files = warc.discover_warc_files(crawl, opts.file_globs)
    with (
        Transaction(lake / "raw_crawl", {"crawl_id": crawl.name}) as dt,
        Transaction(lake / "rejections", {"crawl_id": crawl.name, "stage": "ingest"}) as rt,
    ):
        summary = ingest.ingest_warc_files(spark, files, opts, dt.staging_uri, rt.staging_uri, "bench")
        docs = dt.commit("replace", empty_schema=RAW_CRAWL.schema())
        rej = rt.commit("replace", empty_schema=REJECTIONS.schema())
    return {"records": summary.records_read, "documents": docs.rows, "rejected": rej.rows}


def run_warcio(crawl: Path, out: Path) -> dict:
    """The peer: what a straightforward single-process script does with warcio."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from warcio.archiveiterator import ArchiveIterator

    out.mkdir(parents=True, exist_ok=True)
    records = docs = 0
    cols: dict[str, list] = {"url": [], "warc_record_id": [], "html": []}
    writer = None
    for f in sorted(crawl.glob("*.warc.gz")):
        with f.open("rb") as fh:
            try:
                for rec in ArchiveIterator(fh):
                    records += 1
                    if rec.rec_type != "response" or rec.http_headers is None:
                        continue
                    if rec.http_headers.get_statuscode() != "200":
                        continue
                    if (rec.http_headers.get_header("Content-Type") or "").split(";")[0].strip() != "text/html":
                        continue
                    body = rec.content_stream().read()
                    cols["url"].append(rec.rec_headers.get_header("WARC-Target-URI"))
                    cols["warc_record_id"].append(rec.rec_headers.get_header("WARC-Record-ID"))
                    cols["html"].append(body)
                    docs += 1
                    if len(cols["url"]) >= 1024:
                        t = pa.table(cols)
                        writer = writer or pq.ParquetWriter(out / "part.parquet", t.schema, compression="zstd")
                        writer.write_table(t)
                        cols = {k: [] for k in cols}
            except Exception:  # noqa: BLE001 - warcio stops at a cut gzip member; count it and go on
                records += 1
    if cols["url"]:
        t = pa.table(cols)
        writer = writer or pq.ParquetWriter(out / "part.parquet", t.schema, compression="zstd")
        writer.write_table(t)
    if writer:
        writer.close()
    return {"records": records, "documents": docs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=20000)
    # Real Common Crawl WARC files hold ~40k records; 5,000 pages (15k records) per file keeps
    # Spark's per-task overhead (~70 ms a task here) small, as it is on real crawls.
    ap.add_argument("--pages-per-file", type=int, default=5000)
    ap.add_argument("--crawl", help="an existing crawl folder instead of a generated one")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    from sample_crawl import generate_crawl
    from spark_jobs.session import SparkSettings, build_spark

    work = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    try:
        if args.crawl:
            crawl = Path(args.crawl).resolve()
        else:
            crawl = work / "bench-crawl"
            print(f"generating {args.pages} pages ...", file=sys.stderr)
            generate_crawl(crawl, args.pages, seed=1, pages_per_file=args.pages_per_file)
        mb = sum(f.stat().st_size for f in crawl.glob("*.warc*")) / 1e6

        spark = build_spark(SparkSettings(master=f"local[{args.cores}]", show_progress=False))
        # Warm-up on a small crawl of several files, so that JVM and Python-worker start-up (paid
        # once per Spark application, not per crawl) is not billed to the measurement.
        warm = work / "warm"
        generate_crawl(warm, 200, seed=2, pages_per_file=200 // (2 * args.cores))
        run_sluice(spark, warm, work / "warm-lake")

        with measure() as ms:
            s = run_sluice(spark, crawl, work / "lake")
        spark.stop()
        with measure() as mw:
            w = run_warcio(crawl, work / "warcio-out")

        rows = [
            (f"sluice raw_crawl (Spark local[{args.cores}] + Delta)", s, ms),
            ("warcio + pyarrow, 1 process", w, mw),
        ]
        print(f"\ninput: {crawl} — {mb:.1f} MB compressed, {s['records']} WARC records, {s['documents']} HTML documents\n")
        print(f"{'side':45s} {'seconds':>8s} {'records/s':>10s} {'MB/s':>7s} {'docs':>7s} {'peak RSS MB':>12s}")
        for name, r, m in rows:
            print(
                f"{name:45s} {m.seconds:8.2f} {r['records'] / m.seconds:10.0f} {mb / m.seconds:7.2f} {r['documents']:7d} {m.peak_rss_mb:12.0f}"
            )
        print(f"\nratio sluice/warcio: {mw.seconds / ms.seconds:.2f}x records/s; memory {ms.peak_rss_mb / mw.peak_rss_mb:.2f}x")
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "input_mb": mb,
                        "records": s["records"],
                        "documents": s["documents"],
                        "sluice": {"seconds": ms.seconds, "peak_rss_mb": ms.peak_rss_mb},
                        "warcio": {"seconds": mw.seconds, "peak_rss_mb": mw.peak_rss_mb},
                    },
                    indent=2,
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
