"""Crawls of every awkward shape, written as real WARC files into one landing folder.

A pipeline that only ever saw the generated sample crawl (thousands of pages, duplicates in every
stage) met its first real crawl and failed: no duplicates, one page, nothing at all. These builders
make each shape from real pages of ``../shared/data`` where they exist (the trafilatura evaluation
pages), else from generated article pages, so the tests run without the shared data too.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import uuid
from pathlib import Path

SHARED_PAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "html" / "trafilatura-eval" / "pages"
# The team's hand labels name the English pages worth training on (label 1): real pages the filters keep.
LABELS = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "quality_labels.tsv"

# A benchmark item the `all-contaminated` crawl quotes (long enough for 13-gram matching).
EVAL_ITEMS = [
    "A farmer has seventeen sheep and all but nine run away through a hole in the fence, so how many sheep does the farmer still "
    "have in the field after the evening count is finished",
    "Natalia sold clips to forty eight of her friends in April and then she sold half as many clips in May, how many clips did "
    "Natalia sell altogether in April and May of that year",
]


def _record(writer, url: str, body: bytes, content_type: str = "text/html; charset=utf-8", n: int = 0) -> None:
    from warcio.statusandheaders import StatusAndHeaders  # noqa: F401 - warcio is the writer

    http = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (content_type.encode(), len(body)) + body
    writer.write_record(
        writer.create_warc_record(
            url,
            "response",
            payload=io.BytesIO(http),
            length=len(http),
            warc_content_type="application/http; msgtype=response",
            warc_headers_dict={
                "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url + str(n))}>",
                "WARC-Date": "2026-03-01T00:00:00Z",
            },
        )
    )


def _warc(path: Path, records: list[tuple[str, bytes, str]], warcinfo: bool = True) -> None:
    from warcio.warcwriter import WARCWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        w = WARCWriter(fh, gzip=True)
        if warcinfo:
            w.write_record(w.create_warcinfo_record(path.name, {"software": "sluice-tests", "format": "WARC File Format 1.1"}))
        for i, (url, body, ctype) in enumerate(records):
            _record(w, url, body, ctype, i)


def _article(seed: int) -> bytes:
    from sample_crawl import text as T
    from sample_crawl.generator import _render

    rng = random.Random(seed)
    title, paras = T.article(rng)
    return _render(f"site{seed}.example", title, paras, rng)


def real_pages(n: int) -> list[bytes]:
    """``n`` different pages: real ones from the shared data when present, else generated articles."""
    if SHARED_PAGES.is_dir():
        good = [line.split("\t")[0] for line in LABELS.read_text().splitlines() if line.endswith("\t1") and "/" not in line]
        files = [SHARED_PAGES / f"{g}.html.gz" for g in good if (SHARED_PAGES / f"{g}.html.gz").exists()][:n]
        if len(files) == n:
            return [gzip.open(f).read() for f in files]
    return [_article(1000 + i) for i in range(n)]


def _html(text: str) -> bytes:
    return f"<html><head><title>{text[:30]}</title></head><body><article><p>{text}</p></article></body></html>".encode()


def build_shapes(landing: Path, distinct: int = 25) -> dict[str, Path]:
    """Write one crawl folder per shape; returns {shape: folder}. Every shape's folder name is its crawl id."""
    # dedup is across crawls: the pages of one shape appear in no other
    pages = real_pages(distinct + 2)
    single, copied, pages = pages[-1], pages[-2], pages[:distinct]
    shapes: dict[str, list[tuple[str, bytes, str]]] = {
        # real pages, no two alike
        "no-dups": [(f"https://news{i}.example/story/{i}", p, "text/html; charset=utf-8") for i, p in enumerate(pages)],
        # one page served under twelve URLs: dedup keeps one
        "all-dups": [(f"https://mirror{i}.example/copy", copied, "text/html; charset=utf-8") for i in range(12)],
        # twenty twelve-word stubs: every one dropped by the quality rules
        "all-rejected": [
            (
                f"https://stub{i}.example/",
                _html(f"Welcome to stub page number {i} please log in to continue reading this."),
                "text/html; charset=utf-8",
            )
            for i in range(20)
        ],
        "one-page": [("https://single.example/only", single, "text/html; charset=utf-8")],
        # a WARC with only its warcinfo record
        "empty": [],
        # responses that are not HTML: ingest rejects every one
        "non-html": [
            (f"https://static{i}.example/asset{i}", body, ctype)
            for i, (body, ctype) in enumerate(
                [
                    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "image/png"),
                    (b"body { color: red; }\n" * 50, "text/css"),
                    (json.dumps({"k": list(range(100))}).encode(), "application/json"),
                ]
            )
        ],
    }
    out = {}
    for name, records in shapes.items():
        folder = landing / name
        _warc(folder / f"{name}-00000.warc.gz", records)
        out[name] = folder
    # every page quotes a benchmark item inside an otherwise ordinary article: decontamination removes all
    quoting = []
    for i, item in enumerate(EVAL_ITEMS * 2):
        body = _article(5000 + i).replace(b"</article>", f"<p>As the exercise asks: {item}.</p></article>".encode(), 1)
        quoting.append((f"https://quiz{i}.example/q", body, "text/html; charset=utf-8"))
    _warc(landing / "all-contaminated" / "all-contaminated-00000.warc.gz", quoting)
    out["all-contaminated"] = landing / "all-contaminated"
    return out


def write_eval_set(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"question": q}) + "\n" for q in EVAL_ITEMS))
    return path
