"""PII redaction: e-mail addresses and IPv4/IPv6 addresses (phone numbers optionally).

Candidates are found by regular expressions and IP candidates confirmed by ``ipaddress`` (so
version strings like 1.2.3 or dates are not redacted); each is replaced by a placeholder and
counted per document.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)")
IPV6 = re.compile(r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Za-z:])")
PHONE = re.compile(r"(?<!\w)(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)|\d{2,4})[\s.-]?\d{3,4}[\s.-]?\d{3,4}(?!\w)")


class PiiOptions(BaseModel):
    enabled: bool = True
    emails: bool = True
    ips: bool = True
    phones: bool = False
    email_placeholder: str = "<EMAIL>"
    ip_placeholder: str = "<IP_ADDRESS>"
    phone_placeholder: str = "<PHONE>"


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def redact(text: str, o: PiiOptions) -> tuple[str, dict[str, int]]:
    counts = {"pii_emails": 0, "pii_ips": 0, "pii_phones": 0}
    if not o.enabled:
        return text, counts

    def sub(pattern: re.Pattern, key: str, placeholder: str, check=None) -> None:
        nonlocal text

        def repl(m: re.Match) -> str:
            if check is not None and not check(m.group(0)):
                return m.group(0)
            counts[key] += 1
            return placeholder

        text = pattern.sub(repl, text)

    if o.emails:
        sub(EMAIL, "pii_emails", o.email_placeholder)
    if o.ips:
        sub(IPV6, "pii_ips", o.ip_placeholder, _is_ip)
        sub(IPV4, "pii_ips", o.ip_placeholder, _is_ip)
    if o.phones:
        sub(PHONE, "pii_phones", o.phone_placeholder)
    return text, counts
