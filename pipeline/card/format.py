"""Formatting shared by every rendering of a card (Markdown, terminal, diff): numbers for people, table cells."""
from __future__ import annotations

import re

# C0/C1 controls, DEL, bidirectional overrides and lone surrogates: a NUL makes tools treat
# the card as a binary file, a bidi override reorders the text a reader sees.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def visible(text: str) -> str:
    """`text` with each invisible control character written as an escape (\\x00, \\u202e)."""
    return _INVISIBLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                          text)


def mb(n) -> str:
    """A byte count for people: B, kB, MB or GB (decimal units)."""
    if n is None:
        return "n/a"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{int(n):,} B"


def count(n) -> str:
    return "n/a" if n is None else f"{int(n):,}"


def pct(x) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def cell(text) -> str:
    """Text safe inside a Markdown table cell."""
    if text is None:
        return ""
    # brackets escaped: text quoted from documents never becomes a link or an image
    return (visible(str(text)).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")
            .replace(">", "&gt;").replace("[", "\\[").replace("]", "\\]"))


def table(header: list[str], rows: list[list], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"] + [
        "| " + " | ".join(cell(c) if not isinstance(c, Raw) else str(c) for c in row) + " |" for row in rows
    ]


class Raw(str):
    """A table cell that is already Markdown (links, code spans)."""
