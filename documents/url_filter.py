"""URL filter: domain/URL blocklists in UT1 format and banned words in URLs.

UT1 (Université Toulouse 1 Capitole) blocklists are folders, one per category, each holding a
``domains`` file (one domain per line; a domain blocks its subdomains) and optionally a ``urls``
file (one URL without scheme per line). The lists are supplied by the user: none is bundled.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field


class UrlFilterOptions(BaseModel):
    enabled: bool = True
    # Folders in UT1 format (a category folder, or a parent holding category folders).
    blocklist_dirs: list[str] = Field(default_factory=list)
    # Only these UT1 categories when a parent folder is given (empty: all).
    categories: list[str] = Field(default_factory=list)
    # Words that block a URL when they appear as a token of its host or path.
    banned_words: list[str] = Field(default_factory=list)
    # Substrings that block a URL wherever they appear in it (no word boundary).
    banned_subwords: list[str] = Field(default_factory=list)


def _read_list(path: Path) -> set[str]:
    out = set()
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip().lower()
        if line and not line.startswith("#"):
            out.add(line)
    return out


@lru_cache(maxsize=8)
def load_blocklists(dirs: tuple[str, ...], categories: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]]:
    domains: set[str] = set()
    urls: set[str] = set()
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            raise FileNotFoundError(f"URL blocklist folder {root} does not exist")
        cats = [root] if (root / "domains").is_file() or (root / "urls").is_file() else sorted(p for p in root.iterdir() if p.is_dir())
        for cat in cats:
            if categories and cat.name not in categories:
                continue
            if (cat / "domains").is_file():
                domains |= _read_list(cat / "domains")
            if (cat / "urls").is_file():
                urls |= _read_list(cat / "urls")
    return frozenset(domains), frozenset(urls)


_TOKEN = re.compile(r"[a-z0-9]+")


class UrlFilter:
    def __init__(self, o: UrlFilterOptions) -> None:
        self.o = o
        self.domains, self.urls = load_blocklists(tuple(o.blocklist_dirs), tuple(o.categories))
        self.words = frozenset(w.lower() for w in o.banned_words)
        self.subwords = tuple(w.lower() for w in o.banned_subwords)

    def check(self, url: str | None) -> tuple[str, str] | None:
        """``(rule, detail)`` when the URL is blocked."""
        if not url:
            return None
        u = url.lower()
        try:
            parts = urlsplit(u)
        except ValueError:
            return ("url.unparseable", url[:200])
        host = (parts.hostname or "").rstrip(".")
        if self.domains:
            labels = host.split(".")
            for i in range(len(labels) - 1):
                cand = ".".join(labels[i:])
                if cand in self.domains:
                    return ("url.blocked_domain", cand)
        if self.urls:
            bare = host + (parts.path or "/")
            if bare in self.urls or bare.rstrip("/") in self.urls:
                return ("url.blocked_url", bare)
        if self.words:
            for tok in _TOKEN.findall(host + " " + parts.path + " " + parts.query):
                if tok in self.words:
                    return ("url.banned_word", tok)
        for sw in self.subwords:
            if sw in u:
                return ("url.banned_subword", sw)
        return None
