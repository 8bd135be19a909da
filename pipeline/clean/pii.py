"""PII replacement: e-mail addresses, public IPv4/IPv6 addresses and phone numbers.

Patterns start only at the beginning of a run of their characters (a look-behind), so a
long run without a match costs linear time, never quadratic. IP addresses are replaced
only when public (`ipaddress.is_global`): 127.0.0.1, 10.0.0.0/8 or 2001:db8:: are not
anyone's address, and code and docs use them all the time.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}(?![\w-])")
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)")
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:){2,7}(?::|[0-9A-Fa-f]{1,4})(?::[0-9A-Fa-f]{1,4}){0,6}(?![\w:])")
PHONE = re.compile(
    r"(?<![\w+(.-])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4}"  # +44 20 7946 0958, +1-202-555-0143
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"  # (202) 555-0143
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 202-555-0143
    r")(?![\w.-]*\d)"
)


@dataclass
class PIICounts:
    email: int = 0
    ip: int = 0
    phone: int = 0


class PIIScrubber:
    """Replaces PII by placeholders; a placeholder of None keeps that type."""

    def __init__(self, email: str | None, ip: str | None, phone: str | None):
        self.email, self.ip, self.phone = email, ip, phone

    def __call__(self, text: str, counts: PIICounts | None = None) -> str:
        counts = counts if counts is not None else PIICounts()
        if self.email is not None and "@" in text:
            text, n = EMAIL.subn(self.email, text)
            counts.email += n
        if self.ip is not None and ("." in text or ":" in text):
            text = self._ips(text, counts)
        if self.phone is not None:
            text = self._phones(text, counts)
        return text

    def _ips(self, text: str, counts: PIICounts) -> str:
        def sub(m: re.Match) -> str:
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
            if not 10 <= sum(c.isdigit() for c in m.group()) <= 15:
                return m.group()
            counts.phone += 1
            return self.phone

        return PHONE.sub(sub, text)
