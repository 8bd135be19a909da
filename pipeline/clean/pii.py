"""PII replacement: e-mail addresses, public IPv4/IPv6 addresses and phone numbers.

Speed: each pattern starts with a cheap literal or character class (the regex engine tries
it at every position, so a leading look-behind or a broad class would dominate the stage's
time); the word-boundary check on the left is done in Python on the few matches.
E-mail addresses are found from their '@'. IP addresses are replaced only when public
(`ipaddress.is_global`): 127.0.0.1, 10.0.0.0/8 or 2001:db8:: are nobody's address, and
code and docs use them all the time.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])")
IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w.]*\d)")
IPV6 = re.compile(r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]*:[0-9A-Fa-f]{1,4}(?![\w:])")
PHONE = re.compile(
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4}(?![\w.-]*\d)"  # +44 20 7946 0958
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}(?![\w.-]*\d)"  # (202) 555-0143
    r"|\d{3}[.-]\d{3}[.-]\d{4}(?![\w.-]*\d)"  # 202-555-0143
)


@dataclass
class PIICounts:
    email: int = 0
    ip: int = 0
    phone: int = 0


def _starts_word(text: str, start: int, forbidden: str) -> bool:
    """Whether a match at `start` is not the tail of a longer token."""
    if start == 0:
        return True
    c = text[start - 1]
    return not (c.isalnum() or c == "_" or c in forbidden)


class PIIScrubber:
    """Replaces PII by placeholders; a placeholder of None keeps that type."""

    def __init__(self, email: str | None, ip: str | None, phone: str | None):
        self.email, self.ip, self.phone = email, ip, phone

    def __call__(self, text: str, counts: PIICounts | None = None) -> str:
        counts = counts if counts is not None else PIICounts()
        if self.email is not None and "@" in text:
            text = self._emails(text, counts)
        if self.ip is not None:
            text = self._ips(text, counts)
        if self.phone is not None:
            text = self._phones(text, counts)
        return text

    def _emails(self, text: str, counts: PIICounts) -> str:
        out, last, at = [], 0, text.find("@")
        while at != -1:
            start = at
            while start > last and at - start < 64 and text[start - 1] in _LOCAL_CHARS:
                start -= 1
            while start < at and text[start] in ".":  # a local part does not start with a dot
                start += 1
            m = _DOMAIN.match(text, at + 1) if start < at else None
            if m is not None:
                out.append(text[last:start])
                out.append(self.email)
                counts.email += 1
                last = m.end()
            at = text.find("@", max(at + 1, last))
        if not out:
            return text
        out.append(text[last:])
        return "".join(out)

    def _ips(self, text: str, counts: PIICounts) -> str:
        def sub(m: re.Match) -> str:
            if not _starts_word(text, m.start(), ".:"):
                return m.group()
            if ":" in m.group() and sum(1 for g in m.group().split(":") if g) < 3:
                return m.group()  # "::2", "a::b": slices and scope operators, not addresses
            try:
                addr = ipaddress.ip_address(m.group())
            except ValueError:
                return m.group()
            if not addr.is_global:
                return m.group()
            counts.ip += 1
            return self.ip

        if "." in text:
            text = IPV4.sub(sub, text)
        if "::" in text or text.count(":") >= 7:
            text = IPV6.sub(sub, text)
        return text

    def _phones(self, text: str, counts: PIICounts) -> str:
        def sub(m: re.Match) -> str:
            # E.164 numbers have at most 15 digits; fewer than 10 is a date, version or count
            if not _starts_word(text, m.start(), "+(.-") or not 10 <= sum(c.isdigit() for c in m.group()) <= 15:
                return m.group()
            counts.phone += 1
            return self.phone

        return PHONE.sub(sub, text)
