"""The clean stage: URLs -> repair -> basic checks -> language -> rule sets -> PII ->
decontamination -> learned quality score -> custom filters, one shard at a time.

Every input document ends either in the kept table (CLEAN_SCHEMA) or in the rejected table
(REJECTED_SCHEMA) with the filter that removed it and a sentence saying why. Each document
is judged on its own, so the output is the same whatever the number of workers.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.clean.config import CleanConfig
from pipeline.clean.custom import apply_filter, load_filter
from pipeline.clean.decontam import build_index
from pipeline.clean.quality import QualityModel
from pipeline.clean.urls import UrlFilter
from pipeline.clean.language import identify
from pipeline.clean.pii import PIICounts, PIIScrubber
from pipeline.clean.rules import C4Quality, CodeRules, Doc, FineWebQuality, GopherQuality, GopherRepetition, Rejection, RuleSet
from pipeline.clean.text import bad_char_count, count_symbols, repair
from pipeline.io import text_bytes, write_parquet
from pipeline.records import (QUALITY_BINS, CleanStats, ContaminationStats, FilterStats, QualitySourceStats,
                              QualityStats, RejectExample)
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
        self.urls = None
        if config.urls.active:
            domains, url_files = config.urls.files()
            self.urls = UrlFilter(domains, url_files, config.urls.bad_words_path)
        d = config.decontaminate
        self.decontam = build_index(d.entries(), d.ngram) if d is not None else None
        q = config.quality
        self.quality = QualityModel.load(q.model) if q is not None else None
        self.custom = []  # (filter name, callable, label for errors)
        for cf in config.custom_filters:
            fn, file = load_filter(cf.function, cf.folder)
            self.custom.append((cf.filter_name, fn, f"clean filter {cf.function} ({file})"))

    def filter_names(self) -> list[str]:
        """Every filter that can reject, in pipeline order (the funnel's rows)."""
        names = self.urls.rules() if self.urls is not None else []
        names += list(BASIC_FILTERS)
        for rs in self.code_rules:
            names += [f"{rs.name}.{r}" for r in rs.rules]
        names += list(PROSE_FILTERS)
        for rs in self.prose_rules:
            names += [f"{rs.name}.{r}" for r in rs.rules]
        if self.decontam is not None and self.c.decontaminate.action == "remove":
            names += [f"decontaminate.{s.name}" for s in self.decontam.sets]
        if self.quality is not None:
            names.append(f"quality.{self.c.quality.name}")
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
        rej = {"id": [], "source": [], "filter": [], "reason": [], "text": [], "quality_score": []}
        funnel = {name: {"docs": 0, "bytes": 0, "examples": []} for name in self.filter_names()}
        pii = PIICounts()

        def reject(i: int, rejection: Rejection, text: str, quality_score: float | None = None):
            doc_id = cols["id"][i]
            rej["id"].append(doc_id)
            rej["source"].append(cols["source"][i])
            rej["filter"].append(rejection.filter)
            rej["reason"].append(rejection.reason)
            rej["text"].append(text)
            rej["quality_score"].append(quality_score)
            f = funnel.setdefault(rejection.filter, {"docs": 0, "bytes": 0, "examples": []})
            f["docs"] += 1
            f["bytes"] += len(cols["text"][i].encode("utf-8"))
            if len(f["examples"]) < EXAMPLES_PER_FILTER:
                f["examples"].append({"id": doc_id, "reason": rejection.reason, "text": text[:EXAMPLE_CHARS]})

        url_hits = self.urls.check(self._urls(table)) if self.urls is not None else None
        for i in range(n):
            raw = cols["text"][i]
            if url_hits is not None and url_hits[i] is not None:  # judged on the URL alone, before any text work
                hit = url_hits[i]
                if self.c.max_chars is not None and len(raw) > self.c.max_chars:
                    raw = raw[:OVERSIZE_EXCERPT_CHARS]  # as for max_chars: no full copy of an oversize text
                reject(i, Rejection(hit.filter, hit.reason), self.scrub(raw) if self.scrub is not None else raw)
                continue
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
            + [pa.array(kept_lang, pa.string()), pa.array(kept_score, pa.float32()),
               pa.nulls(len(kept_idx), pa.float32())],
            schema=CLEAN_SCHEMA,
        )
        contamination = self._decontaminate(kept, kept_idx, cols, reject) if self.decontam is not None else {}
        if self.decontam is not None:
            kept, kept_idx = contamination.pop(None)
        quality = None
        if self.quality is not None:
            kept, kept_idx, quality = self._score(kept, kept_idx, reject)
        for name, fn, label in self.custom:  # on the kept documents, as they would be written
            if not kept.num_rows:
                break
            keep, reasons = apply_filter(fn, label, kept)
            texts = kept.column("text")
            scores = kept.column("quality_score")
            for j in np.flatnonzero(~keep):
                reject(kept_idx[j], Rejection(name, reasons[j] or f"rejected by {label}"), texts[j].as_py(),
                       scores[j].as_py())
            kept = kept.filter(pa.array(keep))
            kept_idx = [i for i, k in zip(kept_idx, keep) if k]
        languages: dict[str, int] = {}
        for lang in kept.column("language").to_pylist():
            languages[lang or "und"] = languages.get(lang or "und", 0) + 1
        rejected = rejected_table(rej["id"], rej["source"], STAGE, rej["filter"], rej["reason"], rej["text"],
                                  quality_score=rej["quality_score"])
        stats = CleanStats(
            docs_in=n, docs_out=kept.num_rows, docs_rejected=rejected.num_rows,
            bytes_in=text_bytes(table), bytes_out=text_bytes(kept), seconds=round(time.perf_counter() - t0, 3),
            rejected_by_filter={name: f["docs"] for name, f in funnel.items() if f["docs"]},
            filters={name: FilterStats(docs=f["docs"], bytes=f["bytes"],
                                       examples=[RejectExample(**e) for e in f["examples"]])
                     for name, f in funnel.items()},
            pii={"email": pii.email, "ip": pii.ip, "phone": pii.phone},
            languages=dict(sorted(languages.items(), key=lambda kv: (-kv[1], kv[0]))),
            quality=quality,
            contamination=contamination,
        )
        return CleanResult(kept, rejected, stats)

    def _urls(self, table: pa.Table):
        urls = table.column("url")
        key = self.c.urls.url_from_meta
        if not key:
            return urls
        import pyarrow.compute as pc

        found = pc.struct_field(pc.extract_regex(table.column("meta"), rf'"{re.escape(key)}"\s*:\s*"(?P<u>[^"]*)"'), "u")
        return pc.coalesce(urls, found)

    def _decontaminate(self, kept: pa.Table, kept_idx: list[int], cols: dict, reject) -> dict:
        """Look every kept document up in the evaluation n-gram index; remove (or flag) the hits.
        -> {set name: ContaminationStats, None: (kept table, kept_idx)}."""
        d, index = self.c.decontaminate, self.decontam
        out: dict = {s.name: ContaminationStats(ngram=d.ngram, action=d.action, files=[Path(f).name for f in s.files],
                                                items=s.items, short_items=s.short_items, ngrams=s.ngrams)
                     for s in index.sets}
        hits = index.check(kept.column("text"), d.min_matches) if kept.num_rows else []
        keep = np.ones(kept.num_rows, bool)
        metas = None
        for j, hit in enumerate(hits):
            if hit is None:
                continue
            c = out[hit.set_name]
            c.docs += 1
            src = cols["source"][kept_idx[j]]
            c.sources[src] = c.sources.get(src, 0) + 1
            reason = (f"shares {hit.matches} word {d.ngram}-gram(s) with evaluation set {hit.set_name!r}; "
                      f"first: {hit.ngram_text!r}")
            if d.action == "remove":
                keep[j] = False
                reject(kept_idx[j], Rejection(f"decontaminate.{hit.set_name}", reason), kept.column("text")[j].as_py())
            else:
                if metas is None:
                    metas = kept.column("meta").to_pylist()
                meta = _meta_dict(metas[j])
                meta["contamination"] = {"set": hit.set_name, "ngram": d.ngram, "matches": hit.matches,
                                         "first": hit.ngram_text}
                metas[j] = json.dumps(meta, ensure_ascii=False)
        if metas is not None:
            kept = kept.set_column(kept.schema.get_field_index("meta"), "meta", pa.array(metas, pa.string()))
        if not keep.all():
            kept = kept.filter(pa.array(keep))
            kept_idx = [i for i, k in zip(kept_idx, keep) if k]
        out[None] = (kept, kept_idx)
        return out

    def _score(self, kept: pa.Table, kept_idx: list[int], reject):
        """Score the kept prose with the learned model; reject below the threshold."""
        q = self.c.quality
        stats = QualityStats(name=q.name, model=Path(q.model).name, model_sha256=self.quality.sha256,
                             threshold=q.threshold, held_out=(self.quality.meta.get("report") or {}).get("held_out"))
        if not kept.num_rows:
            return kept, kept_idx, stats
        prose = np.array([k != "code" for k in kept.column("kind").to_pylist()], bool)
        scores = np.full(kept.num_rows, np.nan, np.float32)
        if prose.any():
            texts = kept.column("text")
            scores[prose] = self.quality.score(texts.filter(pa.array(prose)) if not prose.all() else texts)
        col = pa.array(scores, pa.float32(), mask=~prose)
        kept = kept.set_column(kept.schema.get_field_index("quality_score"), "quality_score", col)
        low = prose & (scores < q.threshold)
        sources = kept.column("source").to_pylist()
        bins = np.minimum((np.nan_to_num(scores) * QUALITY_BINS).astype(np.int64), QUALITY_BINS - 1)
        for j in np.flatnonzero(prose):
            s = stats.sources.setdefault(sources[j], QualitySourceStats())
            s.scored += 1
            s.counts[bins[j]] += 1
            if low[j]:
                s.rejected += 1
        if low.any():
            texts = kept.column("text")
            for j in np.flatnonzero(low):
                reject(kept_idx[j], Rejection(
                    f"quality.{q.name}", f"quality score {scores[j]:.3f} of scorer {q.name!r} ({Path(q.model).name}) "
                                         f"is below the threshold {q.threshold:g}"),
                       texts[j].as_py(), float(scores[j]))
            kept = kept.filter(pa.array(~low))
            kept_idx = [i for i, k in zip(kept_idx, ~low) if k]
        return kept, kept_idx, stats


def _meta_dict(meta: str | None) -> dict:
    if not meta:
        return {}
    try:
        value = json.loads(meta)
    except ValueError:
        return {"meta": meta}
    return value if isinstance(value, dict) else {"meta": value}


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
