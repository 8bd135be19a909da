"""Text repair and the word/sentence splitting the quality rules measure with.

Words: the published rule sets were tuned on (and datatrove measures them with) spaCy's
blank English tokenizer: split on whitespace, then peel punctuation prefixes and suffixes,
contractions ("do" + "n't") and infixes (hyphens between letters, ellipses). `split_words`
reimplements those rules with a fast path for plain alphanumeric words, so thresholds mean
what they meant in the papers without spaCy at run time (agreement measured in
docs/cleaning.md). With `script_aware=True`, Chinese/Japanese characters count as one word
each and Thai runs as 4-letter units, so text without spaces is not one giant "word".
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import ftfy
import numpy as np
from ftfy.badness import is_bad

# ----------------------------------------------------------------------------- repair

# ftfy settings for corpus text: fix encodings and broken Unicode, but never rewrite
# characters a writer chose (curly quotes, fullwidth CJK punctuation, HTML entities
# inside code).
_FTFY = ftfy.TextFixerConfig(
    unescape_html=False,
    uncurl_quotes=False,
    fix_character_width=False,
    normalization=None,  # done by us, so that `normalization: null` means none
    explain=False,
)

# C0 and C1 controls except tab and newline (CR is handled with line ends), DEL, BOM and
# non-characters. NUL is among them.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\ufffe\uffff]")
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_CRLF = re.compile("\r\n?")
_BLANK_LINES = re.compile(r"\n{3,}")


def bad_char_count(text: str) -> int:
    """Control characters (not tab/newline/CR) and U+FFFD: what binary data decoded as text looks like."""
    if _BAD_CHARS.search(text) is None:
        return 0
    return len(_BAD_CHARS.findall(text))


# What ftfy can repair besides mojibake (which `is_bad` detects): terminal escapes, C1
# controls, ligatures, Unicode line separators, replacement characters next to bad bytes.
_FTFY_TRIGGER = re.compile("[\x1b\x80-\x9f\ufb00-\ufb06\u2028\u2029\ufffd]")


# UTF-8 read as Latin-1/Windows-1252 leaves a lead character in U+00C2..U+00F4 followed by a
# continuation character (U+0080..U+00BF or a Windows-1252 extra); other codecs leave box
# drawing characters. Text without any of these cannot be mojibake, so ftfy's costly
# `is_bad` scan (about 1 ms per 5 kB) runs only on the few documents that have one.
_MOJIBAKE_HINT = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc"
    "\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]|[\u2500-\u259f]"
)


def needs_ftfy(text: str) -> bool:
    """Whether ftfy could change `text` (ASCII never needs it); skips ftfy's per-line work for clean text."""
    if text.isascii():
        return "\x1b" in text
    if _FTFY_TRIGGER.search(text):
        return True
    return _MOJIBAKE_HINT.search(text) is not None and is_bad(text)


def repair(text: str, fix_text: bool, normalization: str | None, remove_control: bool, whitespace: bool, code: bool) -> str:
    """ftfy (only where it could change something), control characters, Unicode normal form, whitespace."""
    if fix_text and needs_ftfy(text):
        text = ftfy.fix_text(text, _FTFY)
    if remove_control and _CONTROL.search(text) is not None:
        text = _CONTROL.sub("", text)
    if normalization and not text.isascii():
        text = unicodedata.normalize(normalization, text)
    if whitespace:
        if "\r" in text:
            text = _CRLF.sub("\n", text)
        if " \n" in text or "\t\n" in text or "\xa0\n" in text or text.endswith((" ", "\t", "\xa0")):
            # line by line: a regex with `$` would be quadratic on a long run of spaces
            text = "\n".join(line.rstrip(" \t\xa0") for line in text.split("\n"))
        if code:
            text = text.strip("\n")
        else:
            text = _BLANK_LINES.sub("\n\n", text).strip()
    return text


# ----------------------------------------------------------------------------- words

# Characters spaCy peels off the front/back of a whitespace-separated chunk.
_PUNCT = set("…,:;!?¿؟¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪")
_QUOTES = set("'\"”“`‘´’‚,„»«「」『』（）〔〕【】《》〈〉〈〉⟦⟧")
_CURRENCY = set("$£€¥฿₽﷼₴₠₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₵₶₷₸₹₺₻₼₾₿")
_PREFIX_CHARS = _PUNCT | _QUOTES | _CURRENCY | set("§%=—–")
_SUFFIX_CHARS = _PUNCT | _QUOTES | set("—–")
_UNITS = set(
    "km/h m/s mbar km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz "
    "m/s km/h kmh mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K %".split()
)
# Abbreviations and other chunks kept whole although they end in a period.
_KEEP_WHOLE = set(
    "'d a.m. Adm. Bros. co. Co. Corp. D.C. Dr. e.g. E.g. E.G. Gen. Gov. i.e. I.e. I.E. Inc. Jr. Ltd. "
    "Md. Messrs. Mo. Mont. Mr. Mrs. Ms. p.m. Ph.D. Prof. Rep. Rev. Sen. St. vs. v.s. C++ '' "
    "Jan. Feb. Mar. Apr. Jun. Jul. Aug. Sep. Sept. Oct. Nov. Dec. Ala. Ariz. Ark. Calif. Colo. Conn. "
    "Del. Fla. Ga. Ill. Ind. Kan. Kans. Ky. La. Mass. Mich. Minn. Miss. N.C. N.D. N.H. N.J. N.M. N.Y. "
    "Neb. Nebr. Nev. Okla. Ore. Pa. Tenn. Va. Wash. Wis. Mt. S.C. Ak. Ia. Id. and/or "
    "'s 'S 're 'll 'd 'em 'bout 'cause 'nuff n't ’s ’S ’re ’ll ’d ’em ’’ ’ n’t".split()
    + [c + "." for c in "abcdefghijklmnopqrstuvwxyzäöü"]
)
_EMOTICONS = set(":) :-) :( :-( ;) ;-) :D :P :p :/ :-/ <3 :') =) (: ): :] [: xD XD o.O O.o ._. :o :O".split())
_CONTRACTION = re.compile(r"^(.+?)(n['’]t|['’](?:re|ve|ll|d|m|s|S|RE|VE|LL|D|M))$")
_CONTRACTION_PRONOUNS = re.compile(r"(?i)^(?:i|you|he|she|it|we|they|that|there|who|what|where|how|this|here)$")
_URL = re.compile(r"^(?:(?:https?|ftp)://|www\.)\S+$|^[\w.+-]+@[\w-]+\.[\w.-]+$", re.I)
_LOWER = "a-zß-öø-ÿ"
_UPPER = "A-ZÀ-ÖØ-Þ"
_ICONS = "\u00a6\u00a9\u00ae\u00b0\u2100-\u214f\u2190-\u21ff\u2300-\u23ff\u2500-\u27bf\u2900-\u2bff\U0001f000-\U0001faff"
_INFIX = re.compile(
    rf"\.\.+|…|[{_ICONS}]"
    r"|(?<=[0-9])[+\-*^](?=[0-9-])"
    rf"|(?<=[{_LOWER}'\"”“`‘´’])\.(?=[{_UPPER}'\"”“`‘´’])"
    r"|(?<=[^\W\d_]),(?=[^\W\d_])"
    r"|(?<=[^\W\d_])(?:---|--|——|-|–|—|~)(?=[^\W\d_])"
    r"|(?<=[^\W_])[:<>=/](?=[^\W\d_])"
)
_TRAILING_PERIOD_OK = set("0123456789%²-+") | _PUNCT | _QUOTES | set("|")


def _is_symbol(ch: str) -> bool:
    return unicodedata.category(ch) == "So"


def _split_chunk(chunk: str, out: list[str]) -> None:
    """spaCy-style affix splitting of one whitespace-free chunk; appends tokens to `out`."""
    if chunk in _KEEP_WHOLE or chunk in _EMOTICONS:
        out.append(chunk)
        return
    suffixes: list[str] = []
    s = chunk
    while s:
        if s in _KEEP_WHOLE or s in _EMOTICONS:
            break
        changed = False
        # one prefix
        c = s[0]
        if s.startswith("..") or c == "…":
            n = 1 if c == "…" else len(s) - len(s.lstrip("."))
            out.append(s[:n])
            s = s[n:]
            changed = True
        elif (c in _PREFIX_CHARS or _is_symbol(c) or (c == "+" and not s[1:2].isdigit())) and len(s) > 0:
            out.append(c)
            s = s[1:]
            changed = True
        if not s or s in _KEEP_WHOLE or s in _EMOTICONS:
            break
        # one suffix
        last = s[-1]
        if s.endswith(".."):
            n = len(s) - len(s.rstrip("."))
            if n < len(s):
                suffixes.append(s[-n:])
                s = s[:-n]
                changed = True
        elif last == "…" and len(s) > 1:
            suffixes.append(last)
            s = s[:-1]
            changed = True
        elif len(s) > 1 and (last in _SUFFIX_CHARS or _is_symbol(last)):
            suffixes.append(last)
            s = s[:-1]
            changed = True
        elif len(s) > 2 and s[-2:] in ("'s", "'S", "’s", "’S"):
            suffixes.append(s[-2:])
            s = s[:-2]
            changed = True
        elif last == "." and len(s) > 1:
            prev = s[-2]
            if prev in _TRAILING_PERIOD_OK or _lower_or_uncased(prev) or (len(s) > 2 and s[-2].isupper() and s[-3].isupper()):
                suffixes.append(".")
                s = s[:-1]
                changed = True
        elif last == "+" and len(s) > 1 and s[-2].isdigit():
            suffixes.append("+")
            s = s[:-1]
            changed = True
        else:
            k = _unit_suffix(s)
            if k:
                suffixes.append(s[-k:])
                s = s[:-k]
                changed = True
        if not changed:
            break
    if s:
        m = _CONTRACTION.match(s)
        if m and ((m.group(2)[0] in "nN" and m.group(1).isalpha()) or _CONTRACTION_PRONOUNS.match(m.group(1))):
            out.append(m.group(1))
            out.append(m.group(2))
        elif _URL.match(s) or s in _KEEP_WHOLE:
            out.append(s)
        else:
            start = 0
            for m in _INFIX.finditer(s):
                if m.start() > start:
                    out.append(s[start:m.start()])
                out.append(m.group())
                start = m.end()
            if start < len(s):
                out.append(s[start:])
    out.extend(reversed(suffixes))


# Chinese characters, kana and Thai: scripts written without spaces between words.
_NOSPACE = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]|[\u0e00-\u0e7f]+")
_THAI_UNIT = 4


def has_nospace_text(text: str) -> bool:
    """Whether `text` has Chinese/Japanese/Thai characters (all lie above U+0E00: `max` is a fast first test)."""
    return not text.isascii() and max(text) >= "\u0e00" and _NOSPACE.search(text) is not None


def split_words(text: str, script_aware: bool = True, nospace: bool | None = None) -> list[str]:
    """Words as the quality rules count them (see the module docstring)."""
    out: list[str] = []
    append, extend = out.append, out.extend
    if nospace is None:
        nospace = has_nospace_text(text)
    nospace = script_aware and nospace
    # Chunks other than plain words repeat a lot ("," "(" "'s" "。"): split each once per process.
    cache = _CACHE[script_aware]
    get = cache.get
    for chunk in text.split():
        if chunk.isalpha() and (not nospace or chunk.isascii()):
            append(chunk)
            continue
        toks = get(chunk)
        if toks is None:
            toks = _chunk_tokens(chunk, script_aware)
            if len(cache) < _CACHE_SIZE:
                cache[chunk] = toks
        if len(toks) == 1:
            append(toks[0])
        else:
            extend(toks)
    return out


_CACHE: dict[bool, dict[str, tuple[str, ...]]] = {True: {}, False: {}}
_CACHE_SIZE = 200_000


def _chunk_tokens(chunk: str, script_aware: bool) -> tuple[str, ...]:
    out: list[str] = []
    if len(chunk) == 1 or len(chunk) > _MAX_AFFIX_CHUNK:
        out.append(chunk)  # one character cannot split; a 500-character "word" is garbage either way
    elif script_aware and not chunk.isascii() and _NOSPACE.search(chunk):
        _split_nospace(chunk, out)
    elif chunk.isalnum():
        _split_alnum(chunk, out)
    else:
        m = _SIMPLE.match(chunk)
        if m is None or chunk in _KEEP_WHOLE or chunk in _EMOTICONS:
            _split_chunk(chunk, out)
        else:
            pre, word, suf = m.groups()
            # a final period stays on "Mr." and on a single capital ("A."): spaCy's exceptions
            if suf[:1] == "." and (word + "." in _KEEP_WHOLE or (word[-1].isupper() and not word[-2:-1].isupper())):
                _split_chunk(chunk, out)
            else:
                if pre:
                    out.extend(_affix_tokens(pre))
                out.append(word)
                if suf:
                    out.extend(_affix_tokens(suf))
    return tuple(out)


# The common shape of a chunk: punctuation, a plain word or number, punctuation, where
# spaCy peels every affix character (a run of dots stays one token) and a final period
# splits (after a lowercase or uncased letter, two capitals or a digit).
_MARKS = (
    "\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7\u0610-\u061a\u064b-\u065f"
    "\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7\u06e8\u06ea-\u06ed\u0900-\u0903\u093a-\u094f\u0951-\u0957"
    "\u0962\u0963\u0981-\u0983\u09bc-\u09d7\u09e2\u09e3\u0a01-\u0a03\u0a3c-\u0a51\u0a70\u0a71\u0a75"
    "\u0a81-\u0a83\u0abc-\u0acd\u0ae2\u0ae3\u0b01-\u0b03\u0b3c-\u0b57\u0b62\u0b63\u0b82\u0bbe-\u0bcd"
    "\u0bd7\u0c00-\u0c04\u0c3e-\u0c56\u0c62\u0c63\u0c81-\u0c83\u0cbc-\u0cd6\u0ce2\u0ce3\u0d00-\u0d03"
    "\u0d3b\u0d3c\u0d3e-\u0d4d\u0d57\u0d62\u0d63\u0d81-\u0d83\u0dca-\u0df3\u0e31\u0e34-\u0e3a\u0e47-\u0e4e"
    "\u0eb1\u0eb4-\u0ebc\u0ec8-\u0ecd\u102b-\u103e\u1056-\u1059\u17b4-\u17d3\u1ab0-\u1aff\u1dc0-\u1dff"
    "\u200c\u200d\u20d0-\u20ff\ufe00-\ufe0f\ufe20-\ufe2f"
)
_SIMPLE = re.compile(
    rf"^([\"'(\[{{<“‘«*_#&]*)((?:[^\W\d_]|[{_MARKS}])+|[0-9]+)([\"')\]}}>”’»,;:!?.*_#&]*)$"
)
_AFFIX_TOKENS = re.compile(r"\.\.+|.")


def _affix_tokens(s: str) -> list[str]:
    return _AFFIX_TOKENS.findall(s) if len(s) > 1 else [s]


_MAX_AFFIX_CHUNK = 500


def _split_alnum(chunk: str, out: list[str]) -> None:
    """Letters and digits only: one word, unless a unit follows a number ("10km" -> "10", "km")."""
    if not chunk.isalpha() and not chunk.isdigit():
        k = _unit_suffix(chunk)
        if k:
            out.append(chunk[:-k])
            out.append(chunk[-k:])
            return
    out.append(chunk)


def _unit_suffix(s: str) -> int:
    """Length of a unit or currency sign that ends `s` right after a digit ("11.8%", "10km", "5$"), else 0."""
    for k in (4, 3, 2, 1):
        if len(s) > k and s[-k - 1] in "0123456789" and (s[-k:] in _UNITS or s[-k:] in _CURRENCY):
            return k
    return 0


def _lower_or_uncased(c: str) -> bool:
    """A lowercase letter, or a letter/mark of a script without case (Sinhala, Arabic, Tamil, ...)."""
    if c.islower():
        return True
    if c.isupper() or c.isdigit():
        return False
    return c.isalpha() or unicodedata.category(c) in ("Mn", "Mc")


def _split_nospace(chunk: str, out: list[str]) -> None:
    start = 0
    for m in _NOSPACE.finditer(chunk):
        if m.start() > start:
            _split_chunk(chunk[start:m.start()], out)
        run = m.group()
        if run[0] >= "\u0e00" and run[0] <= "\u0e7f":
            out.extend(run[i : i + _THAI_UNIT] for i in range(0, len(run), _THAI_UNIT))
        else:
            out.append(run)
        start = m.end()
    if start < len(chunk):
        _split_chunk(chunk[start:], out)


def is_nospace_word(word: str) -> bool:
    return not word.isascii() and bool(_NOSPACE.match(word))


_ASCII_SYMBOL = [not (chr(i).isalnum() or chr(i).isspace()) for i in range(128)]


def count_symbols(text: str) -> int:
    """Characters that are neither alphanumeric nor whitespace."""
    if text.isascii():
        counts = np.bincount(np.frombuffer(text.encode("ascii"), dtype=np.uint8), minlength=128)
        return int(counts[_ASCII_SYMBOL_IDX].sum())
    return len(_SYMBOL.findall(text))


def count_alnum(text: str) -> int:
    if text.isascii():
        counts = np.bincount(np.frombuffer(text.encode("ascii"), dtype=np.uint8), minlength=128)
        return int(counts[_ASCII_ALNUM_IDX].sum())
    return sum(map(len, _ALNUM_RUN.findall(text)))


_ASCII_SYMBOL_IDX = np.array([i for i in range(128) if _ASCII_SYMBOL[i]])
_ASCII_ALNUM_IDX = np.array([i for i in range(128) if chr(i).isalnum()])
_SYMBOL = re.compile(r"[^\w\s]|_")
_ALNUM_RUN = re.compile(r"[^\W_]+")


# ----------------------------------------------------------------------------- sentences

# spaCy's sentencizer: a sentence ends after one of these tokens, before the next token
# that is not punctuation.
SENTENCE_END = set("!.?։؟۔܀܁܂߹।॥၊။።፧፨᙮᜵᜶᠃᠉᥄᥅᪨᪩᪪᪫᭚᭛᭞᭟᰻᰼᱾᱿‼‽⁇⁈⁉⸮⸼꓿꘎꘏꛳꛷꡶꡷꣎꣏꤯꧈꧉꩝꩞꩟꫰꫱꯫﹒﹖﹗！．？｡。")


@lru_cache(maxsize=4096)
def _is_punct_token(tok: str) -> bool:
    return all(unicodedata.category(c).startswith("P") for c in tok)


def count_sentences(words: list[str]) -> int:
    """Number of sentences in a line, counted as spaCy's sentencizer counts them."""
    if not words:
        return 0
    n = 1
    seen_end = False
    for tok in words:
        is_end = tok in SENTENCE_END
        if seen_end and not is_end and not _is_punct_token(tok):
            n += 1
            seen_end = False
        elif is_end:
            seen_end = True
    return n
