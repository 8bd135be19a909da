"""The clean stage: repair -> basic checks -> language -> rule sets -> PII, one shard at a time.

Every input document ends either in the kept table (CLEAN_SCHEMA) or in the rejected table
(REJECTED_SCHEMA) with the filter that removed it and a sentence saying why. Each document
is judged on its own, so the output is the same whatever the number of workers.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.clean.config import CleanConfig
from pipeline.clean.custom import apply_filter, load_filter
from pipeline.clean.language import identify
from pipeline.clean.pii import PIICounts, PIIScrubber
from pipeline.clean.rules import C4Quality, CodeRules, Doc, FineWebQuality, GopherQuality, GopherRepetition, Rejection, RuleSet
from pipeline.clean.text import bad_char_count, count_symbols, repair
from pipeline.io import text_bytes, write_parquet
from pipeline.records import CleanStats, FilterStats, RejectExample
from pipeline.schema import CLEAN_SCHEMA, DOC_SCHEMA, conform, rejected_table

STAGE = "clean"
EXAMPLES_PER_FILTER = CleanStats.examples_per_filter
EXAMPLE_CHARS = 200
OVERSIZE_EXCERPT_CHARS = 10_000

# Basic checks every document passes through, in order, before the rule sets.
BASIC_FILTERS = ("binary", "min_chars", "max_chars")
PROSE_FILTERS = ("symbol_ratio", "language", "language_score")

CODE_LANGUAGES = {
    ".py": "python", ".pyi": "python", ".pyx": "python", ".ipynb": "python", ".c": "c", ".h": "c", ".cc": "c++",
    ".cpp": "c++", ".hpp": "c++", ".rs": "rust", ".go": "go", ".js": "javascript", ".ts": "typescript",
    ".java": "java", ".sh": "shell", ".rb": "ruby", ".jl": "julia", ".r": "r", ".sql": "sql",
}
_LINE_SUFFIX = re.compile(r":\d+$")


@dataclass
class CleanResult:
    kept: pa.Table  # CLEAN_SCHEMA
    rejected: pa.Table  # REJECTED_SCHEMA, stage "clean"
    stats: CleanStats


class Cleaner:
    """The configured chain; build once per process, apply to many tables."""

    def __init__(self, config: CleanConfig):
        self.c = config
        self.code_rules: list[RuleSet] = [CodeRules(config.code)] if config.code.enabled else []
        prose: list[RuleSet] = []
        # FineWeb's order: repetition, quality, C4 (which may rewrite the text), FineWeb.
        if config.gopher_repetition.enabled:
            prose.append(GopherRepetition(config.gopher_repetition))
        if config.gopher_quality.enabled:
            prose.append(GopherQuality(config.gopher_quality))
        if config.c4.enabled:
            prose.append(C4Quality(config.c4))
        if config.fineweb.enabled:
            prose.append(FineWebQuality(config.fineweb))
        self.prose_rules = prose
        p = config.pii
        self.scrub = PIIScrubber(p.email, p.ip, p.phone) if p.enabled else None
        self.languages = set(config.languages) if config.languages is not None else None
        self.custom = []  # (filter name, callable, label for errors)
        for cf in config.custom_filters:
            fn, file = load_filter(cf.function, cf.folder)
            self.custom.append((cf.filter_name, fn, f"clean filter {cf.function} ({file})"))

    def filter_names(self) -> list[str]:
        """Every filter that can reject, in pipeline order (the funnel's rows)."""
        names = list(BASIC_FILTERS)
        for rs in self.code_rules:
            names += [f"{rs.name}.{r}" for r in rs.rules]
        names += list(PROSE_FILTERS)
        for rs in self.prose_rules:
            names += [f"{rs.name}.{r}" for r in rs.rules]
        return names + [name for name, _, _ in self.custom]

    def judge(self, raw: str, kind: str, license: str | None, path: str | None):
        """-> (text, language, score, Rejection | None) for one document."""
        c = self.c
        code = kind == "code"
        if c.max_chars is not None and len(raw) > c.max_chars:  # before repair: bounds memory per document
            # rejected/ keeps an excerpt: a copy of the whole text (and its PII pass) would cost its size again
            return raw[:OVERSIZE_EXCERPT_CHARS], None, None, Rejection(
                "max_chars", f"{len(raw)} characters, maximum {c.max_chars} (rejected/ keeps the first "
                             f"{OVERSIZE_EXCERPT_CHARS:,})")
        if c.max_bad_char_ratio is not None and raw:
            bad = bad_char_count(raw)
            if bad and bad / len(raw) > c.max_bad_char_ratio:
                return raw, None, None, Rejection(
                    "binary", f"share of control/replacement characters is {bad / len(raw):.3g}, maximum {c.max_bad_char_ratio:g}: binary data, not text")
        text = repair(raw, c.fix_text, c.normalization, c.remove_control_chars, c.normalize_whitespace, code)
        if len(text) < c.min_chars:
            return text, None, None, Rejection("min_chars", f"{len(text)} characters after repair, minimum {c.min_chars}")
        if code:
            language = code_language(path)
            doc = Doc(text, kind, language, license, c.script_aware_words)
            for rs in self.code_rules:
                rej = rs.check(doc)
                if rej is not None:
                    return doc.text, language, None, rej
            return doc.text, language, None, None
        if c.max_symbol_ratio is not None:
            r = count_symbols(text) / len(text) if text else 0.0
            if r > c.max_symbol_ratio:
                return text, None, None, Rejection("symbol_ratio", f"share of symbol characters is {r:.3g}, maximum {c.max_symbol_ratio:g}")
        language, score = identify(text, c.language_id_bytes)
        if self.languages is not None and language not in self.languages:
            return text, language, score, Rejection("language", f"language is {language!r} (score {score:.2f}), not one of {sorted(self.languages)}")
        if c.min_language_score and (score or 0.0) < c.min_language_score:
            return text, language, score, Rejection("language_score", f"language score of {language!r} is {score:.3g}, minimum {c.min_language_score:g}")
        doc = Doc(text, kind, language, license, c.script_aware_words)
        for rs in self.prose_rules:
            rej = rs.check(doc)
            if rej is not None:
                return doc.text, language, score, rej
        return doc.text, language, score, None

    def clean_table(self, table: pa.Table) -> CleanResult:
        t0 = time.perf_counter()
        table = conform(table, DOC_SCHEMA)
        cols = {name: table.column(name).to_pylist() for name in DOC_SCHEMA.names}
        n = table.num_rows
        kept_idx: list[int] = []
        kept_text: list[str] = []
        kept_lang: list[str | None] = []
        kept_score: list[float | None] = []
        rej = {"id": [], "source": [], "filter": [], "reason": [], "text": []}
        funnel = {name: {"docs": 0, "bytes": 0, "examples": []} for name in self.filter_names()}
        pii = PIICounts()

        def reject(i: int, rejection: Rejection, text: str):
            doc_id = cols["id"][i]
            rej["id"].append(doc_id)
            rej["source"].append(cols["source"][i])
            rej["filter"].append(rejection.filter)
            rej["reason"].append(rejection.reason)
            rej["text"].append(text)
            f = funnel.setdefault(rejection.filter, {"docs": 0, "bytes": 0, "examples": []})
            f["docs"] += 1
            f["bytes"] += len(cols["text"][i].encode("utf-8"))
            if len(f["examples"]) < EXAMPLES_PER_FILTER:
                f["examples"].append({"id": doc_id, "reason": rejection.reason, "text": text[:EXAMPLE_CHARS]})

        for i in range(n):
            raw = cols["text"][i]
            kind = cols["kind"][i] or "prose"
            text, lang, score, rejection = self.judge(raw, kind, cols["license"][i], cols["path"][i])
            if rejection is None:
                if self.scrub is not None:
                    text = self.scrub(text, pii)
                kept_idx.append(i)
                kept_text.append(text)
                kept_lang.append(lang)
                kept_score.append(score)
                continue
            if self.scrub is not None:
                text = self.scrub(text)
            reject(i, rejection, text)

        base = table.take(pa.array(kept_idx, type=pa.int64())) if kept_idx else table.slice(0, 0)
        kept = pa.Table.from_arrays(
            [base.column(name) if name != "text" else pa.array(kept_text, pa.string()) for name in DOC_SCHEMA.names]
            + [pa.array(kept_lang, pa.string()), pa.array(kept_score, pa.float32())],
            schema=CLEAN_SCHEMA,
        )
        for name, fn, label in self.custom:  # on the kept documents, as they would be written
            if not kept.num_rows:
                break
            keep, reasons = apply_filter(fn, label, kept)
            texts = kept.column("text")
            for j in np.flatnonzero(~keep):
                reject(kept_idx[j], Rejection(name, reasons[j] or f"rejected by {label}"), texts[j].as_py())
            kept = kept.filter(pa.array(keep))
            kept_idx = [i for i, k in zip(kept_idx, keep) if k]
        languages: dict[str, int] = {}
        for lang in kept.column("language").to_pylist():
            languages[lang or "und"] = languages.get(lang or "und", 0) + 1
        rejected = rejected_table(rej["id"], rej["source"], STAGE, rej["filter"], rej["reason"], rej["text"])
        stats = CleanStats(
            docs_in=n, docs_out=kept.num_rows, docs_rejected=rejected.num_rows,
            bytes_in=text_bytes(table), bytes_out=text_bytes(kept), seconds=round(time.perf_counter() - t0, 3),
            rejected_by_filter={name: f["docs"] for name, f in funnel.items() if f["docs"]},
            filters={name: FilterStats(docs=f["docs"], bytes=f["bytes"],
                                       examples=[RejectExample(**e) for e in f["examples"]])
                     for name, f in funnel.items()},
            pii={"email": pii.email, "ip": pii.ip, "phone": pii.phone},
            languages=dict(sorted(languages.items(), key=lambda kv: (-kv[1], kv[0]))),
        )
        return CleanResult(kept, rejected, stats)


def code_language(path: str | None) -> str:
    if not path:
        return "code"
    suffix = Path(_LINE_SUFFIX.sub("", path)).suffix.lower()
    return CODE_LANGUAGES.get(suffix, "code")


_CLEANERS: dict[str, Cleaner] = {}


def _cleaner(config: CleanConfig) -> Cleaner:
    # One Cleaner per distinct config per process (bad-word lists and rule objects are built once).
    key = config.model_dump_json()
    if key not in _CLEANERS:
        _CLEANERS[key] = Cleaner(config)
    return _CLEANERS[key]


def clean_table(table: pa.Table, config: CleanConfig) -> CleanResult:
    """Clean one table of DOC_SCHEMA documents."""
    return _cleaner(config).clean_table(table)


def clean_shard(in_path, out_path, rejected_path, config: CleanConfig) -> CleanStats:
    """Read one DOC_SCHEMA shard, write the kept shard and the rejected shard (both atomically,
    even when empty) and return the shard's stats."""
    t0 = time.perf_counter()
    in_path = Path(in_path)
    try:
        table = pq.read_table(in_path)
    except Exception as e:  # a corrupt shard is named, not swallowed
        raise IOError(f"{in_path}: cannot read Parquet shard: {e}") from e
    missing = [n for n in ("id", "text") if n not in table.column_names]
    if missing:
        raise ValueError(f"{in_path}: shard lacks column(s) {missing} (columns: {table.column_names})")
    result = clean_table(table, config)
    write_parquet(result.kept, out_path)
    write_parquet(result.rejected, rejected_path)
    result.stats.seconds = round(time.perf_counter() - t0, 3)
    return result.stats
