"""Main-text extraction from raw HTML bytes.

Backends:

* ``resiliparse``        — Resiliparse's main-content extractor as is (fastest);
* ``resiliparse_blocks`` — the default: Resiliparse's main content, then each text block classified
  as content or boilerplate by shallow text features (words and link density of the block and of its
  neighbours, the decision rules of Kohlschütter et al., "Boilerplate Detection using Shallow Text
  Features", WSDM 2010), with short blocks kept when they sit between content blocks. It removes
  most of the teaser/related-link blocks that plain Resiliparse keeps, at a small cost;
* ``trafilatura``        — Trafilatura with ``favor_precision`` (precise, about ten times slower);
* ``cascade``            — the default: ``resiliparse_blocks``, except on pages where the block
  classifier drops more than ``cascade_dropped_frac`` of Resiliparse's main-content words — pages
  whose layout the fast path finds ambiguous — which go to Trafilatura (in its fast mode). On the
  shared trafilatura-eval pages about 40% of pages take the slow path, for F1 within 0.02 of
  Trafilatura at about twice its speed. The ``extractor`` column records which path produced the text.
  With the language filter on, a page whose fast-path text is in a language the filter drops does
  not take the slow path: its text would be dropped whichever path made it (see ``language``).

Charset: the HTTP header's charset when it decodes, else Resiliparse's detection (meta tags, BOM,
byte statistics). A page that decodes to no text is reported as such by the caller. One module for
every backend on purpose: the cascade compares them page by page, and they share decoding and guards.
"""

from __future__ import annotations

import html as htmlmod
import os
import pickle
import re
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel

from documents.language import LanguageIdentifier, LanguageOptions

Backend = Literal["resiliparse", "resiliparse_blocks", "trafilatura", "cascade"]

_TAG = re.compile(r"<[^>]+>")
_LINK = re.compile(r"<a\b[^>]*>(.*?)</a>", re.S)


class ExtractOptions(BaseModel):
    backend: Backend = "cascade"
    # cascade: share of main-content words dropped by the block classifier above which a page is
    # re-extracted with Trafilatura.
    cascade_dropped_frac: float = 0.05
    # Blocks between content blocks are kept when at most this many separate them.
    block_gap: int = 2
    max_link_density_in_gap: float = 0.5
    # Elements skipped before extraction (CSS selectors).
    skip_selectors: list[str] = [
        ".related",
        ".share",
        ".social",
        ".newsletter",
        ".breadcrumb",
        ".breadcrumbs",
        ".tags",
        ".author-bio",
        ".teaser",
        ".sidebar",
        "aside",
        "nav",
        "footer",
        ".comments",
        "#comments",
        ".cookie",
        ".advert",
        ".ad",
        ".promo",
        ".subscribe",
    ]
    # A page nested deeper than this is refused before it is parsed (reason extract.too_deep):
    # main-content extraction grows superlinearly with DOM depth (Resiliparse: 5,000 levels 0.5 s,
    # 20,000 levels 11 s, 200,000 more than 10 minutes). Real pages nest a few dozen deep (at most
    # 243 by this count, which overcounts unclosed tags, on 300 pages of ../shared/data); and only a
    # page with more tags than the limit is scanned at all: 4 of those 300 at 5,000.
    max_dom_depth: int = 5000
    # Wall-clock seconds one page may take to extract (reason extract.timeout); 0 extracts in the
    # calling process with no limit. See IsolatedExtractor for why a child process.
    max_seconds: float = 30.0
    # cascade: the language filter's options when it selects languages. Set by the filter from
    # ``filter.language`` (a value given here is replaced): a page whose fast-path text is
    # identified as a language the filter drops is not re-extracted with Trafilatura, since the
    # filter would drop it next whatever text the slow path gave. On the shared trafilatura-eval
    # pages (mostly not English) that is 323 of the 394 slow-path pages, and no page whose
    # Trafilatura text the filter would have kept as English.
    language: LanguageOptions | None = None


_OPEN_CLOSE = re.compile(rb"<(/?)([A-Za-z][A-Za-z0-9]*)[^>]*?(/?)>")
_VOID = frozenset(b"area base br col embed hr img input link meta param source track wbr".split())


def dom_depth(html: bytes | str, limit: int) -> int:
    """The deepest element nesting in ``html`` (a tag count, no parse), stopping early once it
    passes ``limit``. Pages that cannot exceed the limit are not scanned (0): the depth is at most the
    number of opening tags, and every ``<`` that is not ``</`` is at most one of them."""
    if isinstance(html, str):
        if html.count("<") - html.count("</") <= limit:
            return 0
        html = html.encode("utf-8", "replace")
    if html.count(b"<") - html.count(b"</") <= limit:
        return 0
    depth = deepest = 0
    for m in _OPEN_CLOSE.finditer(html):
        if m.group(1):
            depth = max(0, depth - 1)
        elif not m.group(3) and m.group(2).lower() not in _VOID:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
    return deepest


def decode_html(html: bytes, charset: str | None) -> str:
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    if charset:
        try:
            return html.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    return bytes_to_str(html, detect_encoding(html))


def _blocks(tree, o: ExtractOptions) -> list[tuple[str, int, float]]:
    """(text, words, link density) of each block of Resiliparse's main-content output."""
    from resiliparse.extract.html2text import extract_plain_text

    marked = extract_plain_text(
        tree,
        main_content=True,
        preserve_formatting="minimal_html",
        links=True,
        alt_texts=False,
        skip_elements=o.skip_selectors,
    )
    out = []
    for line in marked.split("\n"):
        text = htmlmod.unescape(_TAG.sub("", line)).strip()
        if not text:
            continue
        linked = sum(len(htmlmod.unescape(_TAG.sub("", x))) for x in _LINK.findall(line))
        out.append((text, len(text.split()), linked / len(text)))
    return out


def _is_content(blocks: list[tuple[str, int, float]], i: int) -> bool:
    _, words, ld = blocks[i]
    prev_words, prev_ld = (blocks[i - 1][1], blocks[i - 1][2]) if i > 0 else (0, 0.0)
    next_words = blocks[i + 1][1] if i + 1 < len(blocks) else 0
    if ld > 0.333:
        return False
    if prev_ld <= 0.555:
        return words > 16 or next_words > 15 or prev_words > 4
    return words > 40 or next_words > 17


def classify_blocks(blocks: list[tuple[str, int, float]], gap: int, max_gap_ld: float) -> list[str]:
    content = [i for i in range(len(blocks)) if _is_content(blocks, i)]
    keep = set(content)
    for a, b in zip(content, content[1:]):
        if 1 < b - a <= gap + 1:
            keep.update(j for j in range(a + 1, b) if blocks[j][2] <= max_gap_ld)
    return [blocks[i][0] for i in sorted(keep)]


class Extractor:
    def __init__(self, o: ExtractOptions) -> None:
        self.o = o
        if o.backend in ("trafilatura", "cascade"):
            import trafilatura  # noqa: F401  (fail at start-up, not on the first page)
        lang = o.language if o.backend == "cascade" else None
        self._language = (LanguageIdentifier(lang), frozenset(lang.languages)) if lang and lang.languages else None

    def extract(self, html: bytes, charset: str | None = None) -> str:
        return self.extract_with_path(html, charset)[0]

    def extract_with_path(self, html: bytes, charset: str | None = None) -> tuple[str, str]:
        """(text, the extractor that produced it)."""
        o = self.o
        if o.backend == "trafilatura":
            return _trafilatura(decode_html(html, charset)), "trafilatura"
        doc = decode_html(html, charset)
        from resiliparse.parse.html import HTMLTree

        tree = HTMLTree.parse(doc)
        if o.backend == "resiliparse":
            from resiliparse.extract.html2text import extract_plain_text

            return extract_plain_text(tree, main_content=True, alt_texts=False), "resiliparse"
        blocks = _blocks(tree, o)
        kept = classify_blocks(blocks, o.block_gap, o.max_link_density_in_gap)
        if o.backend == "cascade":
            total = sum(b[1] for b in blocks)
            dropped = 1.0 - sum(len(k.split()) for k in kept) / total if total else 0.0
            text = "\n".join(kept)
            if dropped > o.cascade_dropped_frac and not self._language_drops(text):
                return _trafilatura(doc, fast=True), "cascade:trafilatura"
            return text, "cascade:resiliparse_blocks"
        return "\n".join(kept), "resiliparse_blocks"

    def _language_drops(self, text: str) -> bool:
        """Whether the language filter will drop this text: identified as the filter identifies the
        page's text (``documents.rules``: the stripped text), a language it does not select. No
        text is no language: the slow path may find some."""
        text = text.strip()
        if self._language is None or not text:
            return False
        ident, languages = self._language
        return ident.identify(text)[0] not in languages


def _trafilatura(doc: str, fast: bool = False) -> str:
    """``fast`` (the cascade's slow path): Trafilatura's own extractor without its internal
    fallbacks (readability, jusText) and without favor_precision, since the fast path already
    leans to precision. Standalone: favor_precision with fallbacks, Trafilatura's precise setup."""
    import trafilatura

    if fast:
        return trafilatura.extract(doc, include_comments=False, fast=True) or ""
    return trafilatura.extract(doc, favor_precision=True, include_comments=False) or ""


class ExtractTimeout(Exception):
    """A page took longer than ``max_seconds``."""


class ExtractCrashed(Exception):
    """The extraction process died on a page (a crash in native parsing code)."""


class ExtractError(Exception):
    """The extractor raised on a page, in the child process (the message names the original error)."""


def _frame_send(stream, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _frame_recv(stream) -> object:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("extraction process closed its pipe")
    (n,) = struct.unpack("<Q", head)
    data = stream.read(n)
    if len(data) < n:
        raise EOFError("extraction process closed its pipe")
    return pickle.loads(data)


def _send_all(stream, pages: list[tuple[bytes, str | None]]) -> None:
    """The writer thread of :meth:`IsolatedExtractor.extract_many`: ends when the child does."""
    try:
        for page in pages:
            _frame_send(stream, page)
    except (OSError, ValueError):  # the child was stopped (a page overran or crashed it)
        pass


def serve(options_json: str) -> None:
    """The child's loop (``python -m documents.extract OPTIONS``): pages in on stdin, (text, path)
    or an error out on stdout, until the parent closes the pipe."""
    ex = Extractor(ExtractOptions.model_validate_json(options_json))
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a library printing must not corrupt the frames
    _frame_send(out, ("ready", None))
    while True:
        try:
            html, charset = _frame_recv(inp)
        except EOFError:
            return
        try:
            reply = ("ok", ex.extract_with_path(html, charset))
        except Exception as e:  # noqa: BLE001 - the child reports any error to the parent, which rejects the page
            reply = ("error", f"{type(e).__name__}: {e}")
        _frame_send(out, reply)


class IsolatedExtractor:
    """Extraction in a child process, so that one page can neither stall nor crash a task.

    Why a process: the parsers are native code (Resiliparse, lxml), which neither a signal nor a
    thread can interrupt; the only bound that holds is killing the process doing the work. The
    child is a plain ``python -m documents.extract`` (not multiprocessing, whose start-up re-imports
    the parent's ``__main__``: a Spark daemon, a notebook); it lives as long as its parent and is
    replaced after a page that overran or crashed it. Pages cross a pipe (a fraction of a
    millisecond for a 100 KB page, against milliseconds of parsing). A child that cannot start is
    an error of the task, never a rejection of its pages."""

    START_SECONDS = 120.0

    def __init__(self, o: ExtractOptions) -> None:
        self.o = o
        self._proc: subprocess.Popen | None = None
        self._writer: threading.Thread | None = None
        self._buf = bytearray()  # bytes read from the child not yet returned as a frame

    def _start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "documents.extract", self.o.model_dump_json()], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        try:
            ready = self._reply(self.START_SECONDS)
        except EOFError:
            ready = None
        if ready != ("ready", None):
            code = self._proc.poll()
            self._stop()
            raise RuntimeError(f"the extraction process did not start (exit code {code}); its error is in the task's stderr")

    def _reply(self, timeout: float) -> object | None:
        """The child's next frame, or None after ``timeout`` seconds. Read from the pipe's descriptor
        into our own buffer: with pages in flight, a buffered reader could hold the next reply where
        ``select`` cannot see it."""
        import select
        import time

        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            if len(self._buf) >= 8:
                (n,) = struct.unpack("<Q", self._buf[:8])
                if len(self._buf) >= 8 + n:
                    frame = bytes(self._buf[8 : 8 + n])
                    del self._buf[: 8 + n]
                    return pickle.loads(frame)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise EOFError("extraction process closed its pipe")
            self._buf += chunk

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            if self._writer is not None:  # its write fails on the dead child's pipe
                self._writer.join()
                self._writer = None
            for stream in (self._proc.stdin, self._proc.stdout):
                stream.close()
        self._proc = None
        self._buf = bytearray()

    def _ensure(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            self._stop()
            self._start()

    def extract_many(self, pages: list[tuple[bytes, str | None]]) -> Iterator[tuple[str, str] | Exception]:
        """Each page's (text, extractor), or the ExtractTimeout / ExtractCrashed / ExtractError it
        ended with, in order: :meth:`extract_with_path` over the pages, without a round trip per page.

        A thread writes the pages to the child while the replies are read, so the child extracts the
        next page while the caller works on this one (the rules), and a page never waits for the
        parent to be scheduled. A page's limit runs from when its reply is awaited, which is never
        before the child could start it: a page gets at least ``max_seconds``. After a page that
        overran or crashed the child, a new child takes the pages after it."""
        i = 0
        while i < len(pages):
            self._ensure()
            self._writer = threading.Thread(target=_send_all, args=(self._proc.stdin, pages[i:]), daemon=True)
            self._writer.start()
            done = False
            try:
                for j in range(i, len(pages)):
                    try:
                        reply = self._reply(self.o.max_seconds)
                    except (EOFError, OSError):
                        code = self._proc.wait()
                        self._stop()
                        i = j + 1
                        yield ExtractCrashed(f"extraction process died (exit code {code})")
                        break
                    if reply is None:
                        self._stop()
                        i = j + 1
                        yield ExtractTimeout(f"> {self.o.max_seconds:g} s")
                        break
                    status, value = reply
                    yield ExtractError(value) if status == "error" else value
                else:
                    i = len(pages)
                    done = True
                    self._writer.join()
                    self._writer = None
            finally:
                if not done and self._writer is not None:
                    # the caller stopped early (or a page overran): replies in flight would be read as
                    # the next pages' answers, so this child goes
                    self._stop()

    def extract_with_path(self, html: bytes, charset: str | None = None) -> tuple[str, str]:
        self._ensure()
        try:
            _frame_send(self._proc.stdin, (html, charset))
            reply = self._reply(self.o.max_seconds)
        except (EOFError, OSError):
            self._proc.wait()
            code = self._proc.returncode
            self._stop()
            raise ExtractCrashed(f"extraction process died (exit code {code})") from None
        if reply is None:
            self._stop()
            raise ExtractTimeout(f"> {self.o.max_seconds:g} s")
        status, value = reply
        if status == "error":
            raise ExtractError(value)
        return value

    def extract(self, html: bytes, charset: str | None = None) -> str:
        return self.extract_with_path(html, charset)[0]

    def close(self) -> None:
        self._stop()

    def __del__(self) -> None:
        try:
            self._stop()
        except Exception:  # noqa: BLE001 - at interpreter exit; the child ends on its own when its stdin closes
            pass


def extract_stream(
    extractor: Extractor | IsolatedExtractor, pages: list[tuple[bytes, str | None]]
) -> Iterator[tuple[str, str] | Exception]:
    """Each page's (text, extractor) or the exception it raised, in order, by either extractor."""
    if isinstance(extractor, IsolatedExtractor):
        yield from extractor.extract_many(pages)
        return
    for html, charset in pages:
        try:
            yield extractor.extract_with_path(html, charset)
        except Exception as e:  # noqa: BLE001 - the caller turns it into the page's rejection
            yield e


def make_extractor(o: ExtractOptions) -> Extractor | IsolatedExtractor:
    """The extractor a worker uses: isolated with a time limit unless ``max_seconds`` is 0."""
    if o.max_seconds > 0:
        Extractor(o)  # fail here, not in the child, on a missing backend
        return IsolatedExtractor(o)
    return Extractor(o)


if __name__ == "__main__":
    serve(sys.argv[1])
