"""raw_crawl → filtered throughput: Sluice vs DataTrove, same WARC input, same 2 cores, one run.

    .venv/bin/pip install -e '.[bench]'        # datatrove and what its reader/tokenizer import
    .venv/bin/python benchmarks/filter_throughput.py --records 20000

Input: the 1,032 real pages of ../shared/data/html/trafilatura-eval packed into WARC response
records, replicated to ``--records`` (each copy under its own URL and record id).

Both sides do the same work: read WARC → extract main text → Gopher repetition → Gopher quality →
C4 (terminal-punctuation rule off) → FineWeb rules, and write the kept documents. DataTrove's URL
and language filters download models at run time and cannot run here, so URL filter, language ID
and PII redaction are off on Sluice's side too. DataTrove runs its extractor in a subprocess with a
per-page timeout; the timeout is raised to ``--timeout`` seconds and its stats are printed, so that
pages counted as processed were really extracted.

Comparisons: Sluice's default extractor vs DataTrove (Trafilatura, its FineWeb setup), and
Trafilatura on both sides. Sluice, like DataTrove, extracts in a child process with a per-page time
limit by default; the same run with extraction in-process (``extract.max_seconds: 0``) prices that.

``--language``: a third comparison with FineWeb's English filter after extraction on both sides,
with the same offline model (Sluice's ``LanguageIdentifier``, langid, score ≥ 0.65; in DataTrove a
filter step calling it where its LanguageFilter would download fastText's model). Most of these
pages are not English (about 80%), more than in a Common Crawl snapshot (about 55%).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure  # noqa: E402

PAGES = ROOT.parent / "shared" / "data" / "html" / "trafilatura-eval" / "pages"


def pack_warcs(out: Path, records: int, per_file: int) -> int:
    from warcio.warcwriter import WARCWriter

    pages = [gzip.open(p).read() for p in sorted(PAGES.glob("*.html.gz"))]
    out.mkdir(parents=True, exist_ok=True)
    for fi in range(-(-records // per_file)):
        with (out / f"bench-{fi:04d}.warc.gz").open("wb") as fh:
            w = WARCWriter(fh, gzip=True)
            for i in range(fi * per_file, min(records, (fi + 1) * per_file)):
                body = pages[i % len(pages)]
                http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(body) + body
                w.write_record(
                    w.create_warc_record(
                        f"https://bench-{i % 97}.example/page/{i}",
                        "response",
                        payload=io.BytesIO(http),
                        length=len(http),
                        warc_content_type="application/http; msgtype=response",
                        warc_headers_dict={
                            "WARC-Record-ID": f"<urn:uuid:{uuid.UUID(int=i + 1)}>",
                            "WARC-Date": "2024-05-01T00:00:00Z",
                            "WARC-Identified-Payload-Type": "text/html",
                        },
                    )
                )
    return len(pages)


def sluice_options(backend: str, max_seconds: float | None = None, language: bool = False):
    from documents.extract import ExtractOptions
    from documents.rules import FilterOptions

    extract = {"backend": backend, "max_seconds": ExtractOptions().max_seconds if max_seconds is None else max_seconds}
    return FilterOptions(url={"enabled": False}, language={"enabled": language}, pii={"enabled": False}, extract=extract)


def run_sluice(spark, crawl: Path, lake: Path, backend: str, max_seconds: float | None = None, language: bool = False) -> dict:
    from spark_jobs import warc_ingest as ingest
    from spark_jobs.filter_job import filter_documents
    from storage import warc
    from storage.delta_table import Transaction, snapshot_files
    from storage.tables import RAW_CRAWL, REJECTIONS

    opts = warc.IngestOptions()
    files = warc.discover_warc_files(crawl, opts.file_globs)
    part = {"crawl_id": crawl.name}
    with Transaction(lake / "raw_crawl", part) as dt, Transaction(lake / "rejections", {**part, "stage": "ingest"}) as rt:
        ingest.ingest_warc_files(spark, files, opts, dt.staging_uri, rt.staging_uri, "bench")
        raw = dt.commit("replace", empty_schema=RAW_CRAWL.schema())
        rt.commit("replace", empty_schema=REJECTIONS.schema())
    with Transaction(lake / "filtered", part) as kt, Transaction(lake / "rejections", {**part, "stage": "filter"}) as ft:
        paths = [f.path for f in snapshot_files(lake / "raw_crawl", raw.version, part)]
        s = filter_documents(spark, paths, sluice_options(backend, max_seconds, language), kt.staging_uri, ft.staging_uri, "bench")
        kept = kt.commit("replace")
        ft.commit("replace")
    return {"docs_in": raw.rows, "kept": kept.rows, "reasons": s.reasons}


def datatrove_language_filter():
    """FineWeb's LanguageFilter step (English, score ≥ 0.65) with Sluice's offline model: DataTrove's
    own downloads fastText's at run time."""
    from datatrove.pipeline.filters.base_filter import BaseFilter

    from documents.language import LanguageIdentifier, LanguageOptions

    class OfflineLanguageFilter(BaseFilter):
        name = "🌍 Language ID (langid, offline)"

        def __init__(self) -> None:
            super().__init__()
            self.o = LanguageOptions()
            self.ident = None

        def filter(self, doc) -> bool | tuple[bool, str]:
            if self.ident is None:
                self.ident = LanguageIdentifier(self.o)
            lang, score = self.ident.identify(doc.text)
            doc.metadata["language"], doc.metadata["language_score"] = lang, score
            return lang in self.o.languages and score >= self.o.min_score or (False, "language")

    return OfflineLanguageFilter()


def run_datatrove(crawl: Path, out: Path, workers: int, timeout: float, language: bool = False) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter

    n_files = len(list(crawl.glob("*.warc.gz")))
    ex = LocalPipelineExecutor(
        pipeline=[
            WarcReader(str(crawl), glob_pattern="*.warc.gz"),
            Trafilatura(favour_precision=True, timeout=timeout),
            *([datatrove_language_filter()] if language else []),
            GopherRepetitionFilter(),
            GopherQualityFilter(),
            C4QualityFilter(filter_no_terminal_punct=False),
            FineWebQualityFilter(),
            JsonlWriter(str(out / "output")),
        ],
        tasks=n_files,
        workers=workers,
        logging_dir=str(out / "logs"),
    )
    ex.run()
    stats = json.loads((out / "logs" / "stats.json").read_text())
    summary = {}
    for block in stats:
        name = block.get("name", "")
        st = block.get("stats", {})
        summary[name] = {k: (v if not isinstance(v, dict) else v.get("total", v)) for k, v in st.items() if not k.startswith("time")}
    kept = sum(1 for f in (out / "output").glob("*.jsonl*") for _ in gzip.open(f, "rt"))
    return {"kept": kept, "stats": summary}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--per-file", type=int, default=2500)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=30.0, help="DataTrove's per-page extraction timeout")
    ap.add_argument("--only", nargs="+", choices=["default", "trafilatura", "language"], help="run only these comparisons")
    ap.add_argument("--language", action="store_true", help="add the comparison with the English filter on both sides")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument(
        "--no-in-process", action="store_true", help="skip the in-process run (it prices the child process, not the comparison)"
    )
    args = ap.parse_args()
    if not PAGES.exists():
        print(f"{PAGES} is absent: nothing to benchmark", file=sys.stderr)
        return 0

    from documents.extract import ExtractOptions
    from spark_jobs.session import SparkSettings, build_spark

    work = Path(tempfile.mkdtemp(prefix="sluice-filter-bench-"))
    results: dict = {}
    try:
        crawl = work / "crawl"
        n_pages = pack_warcs(crawl, args.records, args.per_file)
        mb = sum(f.stat().st_size for f in crawl.glob("*.warc.gz")) / 1e6
        print(f"input: {args.records} WARC records from {n_pages} real pages, {mb:.0f} MB, {args.cores} cores", file=sys.stderr)
        spark = build_spark(SparkSettings(master=f"local[{args.cores}]", show_progress=False))
        warm = work / "warm"
        pack_warcs(warm, 40, 10)
        run_sluice(spark, warm, work / "warm-lake", ExtractOptions().backend)

        # (label, backend, extract.max_seconds, English filter): the default extracts in a child
        # process per worker with a time limit; the in-process run (0) prices that isolation.
        default = ExtractOptions().backend
        comparisons = [
            ("default", default, None, False),
            ("default", f"{default}, in-process", 0.0, False),
            ("trafilatura", "trafilatura", None, False),
            ("language", f"{default}, English only", None, True),
        ]
        wanted = set(args.only) if args.only else {"default", "trafilatura"} | ({"language"} if args.language else set())
        sluice_runs = {}
        for label, backend, max_seconds, language in comparisons:
            if label not in wanted or (args.no_in_process and max_seconds == 0.0):
                continue
            with measure() as m:
                r = run_sluice(spark, crawl, work / f"lake-{label}-{max_seconds}", backend.split(",")[0], max_seconds, language)
            sluice_runs[backend] = (r, m)
            print(f"sluice[{backend}]: {m.seconds:.1f}s, kept {r['kept']} of {r['docs_in']}", file=sys.stderr)
        spark.stop()
        peers = {}  # English filter or not → (DataTrove's result, its measurement)
        for language in sorted({lang for label, _, _, lang in comparisons if label in wanted}):
            with measure() as md:
                dt = run_datatrove(crawl, work / f"datatrove-{language}", args.cores, args.timeout, language)
            peers[language] = (dt, md)
            print(f"datatrove[trafilatura{', English only' if language else ''}]: {md.seconds:.1f}s, kept {dt['kept']}", file=sys.stderr)

        print(f"\n{'side':50s} {'seconds':>8s} {'docs/s':>8s} {'kept':>7s} {'peak RSS MB':>12s}")
        for _label, backend, _, _ in comparisons:
            if backend in sluice_runs:
                r, m = sluice_runs[backend]
                print(f"{'sluice, ' + backend:50s} {m.seconds:8.1f} {args.records / m.seconds:8.1f} {r['kept']:7d} {m.peak_rss_mb:12.0f}")
        for language, (dt, md) in peers.items():
            side = f"datatrove, trafilatura{', English only' if language else ''} (2 workers)"
            print(f"{side:50s} {md.seconds:8.1f} {args.records / md.seconds:8.1f} {dt['kept']:7d} {md.peak_rss_mb:12.0f}")
        print()
        for _label, backend, _, language in comparisons:
            if backend in sluice_runs and language in peers:
                peer = f"trafilatura{', English only' if language else ''}"
                print(
                    f"ratio sluice[{backend}] / datatrove[{peer}]: {peers[language][1].seconds / sluice_runs[backend][1].seconds:.2f}x docs/s"
                )
        dt, md = next(iter(peers.values()))
        ext = {k: v for k, v in dt["stats"].items() if "Trafilatura" in k or "xtract" in k}
        print(f"datatrove extractor stats (timeouts must be 0): {json.dumps(ext)}")
        results = {
            "records": args.records,
            "input_mb": mb,
            "sluice": {
                backend: {"seconds": m.seconds, "kept": r["kept"], "peak_rss_mb": m.peak_rss_mb} for backend, (r, m) in sluice_runs.items()
            },
            "datatrove": {
                ("English only" if language else "all languages"): {
                    "seconds": md.seconds,
                    "kept": dt["kept"],
                    "peak_rss_mb": md.peak_rss_mb,
                    "stats": dt["stats"],
                }
                for language, (dt, md) in peers.items()
            },
        }
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
