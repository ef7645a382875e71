"""Synthetic crawl generator: real ``.warc.gz`` files and a ground-truth sidecar.

A page's kind and content are a pure function of (seed, page index), so the same seed gives the
same crawl whatever the file split. Each WARC file starts with a warcinfo record; each fetched page
is a request, a response and a metadata record, each record its own gzip member (as Common Crawl
writes them). ``ground_truth.jsonl`` says what every response is and what ingestion should do with
it; ``crawl.json`` summarises the crawl; ``reference_corpus.jsonl`` holds clean explanatory texts
(not pages of the crawl), the positives the demo trains its quality classifier on.
"""

from __future__ import annotations

import gzip
import hashlib
import html as htmlmod
import io
import json
import random
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from warcio.warcwriter import WARCWriter

from sample_crawl import text as T
from storage.tables import REFERENCE_CORPUS

EVAL_SET = "eval_set.jsonl"

# Share of each page kind (sums to 1). Ingestion keeps the first nine kinds (HTML 200 pages).
KIND_SHARES: dict[str, float] = {
    "article": 0.55,
    "exact_dup": 0.05,
    "near_dup": 0.06,
    "spam": 0.05,
    "short": 0.04,
    "non_english": 0.06,
    "pii": 0.05,
    "benchmark": 0.03,
    "empty": 0.005,
    "non_html": 0.04,
    "redirect": 0.03,
    "not_found": 0.03,
    "malformed": 0.015,
}
# Word edit rates of planted near-duplicates. With 5-word shingles a rate r leaves about (1 - r)^5
# of the shingles intact: 0.5%, 1% and 1.5% give 5-gram Jaccard ≈ 0.95, 0.91 and 0.86, clearly
# above FineWeb's LSH threshold (≈ 0.72): the easy planted set. Pairs with a known Jaccard all
# along the threshold are made by benchmarks/dedup_quality.py.
NEAR_DUP_EDIT_RATES = (0.005, 0.01, 0.015)

MALFORMED_VARIANTS = ("bad_status_line", "cut_body", "warc_truncated")

_PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + b"\x00" * 32
_PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


@dataclass
class Page:
    index: int
    kind: str
    url: str
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    truth: dict[str, Any] = field(default_factory=dict)
    expected: str = "doc"  # "doc" or the ingest rejection reason


def _kind(rng: random.Random) -> str:
    x = rng.random()
    acc = 0.0
    for k, share in KIND_SHARES.items():
        acc += share
        if x < acc:
            return k
    return "article"


def _site(rng: random.Random, n_sites: int) -> str:
    i = rng.randrange(n_sites)
    words = ["daily", "river", "north", "open", "green", "metro", "signal", "harbor", "summit", "pixel", "maple", "atlas"]
    return f"www.{words[i % len(words)]}-{words[(i // len(words)) % len(words)]}{i}.{['com', 'org', 'net', 'co.uk'][i % 4]}"


def _render(site: str, title: str, paragraphs: list[str], rng: random.Random, lang: str = "en") -> bytes:
    """Wrap main text in the boilerplate real pages carry: nav, cookie banner, sidebar, footer."""
    esc = htmlmod.escape
    nav = "".join(f'<li><a href="/{w.lower()}">{w}</a></li>' for w in ["Home", "News", "Sections", "About", "Contact", "Subscribe"])
    related = "".join(f'<li><a href="/story/{rng.randint(1000, 99999)}">{esc(T.article(rng)[0])}</a></li>' for _ in range(4))
    body = "\n".join(f"<p>{esc(p)}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8"><title>{esc(title)} | {site}</title>'
        f'<meta name="viewport" content="width=device-width"><link rel="stylesheet" href="/s.css">'
        f"<script>window.dataLayer=window.dataLayer||[];function gtag(){{dataLayer.push(arguments)}}</script></head>\n"
        f'<body><div class="cookie-banner">We use cookies to improve your experience. <button>Accept all</button> <a href="/privacy">Privacy policy</a></div>\n'
        f'<header><a class="logo" href="/">{site}</a><nav><ul>{nav}</ul></nav></header>\n'
        f'<main><article><h1>{esc(title)}</h1><div class="byline">By {rng.choice(T.NAMES)} · {rng.randint(2, 12)} min read</div>\n{body}\n</article>\n'
        f'<aside><h3>Related stories</h3><ul>{related}</ul><div class="ad">Advertisement</div></aside></main>\n'
        f'<footer><p>© {rng.randint(2015, 2025)} {site}. All rights reserved.</p><a href="/terms">Terms</a> · <a href="/privacy">Privacy</a> · '
        f'<a href="/careers">Careers</a><p>Follow us on social media.</p></footer></body></html>\n'
    ).encode()


class _PageFactory:
    """Builds page ``i``; keeps the articles it made so that duplicates can copy them."""

    def __init__(self, seed: int, n_pages: int) -> None:
        self.seed = seed
        self.n_sites = max(3, n_pages // 25)
        self.originals: list[Page] = []  # articles available to be duplicated
        self.original_text: dict[int, list[str]] = {}

    def make(self, i: int) -> Page:
        rng = random.Random(f"{self.seed}:{i}")
        kind = _kind(rng)
        if kind in ("exact_dup", "near_dup") and not self.originals:
            kind = "article"
        site = _site(rng, self.n_sites)
        url = f"https://{site}/{rng.choice(['news', 'blog', 'story', 'guide', 'p'])}/{i}-{rng.randint(100, 999)}.html"
        page = Page(i, kind, url)
        builder: Callable[[Page, random.Random, str], None] = getattr(self, f"_{kind}")
        builder(page, rng, site)
        page.truth.setdefault("kind", kind)
        return page

    def _article(self, p: Page, rng: random.Random, site: str) -> None:
        title, paras = T.article(rng)
        p.body = _render(site, title, paras, rng)
        p.truth.update(lang="en", words=sum(len(x.split()) for x in paras))
        self.originals.append(p)
        self.original_text[p.index] = [title] + paras

    def _exact_dup(self, p: Page, rng: random.Random, site: str) -> None:
        src = rng.choice(self.originals)
        p.body = src.body
        p.truth.update(lang="en", duplicate_of=src.url, duplicate_of_index=src.index)

    def _near_dup(self, p: Page, rng: random.Random, site: str) -> None:
        src = rng.choice(self.originals)
        title, *paras = self.original_text[src.index]
        rate = rng.choice(NEAR_DUP_EDIT_RATES)
        p.body = _render(site, title, T.near_duplicate(rng, paras, rate), rng)
        p.truth.update(lang="en", near_duplicate_of=src.url, near_duplicate_of_index=src.index, edit_rate=rate)

    def _spam(self, p: Page, rng: random.Random, site: str) -> None:
        title, lines = T.spam(rng)
        p.body = _render(site, title, lines, rng)
        p.truth.update(lang="en")

    def _short(self, p: Page, rng: random.Random, site: str) -> None:
        title, lines = T.short(rng)
        p.body = _render(site, title, lines, rng)
        p.truth.update(lang="en")

    def _non_english(self, p: Page, rng: random.Random, site: str) -> None:
        lang = rng.choice(sorted(T.FOREIGN))
        title, paras = T.foreign(rng, lang)
        p.body = _render(site, title, paras, rng, lang=lang)
        p.truth.update(lang=lang)

    def _pii(self, p: Page, rng: random.Random, site: str) -> None:
        title, paras = T.article(rng)
        sents, planted = T.pii_sentences(rng)
        paras.insert(rng.randint(1, len(paras)), " ".join(sents))
        p.body = _render(site, title, paras, rng)
        p.truth.update(lang="en", pii=planted)

    def _benchmark(self, p: Page, rng: random.Random, site: str) -> None:
        title, paras = T.article(rng, "science")
        quoted, items = T.benchmark_quote(rng)
        paras[1:1] = quoted
        p.body = _render(site, title, paras, rng)
        p.truth.update(lang="en", benchmark_items=items)

    def _empty(self, p: Page, rng: random.Random, site: str) -> None:
        p.body = b"   \n"
        p.expected = "empty_payload"

    def _non_html(self, p: Page, rng: random.Random, site: str) -> None:
        if rng.random() < 0.5:
            p.url = p.url.replace(".html", ".png")
            p.content_type, p.body = "image/png", _PNG
        else:
            p.url = p.url.replace(".html", ".pdf")
            p.content_type, p.body = "application/pdf", _PDF
        p.expected = "not_html"

    def _redirect(self, p: Page, rng: random.Random, site: str) -> None:
        p.status = 301
        p.headers["Location"] = f"https://{site}/moved/{p.index}"
        p.body = b"<html><body>Moved</body></html>"
        p.expected = "http_status"

    def _not_found(self, p: Page, rng: random.Random, site: str) -> None:
        p.status = 404
        p.body = b"<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"
        p.expected = "http_status"

    def _malformed(self, p: Page, rng: random.Random, site: str) -> None:
        variant = MALFORMED_VARIANTS[rng.randrange(len(MALFORMED_VARIANTS))]
        title, paras = T.article(rng)
        p.body = _render(site, title, paras, rng)
        p.truth.update(variant=variant)
        p.expected = {"bad_status_line": "unparseable", "cut_body": "truncated", "warc_truncated": "truncated"}[variant]


def _http_bytes(p: Page) -> bytes:
    reason = {200: "OK", 301: "Moved Permanently", 404: "Not Found"}.get(p.status, "OK")
    variant = p.truth.get("variant")
    status_line = f"HTTP/1.1 {p.status} {reason}" if variant != "bad_status_line" else "HTPT/1.1 two-hundred OK"
    length = len(p.body) + (5000 if variant == "cut_body" else 0)
    hdrs = {"Content-Type": p.content_type, "Content-Length": str(length), "Server": "nginx", **p.headers}
    head = status_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    return head.encode("latin-1") + p.body


def _write_raw_record(fh, wtype: str, url: str, headers: dict[str, str], block: bytes) -> None:
    head = f"WARC/1.0\r\nWARC-Type: {wtype}\r\nWARC-Target-URI: {url}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(block)}\r\n\r\n"
    fh.write(gzip.compress(head.encode() + block + b"\r\n\r\n", mtime=0))


def _rid(rng: random.Random) -> str:
    return f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}>"


def generate_crawl(
    out_dir: str | Path,
    pages: int,
    seed: int = 0,
    pages_per_file: int = 1000,
    crawl_id: str | None = None,
    progress: Callable[[int], None] | None = None,
    unreadable_tail: bool = True,
    recrawl: int = 0,
) -> dict[str, Any]:
    """Write ``pages`` fetched pages as WARC files in ``out_dir``; return the crawl summary.

    ``recrawl`` > 0 fetches the same pages again later: same pages and bodies as ``recrawl=0``
    with the same seed, new WARC record ids and dates (what a later crawl of the same sites sees).

    With ``unreadable_tail`` the last file ends in a cut gzip member (an interrupted transfer),
    which a reader must survive and report.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    crawl_id = crawl_id or out.name
    factory = _PageFactory(seed, pages)
    base = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=seed % 365 + 30 * recrawl)
    n_files = max(1, -(-pages // pages_per_file))
    kinds: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    records = 0
    planted: set[str] = set()
    truth_path = out / "ground_truth.jsonl"
    with truth_path.open("w") as truth:
        for fi in range(n_files):
            name = f"{crawl_id}-{fi:05d}.warc.gz"
            frng = random.Random(f"{seed}:file:{fi}" + (f":{recrawl}" if recrawl else ""))
            with (out / name).open("wb") as fh:
                w = WARCWriter(fh, gzip=True)
                info = w.create_warcinfo_record(
                    name, {"software": "sluice sample-crawl", "format": "WARC File Format 1.1", "isPartOf": crawl_id}
                )
                info.rec_headers.replace_header("WARC-Record-ID", _rid(frng))
                info.rec_headers.replace_header("WARC-Date", base.strftime("%Y-%m-%dT%H:%M:%SZ"))
                w.write_record(info)
                records += 1
                for i in range(fi * pages_per_file, min(pages, (fi + 1) * pages_per_file)):
                    p = factory.make(i)
                    rrng = random.Random(f"{seed}:rec:{i}" + (f":{recrawl}" if recrawl else ""))
                    date = (base + timedelta(seconds=i * 7)).strftime("%Y-%m-%dT%H:%M:%SZ")
                    req_id, resp_id, meta_id = _rid(rrng), _rid(rrng), _rid(rrng)
                    req = f"GET {p.url.split('/', 3)[-1]} HTTP/1.1\r\nHost: {p.url.split('/')[2]}\r\nUser-Agent: sluice-sample\r\n\r\n".encode()
                    w.write_record(
                        w.create_warc_record(
                            p.url,
                            "request",
                            payload=io.BytesIO(req),
                            length=len(req),
                            warc_content_type="application/http; msgtype=request",
                            warc_headers_dict={"WARC-Record-ID": req_id, "WARC-Date": date},
                        )
                    )
                    http = _http_bytes(p)
                    extra = {"WARC-Truncated": "length"} if p.truth.get("variant") == "warc_truncated" else {}
                    resp_headers = {"WARC-Record-ID": resp_id, "WARC-Date": date, "WARC-Concurrent-To": req_id, **extra}
                    if p.truth.get("variant") == "bad_status_line":
                        # warcio refuses to write a broken status line, which is the point: write it raw.
                        _write_raw_record(fh, "response", p.url, resp_headers, http)
                    else:
                        w.write_record(
                            w.create_warc_record(
                                p.url,
                                "response",
                                payload=io.BytesIO(http),
                                length=len(http),
                                warc_content_type="application/http; msgtype=response",
                                warc_headers_dict=resp_headers,
                            )
                        )
                    meta = f"fetchTimeMs: {rrng.randint(20, 900)}\r\n".encode()
                    w.write_record(
                        w.create_warc_record(
                            p.url,
                            "metadata",
                            payload=io.BytesIO(meta),
                            length=len(meta),
                            warc_content_type="application/warc-fields",
                            warc_headers_dict={"WARC-Record-ID": meta_id, "WARC-Date": date, "WARC-Concurrent-To": resp_id},
                        )
                    )
                    records += 3
                    kinds[p.kind] += 1
                    expected[p.expected] += 1
                    planted.update(p.truth.get("benchmark_items", []))
                    truth.write(
                        json.dumps(
                            {
                                "index": i,
                                "url": p.url,
                                "warc_file": name,
                                "warc_record_id": resp_id,
                                "expected": p.expected,
                                "sha1": hashlib.sha1(p.body).hexdigest(),
                                **p.truth,
                            }
                        )
                        + "\n"
                    )
                    if progress:
                        progress(1)
                if unreadable_tail and fi == n_files - 1:
                    # An interrupted transfer: half of a gzip member, then end of file.
                    cut = gzip.compress(b"WARC/1.0\r\nWARC-Type: response\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000)
                    fh.write(cut[: len(cut) // 2])
    # Clean reference documents (not pages of the crawl): positives for the quality classifier.
    # A small eval set in the shape of a benchmark test set (JSONL, field "question"): every item the
    # benchmark pages quote, and as many that no page quotes; `decontaminated` is checked against it.
    unplanted = []
    for j in range(max(20, len(planted))):
        q, _ = T.benchmark_quote(random.Random(f"{seed}:eval:{j}"))
        unplanted.append(q[0].split(": ", 1)[1] + f" Give the answer for case {j}.")
    with (out / EVAL_SET).open("w") as ev:
        for q in sorted(planted) + [u for u in unplanted if u not in planted]:
            ev.write(json.dumps({"question": q}) + "\n")
    n_ref = min(500, max(100, pages // 10))
    with (out / REFERENCE_CORPUS).open("w") as ref:
        for j in range(n_ref):
            ref.write(json.dumps({"id": f"ref-{j:06d}", "text": T.reference(random.Random(f"{seed}:ref:{j}"))}) + "\n")
    summary = {
        "crawl_id": crawl_id,
        "reference_documents": n_ref,
        "seed": seed,
        "pages": pages,
        "files": n_files,
        "warc_records": records,  # complete records; an unreadable tail adds one reader error
        "unreadable_tail": unreadable_tail,
        "kinds": dict(sorted(kinds.items())),
        "expected_ingest": dict(sorted(expected.items())),
    }
    (out / "crawl.json").write_text(json.dumps(summary, indent=2))
    return summary
