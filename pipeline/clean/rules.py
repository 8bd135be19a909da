"""Quality rule sets. Each is a small object with a name, the ordered names of its rules, and
`check(doc) -> Rejection | None`, where a rejection names the rule and says, in a sentence,
what was measured and which threshold it crossed.

Gopher quality / Gopher repetition / C4 / FineWeb reproduce the published heuristics in the
order and with the arithmetic of datatrove's reference filters, so that the same
thresholds keep and drop the same documents (agreement measured in docs/cleaning.md).
"""
from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from functools import cached_property, lru_cache
from operator import methodcaller
from pathlib import Path

import numpy as np

from pipeline.clean.config import C4Config, CodeConfig, FineWebConfig, GopherQualityConfig, GopherRepetitionConfig
from pipeline.clean.text import SENTENCE_END, count_alnum, count_sentences, has_nospace_text, is_nospace_word, split_words


@dataclass(frozen=True)
class Rejection:
    filter: str  # "<rule set>.<rule>", e.g. "gopher_quality.stop_words"
    reason: str


class Doc:
    """One document under inspection; the splits every rule shares are computed once."""

    __slots__ = ("text", "kind", "language", "license", "script_aware", "__dict__")

    def __init__(self, text: str, kind: str = "prose", language: str | None = None, license: str | None = None,
                 script_aware: bool = True):
        self.text = text
        self.kind = kind
        self.language = language
        self.license = license
        self.script_aware = script_aware

    @cached_property
    def words(self) -> list[str]:
        return split_words(self.text, self.script_aware, self.has_nospace)

    @cached_property
    def has_nospace(self) -> bool:
        """Whether the text has Chinese/Japanese/Thai, whose words are counted per character."""
        return self.script_aware and has_nospace_text(self.text)

    @cached_property
    def word_counts(self) -> Counter:
        return Counter(self.words)

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()


def _fmt(x: float) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


class RuleSet:
    name: str = ""
    rules: tuple[str, ...] = ()

    def reject(self, rule: str, measured, op: str, threshold, what: str) -> Rejection:
        return Rejection(f"{self.name}.{rule}", f"{what} is {_fmt(measured)}, {op} {_fmt(threshold)}")

    def check(self, doc: Doc) -> Rejection | None:  # pragma: no cover - interface
        raise NotImplementedError


# ----------------------------------------------------------------------------- helpers


def _is_symbol_char(c: str) -> bool:
    cat = unicodedata.category(c)
    return cat[0] in "PS" or cat == "Cc"


@lru_cache(maxsize=65536)
def _is_symbol_word(w: str) -> bool:
    return all(map(_is_symbol_char, w))


_HAS_LETTER = re.compile(r"[^\W\d_]")


def find_duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items equal to an earlier one, their total characters)."""
    seen: set[str] = set()
    dup, chars = 0, 0
    for x in items:
        if x in seen:
            dup += 1
            chars += len(x)
        else:
            seen.add(x)
    return dup, chars


# ----------------------------------------------------------------------------- Gopher quality


class GopherQuality(RuleSet):
    name = "gopher_quality"
    rules = ("short_doc", "long_doc", "avg_word_length_low", "avg_word_length_high", "hash_ratio",
             "ellipsis_ratio", "bullet_lines", "ellipsis_lines", "alpha_words", "stop_words")

    def __init__(self, c: GopherQualityConfig):
        self.c = c
        self.stop_words = set(c.stop_words)
        self.stop_langs = None if c.stop_words_languages is None else set(c.stop_words_languages)

    def check(self, doc: Doc) -> Rejection | None:
        c, text, words = self.c, doc.text, doc.words
        n_words = len(words)
        # Judge each distinct word once and weigh it by its count.
        counts = doc.word_counts
        symbol = [w for w in counts if not w.isalnum() and _is_symbol_word(w)]
        n_ns = n_words - sum(counts[w] for w in symbol)
        if c.min_doc_words and n_ns < c.min_doc_words:
            return self.reject("short_doc", n_ns, "minimum", c.min_doc_words, "number of words")
        if c.max_doc_words and n_ns > c.max_doc_words:
            return self.reject("long_doc", n_ns, "maximum", c.max_doc_words, "number of words")
        if n_words == 0:
            return Rejection(f"{self.name}.short_doc", "the document has no words")
        # Mean word length means nothing for one-character Chinese/Japanese "words".
        symbol_set = set(symbol)
        nospace = doc.has_nospace
        n_len = total_len = 0
        for w, k in counts.items():
            if w not in symbol_set and not (nospace and is_nospace_word(w)):
                n_len += k
                total_len += len(w) * k
        # Mean word length means nothing for text written without spaces: judge it only when
        # most words are space-separated ones (their mean is then taken without the others).
        if n_len and n_len * 2 >= n_ns:
            avg = total_len / n_len
            if c.min_avg_word_length and avg < c.min_avg_word_length:
                return self.reject("avg_word_length_low", avg, "minimum", c.min_avg_word_length, "mean word length")
            if c.max_avg_word_length and avg > c.max_avg_word_length:
                return self.reject("avg_word_length_high", avg, "maximum", c.max_avg_word_length, "mean word length")
        if c.max_symbol_word_ratio:
            r = text.count("#") / n_words
            if r > c.max_symbol_word_ratio:
                return self.reject("hash_ratio", r, "maximum", c.max_symbol_word_ratio, "'#' per word")
            r = (text.count("...") + text.count("…")) / n_words
            if r > c.max_symbol_word_ratio:
                return self.reject("ellipsis_ratio", r, "maximum", c.max_symbol_word_ratio, "'...' per word")
        lines = doc.lines
        n_lines = len(lines) or 1
        if c.max_bullet_lines_ratio:
            r = sum(1 for s in lines if s.lstrip().startswith(("•", "-"))) / n_lines
            if r > c.max_bullet_lines_ratio:
                return self.reject("bullet_lines", r, "maximum", c.max_bullet_lines_ratio, "share of lines starting with a bullet")
        if c.max_ellipsis_lines_ratio:
            r = sum(1 for s in lines if s.rstrip().endswith(("...", "…"))) / n_lines
            if r > c.max_ellipsis_lines_ratio:
                return self.reject("ellipsis_lines", r, "maximum", c.max_ellipsis_lines_ratio, "share of lines ending with an ellipsis")
        if c.min_alpha_words_ratio:
            search = _HAS_LETTER.search
            n_alpha = n_words - sum(k for w, k in counts.items() if not w.isalpha() and not search(w))
            r = n_alpha / (n_ns if c.alpha_ratio_ignores_punctuation else n_words) if n_ns else 0.0
            if r < c.min_alpha_words_ratio:
                return self.reject("alpha_words", r, "minimum", c.min_alpha_words_ratio, "share of words with a letter")
        if c.min_stop_words and (self.stop_langs is None or doc.language in self.stop_langs):
            n = len(self.stop_words.intersection(counts))
            if n < c.min_stop_words:
                return self.reject("stop_words", n, "minimum", c.min_stop_words, "number of distinct stop words")
        return None


# ----------------------------------------------------------------------------- Gopher repetition

_PARA = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)


class GopherRepetition(RuleSet):
    """Word n-grams are hashed in numpy (uint64 rolling hash over word ids) instead of joined as strings."""

    name = "gopher_repetition"

    def __init__(self, c: GopherRepetitionConfig):
        self.c = c
        self.top = sorted(c.top_n_grams.items())
        self.dup = sorted(c.dup_n_grams.items())
        self.rules = ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac",
                      *(f"top_{n}_gram" for n, _ in self.top), *(f"dup_{n}_grams" for n, _ in self.dup))

    def check(self, doc: Doc) -> Rejection | None:
        c, text = self.c, doc.text
        n_chars = len(text) or 1
        paragraphs = _PARA.split(text.strip())
        dup, chars = find_duplicates(paragraphs)
        if c.dup_para_frac and dup / len(paragraphs) > c.dup_para_frac:
            return self.reject("dup_para_frac", dup / len(paragraphs), "maximum", c.dup_para_frac, "share of duplicated paragraphs")
        if c.dup_para_char_frac and chars / n_chars > c.dup_para_char_frac:
            return self.reject("dup_para_char_frac", chars / n_chars, "maximum", c.dup_para_char_frac, "share of characters in duplicated paragraphs")
        lines = _LINES.split(text)
        dup, chars = find_duplicates(lines)
        if c.dup_line_frac and dup / len(lines) > c.dup_line_frac:
            return self.reject("dup_line_frac", dup / len(lines), "maximum", c.dup_line_frac, "share of duplicated lines")
        if c.dup_line_char_frac and chars / n_chars > c.dup_line_char_frac:
            return self.reject("dup_line_char_frac", chars / n_chars, "maximum", c.dup_line_char_frac, "share of characters in duplicated lines")
        if not self.top and not self.dup:
            return None
        words = doc.words
        if len(words) < 2:
            return None
        counts = doc.word_counts
        vocab = {w: i for i, w in enumerate(counts)}
        ids = np.array(list(map(vocab.__getitem__, words)), dtype=np.int64)
        no_repeats = len(vocab) == len(words)  # then no n-gram repeats either
        cum = np.zeros(len(words) + 1, dtype=np.int64)
        np.cumsum(np.array(list(map(len, vocab)), dtype=np.int64)[ids], out=cum[1:])
        ids = ids.astype(np.uint64)
        # n-gram hashes are built for increasing n from the (n-1)-gram ones, checked, and dropped
        # (a 50 MB document has 10 M words: keeping every n would hold ten such arrays). The
        # default top n (2-4) are all below the default duplicate n (5-10), so rules are checked
        # in datatrove's order; with other settings only the reported rule may differ.
        top, dup = dict(self.top), dict(self.dup)
        max_n = max([*top, *dup])
        h = ids + np.uint64(1)
        dup_done = no_repeats
        for n in range(2, min(max_n, len(words)) + 1):
            h = h[:-1] * _HASH_MUL + ids[n - 1:] + np.uint64(1)
            if n in top:
                if no_repeats:
                    best, top_i = 1, 0  # every n-gram once: the first counts as the most frequent
                else:
                    _, first, counts = np.unique(h, return_index=True, return_counts=True)
                    best = int(counts.max())
                    top_i = int(first[counts == best].min())  # ties: the earliest, as Counter.most_common
                top_len = int(cum[top_i + n] - cum[top_i]) + n - 1
                r = top_len * best / n_chars
                if r > top[n]:
                    return self.reject(f"top_{n}_gram", r, "maximum", top[n], f"share of characters in the most frequent word {n}-gram")
            if n in dup and not dup_done:
                chars = _greedy_duplicate_chars(h, cum, n)
                if chars < 0:
                    dup_done = True  # no n-gram repeats, so no longer one does either
                    continue
                r = chars / n_chars
                if r > dup[n]:
                    return self.reject(f"dup_{n}_grams", r, "maximum", dup[n], f"share of characters in repeated word {n}-grams")
            if dup_done and n >= max(top, default=0):
                break
        return None


def _greedy_duplicate_chars(h: np.ndarray, cum: np.ndarray, n: int) -> int:
    """Characters in n-grams that repeat an earlier one, scanning left to right and jumping
    past each repeat (Gopher's definition, as datatrove's `find_all_duplicate`)."""
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    repeats = np.nonzero(first[inverse] != np.arange(len(h)))[0]
    if len(repeats) == 0:
        return -1  # nothing repeats (callers may skip longer n-grams)
    # Positions between repeats hold first occurrences: they are only added to `seen`, so
    # the scan jumps from one repeat position to the next.
    hl = h.tolist()
    rep = repeats.tolist()
    seen: set[int] = set()
    total, idx, k = 0, 0, 0
    while k < len(rep):
        r = rep[k]
        if r < idx:
            k = bisect_left(rep, idx, k)
            continue
        seen.update(hl[idx:r])
        g = hl[r]
        if g in seen:
            total += int(cum[r + n] - cum[r])
            idx = r + n
        else:
            seen.add(g)
            idx = r + 1
        k += 1
    return total


# ----------------------------------------------------------------------------- C4

_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


class C4Quality(RuleSet):
    """C4's page rules, with its line-level cleaning: the lines C4 keeps become the document's text
    when `remove_lines` is set. Bad words: a page containing one (as a whole word; anywhere for
    Chinese/Japanese/Thai entries) is rejected."""

    name = "c4"
    rules = ("lorem_ipsum", "curly_bracket", "too_few_sentences", "bad_words")

    def __init__(self, c: C4Config):
        self.c = c
        self.end_punct = tuple(c.end_punctuation)
        self.bad_words, self.bad_pattern = _load_bad_words(c.bad_words_path) if c.bad_words_path else (None, None)

    def check(self, doc: Doc) -> Rejection | None:
        c = self.c
        n_sentences = 0
        kept: list[str] = []
        max_len = c.max_word_length if c.max_word_length and c.max_word_length > 0 else None
        min_words = c.min_words_per_line if c.min_words_per_line and c.min_words_per_line > 0 else 0
        count_sents = bool(c.min_num_sentences and c.min_num_sentences > 0)
        for line in doc.text.splitlines():
            line = line.strip()
            words = line.split()
            if max_len is not None and len(line) > max_len and any(len(w) > max_len for w in words):
                continue
            if c.remove_citations and "[" in line:
                line = _CITATION.sub("", line)
            if c.filter_no_terminal_punct and (not line.endswith(self.end_punct) or line.endswith("...")):
                continue
            if len(words) < min_words:
                continue
            low = line.lower()
            if c.filter_lorem_ipsum and "lorem ipsum" in low:
                return Rejection("c4.lorem_ipsum", "the page contains 'lorem ipsum'")
            if c.filter_javascript and "javascript" in low:
                continue
            if c.filter_curly_bracket and "{" in line:
                return Rejection("c4.curly_bracket", "a kept line contains a curly bracket '{'")
            if c.filter_policy and any(p in low for p in _POLICY):
                continue
            kept.append(line)
        # Every kept line holds at least one sentence, so counting is needed only below the minimum.
        if count_sents and len(kept) < c.min_num_sentences:
            n_sentences = sum(count_sentences(split_words(line, doc.script_aware)) for line in kept)
        if count_sents and len(kept) < c.min_num_sentences and n_sentences < c.min_num_sentences:
            return self.reject("too_few_sentences", n_sentences, "minimum", c.min_num_sentences,
                               "number of sentences in lines ending in punctuation")
        if self.bad_words is not None:
            found = self._bad_word(doc.text.lower())
            if found is not None:
                return Rejection("c4.bad_words", f"the page contains the listed bad word {found!r}")
        if c.remove_lines:
            new = "\n".join(kept).strip()
            if new != doc.text:
                doc.text = new
                doc.__dict__.clear()  # the cached splits belong to the old text
        return None

    def _bad_word(self, low: str) -> str | None:
        for w in re.findall(r"\w+", low):
            if w in self.bad_words:
                return w
        if self.bad_pattern is not None:
            m = self.bad_pattern.search(low)
            if m:
                return m.group(1) if m.lastindex else m.group()
        return None


def _load_bad_words(path: str) -> tuple[set[str], re.Pattern | None]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"clean.c4.bad_words_path: no such file {p}")
    words = {w.strip().lower() for w in p.read_text(encoding="utf-8").splitlines() if w.strip()}
    single = {w for w in words if re.fullmatch(r"\w+", w) and not re.search(r"[\u0e00-\u0e7f\u3040-\u30ff\u4e00-\u9fff]", w)}
    rest = sorted(words - single, key=len, reverse=True)
    parts = []
    for w in rest:
        if re.search(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u9fff]", w):
            parts.append(f"({re.escape(w)})")  # no spaces in these scripts: match anywhere
        else:
            parts.append(rf"(?:(?<=\W)|^)({re.escape(w)})(?=\W|$)")
    return single, (re.compile("|".join(parts)) if parts else None)


# ----------------------------------------------------------------------------- FineWeb


class FineWebQuality(RuleSet):
    name = "fineweb"
    rules = ("empty", "line_punct_ratio", "short_line_ratio", "char_dup_ratio", "list_ratio")

    def __init__(self, c: FineWebConfig):
        self.c = c
        self.stop_chars = tuple(SENTENCE_END)

    def check(self, doc: Doc) -> Rejection | None:
        c, text = self.c, doc.text
        lines = list(filter(str.strip, text.split("\n")))
        if not lines:
            return Rejection("fineweb.empty", "the document has no non-blank line")
        n = len(lines)
        if c.line_punct_thr is not None:
            r = sum(map(methodcaller("endswith", self.stop_chars), lines)) / n
            if r < c.line_punct_thr and not (r == 0 and c.line_punct_exclude_zero):
                return self.reject("line_punct_ratio", r, "minimum", c.line_punct_thr, "share of lines ending in terminal punctuation")
        if c.short_line_thr is not None:
            r = int((np.fromiter(map(len, lines), dtype=np.int64, count=n) <= c.short_line_length).sum()) / n
            if r > c.short_line_thr:
                return self.reject("short_line_ratio", r, "maximum", c.short_line_thr, f"share of lines of at most {c.short_line_length} characters")
        if c.char_duplicates_ratio is not None:
            denom = len(text) - text.count("\n")
            r = find_duplicates(lines)[1] / (denom or 1)
            if r > c.char_duplicates_ratio:
                return self.reject("char_dup_ratio", r, "maximum", c.char_duplicates_ratio, "share of characters in duplicated lines")
        if c.new_line_ratio is not None:
            n_words = len(doc.words)
            r = text.count("\n") / n_words if n_words else float("inf")
            if r > c.new_line_ratio:
                return self.reject("list_ratio", r, "maximum", c.new_line_ratio, "newlines per word")
        return None


# ----------------------------------------------------------------------------- code

_SPDX_TOKEN = re.compile(r"\(|\)|[^\s()]+")


class CodeRules(RuleSet):
    name = "code"
    rules = ("license", "max_line_length", "avg_line_length", "alnum_fraction", "autogenerated")

    def __init__(self, c: CodeConfig):
        self.c = c
        self.allowed = None if c.licenses is None else {x.lower() for x in c.licenses}
        self.markers = [m.lower() for m in c.autogenerated_markers]

    def check(self, doc: Doc) -> Rejection | None:
        c, text = self.c, doc.text
        if self.allowed is not None:
            verdict = license_allowed(doc.license, self.allowed)
            if verdict is None and not c.keep_unknown_license:
                return Rejection("code.license", f"license {doc.license!r} is missing or not an SPDX expression; unknown licenses are not kept")
            if verdict is False:
                return Rejection("code.license", f"license {doc.license!r} is not in the allowed list ({len(self.allowed)} permissive licenses)")
        lines = text.split("\n")
        if c.max_line_length:
            longest = max(map(len, lines))
            if longest > c.max_line_length:
                return self.reject("max_line_length", longest, "maximum", c.max_line_length, "longest line (characters)")
        if c.max_avg_line_length:
            avg = (len(text) - len(lines) + 1) / len(lines)
            if avg > c.max_avg_line_length:
                return self.reject("avg_line_length", avg, "maximum", c.max_avg_line_length, "mean line length")
        if c.min_alnum_fraction and text:
            r = count_alnum(text) / len(text)
            if r < c.min_alnum_fraction:
                return self.reject("alnum_fraction", r, "minimum", c.min_alnum_fraction, "share of alphanumeric characters")
        if c.autogenerated_scan_lines and self.markers:
            head = "\n".join(lines[: c.autogenerated_scan_lines]).lower()
            for m in self.markers:
                if m in head:
                    return Rejection("code.autogenerated", f"the first {c.autogenerated_scan_lines} lines contain the marker {m!r}")
        return None


def license_allowed(expr: str | None, allowed: set[str]) -> bool | None:
    """Evaluate an SPDX expression against an allow-list: True/False, or None when unparsable or missing."""
    if not expr or not expr.strip():
        return None
    tokens = _SPDX_TOKEN.findall(expr)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def parse_or():
        nonlocal pos
        v = parse_and()
        while peek() is not None and peek().upper() == "OR":
            pos += 1
            v = parse_and() or v
        return v

    def parse_and():
        nonlocal pos
        v = parse_atom()
        while peek() is not None and peek().upper() == "AND":
            pos += 1
            v = parse_atom() and v
        return v

    def parse_atom():
        nonlocal pos
        t = peek()
        if t is None:
            raise ValueError("unexpected end")
        if t == "(":
            pos += 1
            v = parse_or()
            if peek() != ")":
                raise ValueError("missing )")
            pos += 1
            return v
        if t == ")" or t.upper() in ("AND", "OR", "WITH"):
            raise ValueError(f"unexpected {t}")
        pos += 1
        if peek() is not None and peek().upper() == "WITH":
            pos += 2  # the exception only adds permissions
        return t.rstrip("+").lower() in allowed or t.lower() in allowed

    try:
        v = parse_or()
        if pos != len(tokens):
            return None
        return bool(v)
    except ValueError:
        return None
