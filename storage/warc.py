"""WARC files → raw HTML documents, with every other record counted and explained.

One reader per WARC file streams it record by record with FastWARC (never the whole file in
memory) and emits Arrow batches; no Spark here (the job that runs one reader per task is
``spark_jobs.warc_ingest``). Each output row is one of three kinds:

* ``doc``    — an HTTP 200 HTML response: a future ``raw_crawl`` row;
* ``reject`` — any other record, with the reason it is not a document;
* ``file``   — one per WARC file: how many records the reader saw, and whether it reached the end.

Keeping the three in one pass means the file is parsed once, and the ``file`` rows give the gate an
independent count to check conservation against (records read = documents + rejections).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
from pydantic import BaseModel, Field

from documents.blocklist import Blocklist
from storage.tables import NOT_RESPONSE, RAW_CRAWL_COLUMNS, TAKEDOWN


class IngestOptions(BaseModel):
    """What counts as a document, and how files are found and read."""

    file_globs: list[str] = Field(default_factory=lambda: ["*.warc", "*.warc.gz", "*.warc.zst", "*.arc.gz"])
    html_content_types: list[str] = Field(default_factory=lambda: ["text/html", "application/xhtml+xml"])
    # Common Crawl marks payloads cut at 1 MiB with WARC-Truncated; a cut page is not a faithful
    # document, so by default it is rejected (reason "truncated") rather than kept.
    keep_truncated: bool = False
    max_payload_bytes: int = 8 * 1024 * 1024
    # A page's size once its Content-Encoding is undone: a gzip/deflate/br body can expand 1000x
    # (a decompression bomb), so decoding stops at this many bytes (reason "decoded_too_large").
    max_decoded_bytes: int = 16 * 1024 * 1024
    batch_rows: int = 1024
    batch_bytes: int = 32 * 1024 * 1024


# ---- schemas --------------------------------------------------------------------------------------

UNIFIED_SCHEMA = pa.schema(
    [("kind", pa.string())]
    + RAW_CRAWL_COLUMNS
    + [("warc_type", pa.string()), ("reason", pa.string()), ("detail", pa.string()), ("records", pa.int64()), ("file_bytes", pa.int64())]
)


# ---- discovery ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WarcFile:
    path: str  # absolute
    rel: str  # relative to the crawl folder: what rows record
    size: int


def discover_warc_files(crawl_dir: str | Path, globs: list[str]) -> list[WarcFile]:
    root = Path(crawl_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"crawl folder {root} does not exist")
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for fn in files:
            if any(fnmatch.fnmatch(fn, g) for g in globs):
                p = Path(dirpath) / fn
                out.append(WarcFile(str(p), str(p.relative_to(root)), p.stat().st_size))
    return sorted(out, key=lambda f: f.rel)


# ---- per-record logic (pure, unit-tested) ------------------------------------------------------------


def make_doc_id(record_id: str | None, warc_file: str, offset: int) -> str:
    """Stable id: WARC-Record-IDs are globally unique by the spec; a record without one is
    identified by where it sits."""
    key = record_id or f"{warc_file}@{offset}"
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _clean_uri(uri: str | None) -> str | None:
    if uri is None:
        return None
    uri = uri.strip()
    if uri.startswith("<") and uri.endswith(">"):  # WARC 1.1 draft / ClueWeb style
        uri = uri[1:-1]
    return uri


def _host(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


class DecodedTooLarge(ValueError):
    """A Content-Encoding that expands past ``max_decoded_bytes``."""


def _decode_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo the Content-Encoding, never producing more than ``limit`` bytes (the decoders are
    asked for at most ``limit + 1``, so a bomb costs ``limit`` bytes of memory, not its full size)."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc in ("gzip", "x-gzip", "deflate"):
        if enc != "deflate" and not body.startswith(b"\x1f\x8b"):  # stored already decoded (ClueWeb, some proxies)
            return body
        for wbits in (16 + zlib.MAX_WBITS,) if enc != "deflate" else (zlib.MAX_WBITS, -zlib.MAX_WBITS):
            d = zlib.decompressobj(wbits)
            try:
                out = d.decompress(body, limit + 1)
            except zlib.error:
                if wbits == zlib.MAX_WBITS:  # deflate sent without its zlib header, as many servers do
                    continue
                raise
            break
        if len(out) > limit or d.unconsumed_tail:
            raise DecodedTooLarge(f"{enc} body expands past {limit} bytes ({len(body)} bytes encoded)")
        if not d.eof:
            raise ValueError(f"{enc} stream is cut short")
        return out
    if enc == "br":
        import brotli  # a dependency of the installed stack; only needed for br bodies

        d = brotli.Decompressor()
        out = d.process(body, output_buffer_limit=limit + 1)
        if len(out) > limit:
            raise DecodedTooLarge(f"br body expands past {limit} bytes ({len(body)} bytes encoded)")
        if not d.is_finished():
            raise ValueError("br stream is cut short")
        return out
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        nl = body.index(b"\r\n", pos)
        size = int(body[pos:nl].split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return bytes(out)
        start = nl + 2
        out += body[start : start + size]
        if start + size > len(body):
            raise ValueError("chunked body is cut short")
        pos = start + size + 2


def _provenance(rec_id, url, rel, offset, date, warc_type) -> dict[str, Any]:
    """Where a record came from: the columns every output row (document or rejection) carries."""
    return {
        "doc_id": make_doc_id(rec_id, rel, offset),
        "url": url,
        "host": _host(url),
        "warc_date": date,
        "warc_record_id": rec_id,
        "warc_file": rel,
        "warc_offset": offset,
        "warc_type": warc_type,
    }


class _Batcher:
    """Accumulates rows column-wise and flushes Arrow batches by row count or byte size."""

    def __init__(self, opts: IngestOptions) -> None:
        self.opts = opts
        self.names = UNIFIED_SCHEMA.names
        self._reset()

    def _reset(self) -> None:
        self.cols: dict[str, list[Any]] = {n: [] for n in self.names}
        self.nbytes = 0
        self.n = 0

    def add(self, **row: Any) -> pa.RecordBatch | None:
        for name in self.names:
            self.cols[name].append(row.get(name))
        html = row.get("html")
        self.nbytes += len(html) if html else 0
        self.n += 1
        if self.n >= self.opts.batch_rows or self.nbytes >= self.opts.batch_bytes:
            return self.flush()
        return None

    def flush(self) -> pa.RecordBatch | None:
        if not self.n:
            return None
        batch = pa.RecordBatch.from_pydict(self.cols, schema=UNIFIED_SCHEMA)
        self._reset()
        return batch


def read_warc_file(path: str, rel: str, size: int, opts: IngestOptions, blocklist: Blocklist | None = None) -> Iterator[pa.RecordBatch]:
    """Stream one WARC file into unified rows. Never raises for bad content: a record that cannot
    be used becomes a ``reject`` row, and a file the reader cannot finish ends with an
    ``unreadable`` reject row at the offset where it stopped. A response whose URL was taken down
    (``blocklist``) is rejected with reason ``takedown`` before its payload is read."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    html_types = set(opts.html_content_types)
    b = _Batcher(opts)
    records = 0
    last_offset = 0
    end_error: str | None = None

    def reject(rec_id, url, offset, reason, detail, warc_type=None, date=None):
        return b.add(kind="reject", **_provenance(rec_id, url, rel, offset, date, warc_type), reason=reason, detail=detail)

    try:
        # quirks_mode stays off: on FastWARC 2 it mis-reads ClueWeb's WARC/0.18 files, which the
        # strict reader handles.
        it = ArchiveIterator(path, parse_http=False, quirks_mode=False, auto_decode="none")
        for rec in it:
            records += 1
            offset = int(rec.stream_pos)
            last_offset = offset
            out = None
            try:
                out = _one_record(rec, rel, offset, opts, html_types, b, reject, WarcRecordType, blocklist)
            except Exception as e:  # noqa: BLE001 - a record we cannot understand is explained, never fatal
                out = reject(None, None, offset, "unparseable", f"{type(e).__name__}: {e}"[:500])
            if out is not None:
                yield out
    except Exception as e:  # noqa: BLE001 - the file ends early (cut gzip, bad record): counted as the file's end error
        end_error = f"{type(e).__name__}: {e}"[:500]
    if end_error is not None:
        out = reject(None, None, last_offset, "unreadable", f"reader stopped after {records} records: {end_error}")
        if out is not None:
            yield out
    last = b.flush()
    if last is not None:
        yield last
    fb = b.add(
        kind="file",
        warc_file=rel,
        records=records + (1 if end_error is not None else 0),
        file_bytes=size,
        reason="unreadable" if end_error else None,
        detail=end_error,
    )
    yield fb if fb is not None else b.flush()  # type: ignore[misc]


class HttpResponse:
    """Status and headers of a stored HTTP response, parsed leniently.

    Hand-written on purpose: FastWARC's HTTP parser expects CRLF line ends and, on ClueWeb09's
    LF-only headers, swallows the page body into the headers. This parser accepts both.
    """

    __slots__ = ("status", "headers", "body")

    def __init__(self, block: bytes) -> None:
        ends = [i for i in (block.find(b"\r\n\r\n"), block.find(b"\n\n")) if i >= 0]
        if not ends:
            raise ValueError("no end of HTTP headers")
        cut = min(ends)
        sep = 4 if block[cut : cut + 4] == b"\r\n\r\n" else 2
        head = block[:cut].decode("latin-1")
        self.body = block[cut + sep :]
        lines = head.replace("\r\n", "\n").split("\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].upper().startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"bad status line {lines[0][:80]!r}")
        self.status = int(parts[1])
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            k, sep_, v = line.partition(":")
            if sep_:
                self.headers.setdefault(k.strip().lower(), v.strip())

    def get(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def mime(self) -> str:
        return _mime(self.get("content-type"))

    @property
    def charset(self) -> str | None:
        for param in (self.get("content-type") or "").split(";")[1:]:
            k, _, v = param.partition("=")
            if k.strip().lower() == "charset" and v.strip():
                return v.strip().strip("\"'").lower()
        return None


def _one_record(rec, rel, offset, opts, html_types, b, reject, WarcRecordType, blocklist=None):
    h = rec.headers
    rec_id = h.get("WARC-Record-ID")
    wtype = h.get("WARC-Type") or str(rec.record_type)
    url = _clean_uri(h.get("WARC-Target-URI"))
    date = rec.record_date
    if rec.record_type != WarcRecordType.response:
        return reject(rec_id, url, offset, NOT_RESPONSE, wtype, wtype, date)
    if blocklist and (takedown := blocklist.match(url)):
        return reject(rec_id, url, offset, TAKEDOWN, f"takedown {takedown}", wtype, date)
    if not (h.get("Content-Type") or "").lower().startswith("application/http"):
        return reject(rec_id, url, offset, "not_http", h.get("Content-Type"), wtype, date)
    if rec.content_length > opts.max_payload_bytes:
        return reject(rec_id, url, offset, "too_large", f"{rec.content_length} bytes", wtype, date)
    block = rec.reader.read()
    if len(block) < rec.content_length:
        return reject(rec_id, url, offset, "truncated", f"record block {len(block)} < Content-Length {rec.content_length}", wtype, date)
    try:
        http = HttpResponse(block)
    except ValueError as e:
        return reject(rec_id, url, offset, "unparseable", f"HTTP: {e}", wtype, date)
    if http.status != 200:
        loc = http.get("Location")
        return reject(rec_id, url, offset, "http_status", f"{http.status}" + (f" -> {loc}" if loc else ""), wtype, date)
    ctype = http.mime
    if ctype not in html_types:
        return reject(rec_id, url, offset, "not_html", ctype or "(no content type)", wtype, date)
    truncated = h.get("WARC-Truncated")
    if truncated and not opts.keep_truncated:
        return reject(rec_id, url, offset, "truncated", f"WARC-Truncated: {truncated}", wtype, date)
    body = http.body
    declared = http.get("Content-Length")
    tenc = (http.get("Transfer-Encoding") or "").lower()
    cenc = http.get("Content-Encoding")
    # Common Crawl stores decoded payloads and renames the headers to X-Crawler-*; ClueWeb stores
    # decoded payloads and keeps them; wget and Heritrix store what the server sent.
    if declared and declared.strip().isdigit() and not tenc and len(body) < int(declared) and not opts.keep_truncated:
        return reject(rec_id, url, offset, "truncated", f"payload {len(body)} < HTTP Content-Length {declared}", wtype, date)
    try:
        if "chunked" in tenc and _looks_chunked(body):
            body = _dechunk(body)
        body = _decode_body(body, cenc, opts.max_decoded_bytes)
    except DecodedTooLarge as e:
        return reject(rec_id, url, offset, "decoded_too_large", str(e), wtype, date)
    except Exception as e:  # noqa: BLE001 - any decoding failure is a counted rejection
        return reject(rec_id, url, offset, "undecodable_body", f"{cenc or tenc}: {e}"[:300], wtype, date)
    if not body.strip():
        return reject(rec_id, url, offset, "empty_payload", None, wtype, date)
    return b.add(
        kind="doc",
        **_provenance(rec_id, url, rel, offset, date, wtype),
        content_type=ctype,
        charset=http.charset,
        http_status=http.status,
        payload_digest=h.get("WARC-Payload-Digest"),
        content_length=len(body),
        html=body,
    )


def _looks_chunked(body: bytes) -> bool:
    line = body[:20].split(b"\r\n", 1)[0].split(b";")[0].strip()
    return bool(line) and all(c in b"0123456789abcdefABCDEF" for c in line)
