"""Main-text extraction from raw HTML bytes.

Backends:

* ``resiliparse``        — Resiliparse's main-content extractor as is (fastest);
* ``resiliparse_blocks`` — the default: Resiliparse's main content, then each text block classified
  as content or boilerplate by shallow text features (words and link density of the block and of its
  neighbours, the decision rules of Kohlschütter et al., "Boilerplate Detection using Shallow Text
  Features", WSDM 2010), with short blocks kept when they sit between content blocks. It removes
  most of the teaser/related-link blocks that plain Resiliparse keeps, at a small cost;
* ``trafilatura``        — Trafilatura with ``favor_precision`` (precise, about ten times slower).

Charset: the HTTP header's charset when it decodes, else Resiliparse's detection (meta tags, BOM,
byte statistics). A page that decodes to no text is reported as such by the caller.
"""

from __future__ import annotations

import html as htmlmod
import re
from typing import Literal

from pydantic import BaseModel

Backend = Literal["resiliparse", "resiliparse_blocks", "trafilatura"]

_TAG = re.compile(r"<[^>]+>")
_LINK = re.compile(r"<a\b[^>]*>(.*?)</a>", re.S)


class ExtractOptions(BaseModel):
    backend: Backend = "resiliparse_blocks"
    # Blocks between content blocks are kept when at most this many separate them.
    block_gap: int = 2
    max_link_density_in_gap: float = 0.5
    # Elements skipped before extraction (CSS selectors).
    skip_selectors: list[str] = [
        ".related", ".share", ".social", ".newsletter", ".breadcrumb", ".breadcrumbs", ".tags",
        ".author-bio", ".teaser", ".sidebar", "aside", "nav", "footer", ".comments", "#comments",
        ".cookie", ".advert", ".ad", ".promo", ".subscribe",
    ]


def decode_html(html: bytes, charset: str | None) -> str:
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    if charset:
        try:
            return html.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    return bytes_to_str(html, detect_encoding(html))


def _tree(html: bytes, charset: str | None):
    from resiliparse.parse.html import HTMLTree

    return HTMLTree.parse(decode_html(html, charset))


def _blocks(tree, o: ExtractOptions) -> list[tuple[str, int, float]]:
    """(text, words, link density) of each block of Resiliparse's main-content output."""
    from resiliparse.extract.html2text import extract_plain_text

    marked = extract_plain_text(
        tree, main_content=True, preserve_formatting="minimal_html", links=True, alt_texts=False,
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
        if o.backend == "trafilatura":
            import trafilatura  # noqa: F401  (fail at start-up, not on the first page)

    def extract(self, html: bytes, charset: str | None = None) -> str:
        o = self.o
        if o.backend == "trafilatura":
            import trafilatura

            return trafilatura.extract(decode_html(html, charset), favor_precision=True, include_comments=False) or ""
        tree = _tree(html, charset)
        if o.backend == "resiliparse":
            from resiliparse.extract.html2text import extract_plain_text

            return extract_plain_text(tree, main_content=True, alt_texts=False)
        return "\n".join(classify_blocks(_blocks(tree, o), o.block_gap, o.max_link_density_in_gap))
