"""URL filtering (`clean.urls`): block lists of domains and URL substrings, and bad words in URLs.

Lists are files with one entry per line, the format of the UT1 blacklists (Université
Toulouse 1 Capitole: a folder per category, each with a `domains` and a `urls` file); blank
lines and lines starting with `#` are skipped. Matching runs over a whole batch with Arrow
compute functions (RE2), never per document in Python:

- domains: the URL's host (lowercased, without `www.` and port) or any parent domain of it
  is in a `domains` list (`ads.example.com` is blocked by `example.com`);
- URL substrings: the URL (lowercased, without the scheme and a leading `www.`) contains an
  entry of a `urls` list (UT1's entries are `host/path` prefixes, which this matches too);
- bad words: a word of the list is a whole token of the URL (tokens split on every
  non-alphanumeric character); an entry of several words matches with the separators removed
  (`two-girls` and `twogirls` both match "two girls").

Every removal names the list entry that matched (and the list file).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_HOST = r"^(?:[a-z][a-z0-9+.-]*://)?(?:[^@/?#]*@)?(?:www\d*\.)?(?P<host>[^/:?#]+)"
_STRIP = r"^(?:[a-z][a-z0-9+.-]*://)?(?:www\d*\.)?"
_RE2_ALTERNATIVES = 2000  # entries per RE2 pattern (one huge alternation exceeds RE2's memory budget)
MAX_LABELS = 12  # parent domains tried per host


class BlockListError(ValueError):
    """A block list that cannot be used (missing, empty); names the file."""


def read_list(path: str | Path, what: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise BlockListError(f"clean.urls.{what}: no such file {p}")
    try:
        lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise BlockListError(f"clean.urls.{what}: cannot read {p}: {e}") from None
    entries = [ln.strip().lower() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not entries:
        raise BlockListError(f"clean.urls.{what}: {p} is empty (no entries): an empty block list blocks nothing; "
                             "remove it from the recipe or fill it")
    return entries


@dataclass
class UrlMatch:
    filter: str  # url.domain | url.substring | url.bad_words
    reason: str


def _alternations(entries: list[str], wrap) -> list[str]:
    out = []
    for i in range(0, len(entries), _RE2_ALTERNATIVES):
        part = entries[i:i + _RE2_ALTERNATIVES]
        out.append(wrap("|".join(re.escape(e) for e in sorted(part, key=len, reverse=True))))
    return out


def _hash_index(entries: list[str]) -> tuple[np.ndarray, None]:
    from pipeline.clean.hashing import _hash_strings

    if not entries:
        return np.zeros(0, np.uint64), None
    return np.unique(_hash_strings(pa.array(entries, pa.string()))), None


def _member(values: pa.Array, index: np.ndarray) -> np.ndarray:
    """Whether each (non-empty) string's hash is in the sorted `index`."""
    from pipeline.clean.hashing import _hash_strings

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    out = np.zeros(len(values), bool)
    nonempty = pc.greater(pc.binary_length(values), 0).to_numpy(zero_copy_only=False)
    if not nonempty.any() or not len(index):
        return out
    idx = np.flatnonzero(nonempty)
    h = _hash_strings(values.filter(pa.array(nonempty)))
    pos = np.searchsorted(index, h)
    pos[pos == len(index)] = 0
    out[idx] = index[pos] == h
    return out


class UrlFilter:
    def __init__(self, domain_files: list[str], url_files: list[str], bad_words_file: str | None):
        self.domains: dict[str, str] = {}  # entry -> file it came from
        for f in domain_files:
            name = Path(f).as_posix()
            for e in read_list(f, "block_domains"):
                e = e.removeprefix("www.").strip(".")
                if e and e not in self.domains:
                    self.domains[e] = name
        # hashed once into a sorted array: a UT1 list has millions of domains, and a set lookup must
        # not rebuild a hash table per batch (as pc.is_in would)
        self._domain_hash, self._domain_of = _hash_index(list(self.domains))
        self.substrings: dict[str, str] = {}
        strip = re.compile(_STRIP)
        for f in url_files:
            name = Path(f).as_posix()
            for e in read_list(f, "block_urls"):
                e = strip.sub("", e, count=1)
                if e and e not in self.substrings:
                    self.substrings[e] = name
        self.substring_patterns = _alternations(sorted(self.substrings), lambda alt: f"(?P<m>{alt})")
        self.bad_words: dict[str, str] = {}  # token as matched -> entry as listed
        self.bad_file = Path(bad_words_file).as_posix() if bad_words_file else None
        multi = set()
        if bad_words_file:
            for e in read_list(bad_words_file, "bad_words_path"):
                token = re.sub(r"[^\w]+", "", e)  # several words: matched with separators removed
                if token:
                    self.bad_words.setdefault(token, e)
                    if token != e:
                        multi.add(token)
        token = lambda alt: f"(?:^|[^\\p{{L}}\\p{{N}}])(?P<m>{alt})(?:[^\\p{{L}}\\p{{N}}]|$)"  # noqa: E731
        # (pattern, whether to match it on the URL with - _ + removed: entries of several words)
        self.bad_patterns = ([(p, False) for p in _alternations(sorted(set(self.bad_words) - multi), token)]
                             + [(p, True) for p in _alternations(sorted(multi), token)])

    @property
    def active(self) -> bool:
        return bool(self.domains or self.substrings or self.bad_words)

    def rules(self) -> list[str]:
        return [name for name, on in (("url.domain", self.domains), ("url.substring", self.substrings),
                                      ("url.bad_words", self.bad_words)) if on]

    def check(self, urls: pa.Array | pa.ChunkedArray) -> list[UrlMatch | None]:
        """One answer per row: the first rule the URL fails (domain, substring, bad word), or None."""
        if isinstance(urls, pa.ChunkedArray):
            urls = urls.combine_chunks()
        n = len(urls)
        out: list[UrlMatch | None] = [None] * n
        if not n or not self.active:
            return out
        low = pc.utf8_lower(pc.fill_null(urls, ""))
        todo = pc.invert(pc.equal(low, "")).to_numpy(zero_copy_only=False)
        if self.domains:
            host = pc.fill_null(pc.struct_field(pc.extract_regex(low, _HOST), "host"), "")
            cur = host
            for _ in range(MAX_LABELS):
                hit = _member(cur, self._domain_hash) & todo
                for i in np.flatnonzero(hit):
                    entry = cur[i].as_py()
                    if entry not in self.domains:  # a hash collision (about 1 in 2**64 per lookup)
                        continue
                    out[i] = UrlMatch("url.domain", f"host {host[i].as_py()!r} is in the domain block list as "
                                                    f"{entry!r} ({self.domains[entry]})")
                    todo[i] = False
                nxt = pc.replace_substring_regex(cur, r"^[^.]*\.", "", max_replacements=1)
                if pc.all(pc.equal(nxt, cur)).as_py():
                    break
                cur = nxt
        if self.substring_patterns:
            stripped = pc.replace_substring_regex(low, _STRIP, "", max_replacements=1)
            for pat in self.substring_patterns:
                idx = np.flatnonzero(todo)
                if not len(idx):
                    break
                sub = stripped.take(pa.array(idx))
                m = pc.struct_field(pc.extract_regex(sub, pat), "m")
                valid = m.is_valid().to_numpy(zero_copy_only=False)
                for j in np.flatnonzero(valid):
                    entry = m[j].as_py()
                    out[idx[j]] = UrlMatch("url.substring", f"URL contains {entry!r} from the URL block list "
                                                            f"({self.substrings[entry]})")
                    todo[idx[j]] = False
        if self.bad_patterns:
            for pat, several in self.bad_patterns:
                idx = np.flatnonzero(todo)
                if not len(idx):
                    break
                sub = low.take(pa.array(idx))
                # an entry of several words matches them written together or joined by - _ +
                variants = (sub, pc.replace_substring_regex(sub, r"[-_+]", "")) if several else (sub,)
                for variant in variants:
                    m = pc.struct_field(pc.extract_regex(variant, pat), "m")
                    valid = m.is_valid().to_numpy(zero_copy_only=False)
                    for j in np.flatnonzero(valid):
                        if not todo[idx[j]]:
                            continue
                        entry = m[j].as_py()
                        out[idx[j]] = UrlMatch("url.bad_words", f"URL has the listed bad word {self.bad_words[entry]!r} "
                                                                f"({self.bad_file})")
                        todo[idx[j]] = False
        return out
