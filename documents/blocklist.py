"""What ingest refuses because it was taken down: URLs and document ids by their sha256, domains
(and their subdomains) by name. Built from the ``takedowns`` table; small enough to ship to every
Spark task."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def host_of(url: str | None) -> str:
    try:
        return (urlsplit(url or "").hostname or "").lower().rstrip(".")
    except ValueError:
        return ""


def parent_domains(host: str) -> list[str]:
    """``a.b.example.com`` → itself, ``b.example.com``, ``example.com``, ``com``."""
    parts = host.split(".")
    return [".".join(parts[i:]) for i in range(len(parts))] if host else []


@dataclass
class Blocklist:
    hashes: dict[str, str] = field(default_factory=dict)  # sha256 of a URL or doc id -> takedown id
    domains: dict[str, str] = field(default_factory=dict)  # domain -> takedown id

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]]) -> Blocklist:
        b = cls()
        for r in rows:
            if r.get("kind") == "domain" and r.get("target"):
                b.domains[str(r["target"]).lower()] = r["takedown_id"]
            elif r.get("target_sha256"):
                b.hashes[r["target_sha256"]] = r["takedown_id"]
            for h in r.get("url_sha256") or []:  # the URLs of the documents it removed
                b.hashes[h] = r["takedown_id"]
        return b

    def __bool__(self) -> bool:
        return bool(self.hashes or self.domains)

    def match(self, url: str | None, doc_id: str | None = None) -> str | None:
        """The takedown that blocks this URL (or document id), or None."""
        if url:
            hit = self.hashes.get(sha256_hex(url))
            if hit:
                return hit
            for d in parent_domains(host_of(url)):
                if d in self.domains:
                    return self.domains[d]
        if doc_id:
            return self.hashes.get(sha256_hex(doc_id))
        return None
