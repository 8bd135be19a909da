"""Every figure a data card shows, gathered once into one JSON-able dict.

`collect_figures(corpus_dir, manifest)` takes every count a stage recorded from the typed
manifest (pipeline.records: documents and bytes per stage, source and filter, languages,
tokens, duplicate clusters, PII) and reads the Parquet files only for what no stage
records: examples of rejected and duplicate documents, document lengths in bytes, licenses
and kinds of the final documents. Markdown, charts, HTML, the terminal summary and
`--diff` all render this one dict, so they can never disagree; it is also written as
`card.json` / `data_cards/<name>.json`. With `corpus_dir=None` the card is drawn from the
manifest alone.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import polars as pl

from pipeline.card.format import visible
from pipeline.io import list_shards, sha256_file
from pipeline.records import DuplicateCluster, Histogram, Manifest, ModelList

EXAMPLES_PER_FILTER = 3
EXAMPLE_CHARS = 240
LARGEST_CLUSTERS = 5
MEMBERS_PER_CLUSTER = 3
# Local input files without a recorded sha256 are hashed at card time up to this size.
HASH_LIMIT_BYTES = 256 << 20
FIGURES_VERSION = 2
FIGURES_FILE = "card.json"


def _scrubber():
    from pipeline.clean.pii import PIIScrubber

    return PIIScrubber("<EMAIL_ADDRESS>", "<IP_ADDRESS>", "<PHONE_NUMBER>")


def truncate(text: str | None, n: int = EXAMPLE_CHARS) -> str | None:
    """An example for the card: PII replaced (a card is published, and a record removed
    before the clean stage's replacement keeps its text as read), one line, control
    characters shown as escapes (`visible`), at most n characters."""
    if text is None:
        return None
    text = _scrubber()(text[: 4 * n])
    text = visible(" ".join(text.split()))  # one line: examples sit in tables
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


# An absolute POSIX path in free text (a URL's path follows its host, so it never matches).
_ABS_PATH = re.compile(r"(?<![\w:/.~-])/[^\s'\"`|<>()\[\]]+")


def relative_paths(text: str | None, base: Path | None) -> str | None:
    """`text` with every absolute path relative to `base` (the recipe's folder), or only its
    file name without a base: a published card names no folder of the machine that built it."""
    if not text:
        return text
    return _ABS_PATH.sub(lambda m: os.path.relpath(m.group(), base) if base else Path(m.group()).name, text)


def _publishable(figures: dict, base: Path | None) -> dict:
    """The figures with the paths they quote (command, recipe, input files, rejection reasons)
    relative to `base`."""
    rel = lambda text: relative_paths(text, base)  # noqa: E731
    figures["command"], figures["recipe_path"] = rel(figures["command"]), rel(figures["recipe_path"])
    for s in figures["sources"]:
        for f in s["files"]:
            if f.get("path"):
                f["path"] = rel(f["path"])
    examples = [e for x in figures["funnel"]["filters"] for e in x["examples"]]
    examples += [m for c in figures["duplicates"].get("largest") or [] for m in c.get("members", [])]
    for e in examples:
        for key in ("id", "reason"):
            if e.get(key):
                e[key] = visible(rel(e[key]))
    return figures


def _scan(paths: list[Path]) -> pl.LazyFrame | None:
    paths = [str(p) for p in paths]
    return pl.scan_parquet(paths) if paths else None


def _columns(lf: pl.LazyFrame) -> list[str]:
    return lf.collect_schema().names()


# ---------------------------------------------------------------- sources


def _raw_manifest(corpus_dir: Path | None) -> list[dict]:
    """Lines of raw/MANIFEST.jsonl (downloaded files), when the corpus downloaded any."""
    if corpus_dir is None:
        return []
    path = corpus_dir / "raw" / "MANIFEST.jsonl"
    if not path.is_file():
        return []
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON in download manifest: {e.msg}") from None
    return rows


def _file_entry(p: dict, downloaded: dict[str, dict], hash_budget: list[int]) -> dict:
    """One input file of a source: where, size, sha256 (and download metadata when fetched)."""
    entry = {k: p.get(k) for k in ("path", "url", "size", "sha256", "license", "etag", "last_modified", "fetched_at")}
    # python-env provenance is per distribution, not per file
    for k in ("distribution", "version", "files"):
        if k in p:
            entry[k] = p[k]
    dl = downloaded.get(str(p.get("path"))) or downloaded.get(str(p.get("url")))
    if dl:
        for k, v in dl.items():
            if entry.get(k) is None and k in ("url", "size", "sha256", "etag", "last_modified", "fetched_at", "license"):
                entry[k] = v
    entry["sha256_origin"] = "recorded" if entry.get("sha256") else None
    path = Path(entry["path"]) if entry.get("path") else None
    if not entry.get("sha256") and path is not None and path.is_file():
        size = path.stat().st_size
        if size <= HASH_LIMIT_BYTES and hash_budget[0] >= size:
            hash_budget[0] -= size
            entry["sha256"] = sha256_file(path)
            entry["sha256_origin"] = "hashed when the card was written"
    return {k: v for k, v in entry.items() if v is not None}


def _sources(manifest: Manifest, corpus_dir: Path | None, final: pl.DataFrame | None) -> list[dict]:
    ingest, tokenize = manifest.stages.ingest, manifest.stages.tokenize
    recipe_sources = {s.get("name"): s for s in manifest.recipe.get("sources", []) if isinstance(s, dict)}
    downloaded_rows = _raw_manifest(corpus_dir)
    by_source_dl: dict[str, list[dict]] = {}
    for row in downloaded_rows:
        by_source_dl.setdefault(str(row.get("source")), []).append(row)
    hash_budget = [4 * HASH_LIMIT_BYTES if corpus_dir is not None else 0]  # a manifest-only view hashes nothing
    out = []
    for name in (list(ingest.sources) if ingest else list(recipe_sources)):
        s = ingest.sources[name] if ingest else None
        rs = recipe_sources.get(name, {})
        dl_rows = by_source_dl.get(name, [])
        downloaded = {str(r.get("path")): r for r in dl_rows} | {str(r.get("url")): r for r in dl_rows}
        files = [_file_entry(p.model_dump(), downloaded, hash_budget) for p in (s.provenance if s else [])]
        known = {f.get("path") for f in files} | {f.get("url") for f in files}
        for r in dl_rows:  # downloaded files the source did not list itself
            if r.get("path") not in known and r.get("url") not in known:
                files.append(_file_entry(r, {}, hash_budget))
        entry = {
            "name": name,
            "type": s.type if s else rs.get("type"),
            "license": (s.license if s else None) or rs.get("license"),
            "where": _where(rs),
            **{k: (getattr(s, k) if s else None) for k in ("docs_in", "docs_out", "docs_rejected", "bytes_in", "bytes_out")},
            "rejected_by_filter": dict(s.rejected_by_filter) if s else {},
            "files": files,
            "files_bytes": sum(f.get("size") or 0 for f in files) if files else None,
            "final_docs": tokenize.documents_per_source.get(name, 0) if tokenize else None,
            "final_bytes": None,
            "document_licenses": {},
            "tokens": tokenize.tokens_per_source.get(name) if tokenize else None,
        }
        if final is not None:  # not recorded by a stage: read from the final documents
            sub = final.filter(pl.col("source") == name)
            entry["final_bytes"] = int(sub["bytes"].sum() or 0)
            lic = sub.group_by("license").len().sort(["len", "license"], descending=[True, False], nulls_last=True)
            entry["document_licenses"] = {str(r["license"]) if r["license"] is not None else "not stated": int(r["len"])
                                          for r in lic.iter_rows(named=True)}
        out.append(entry)
    return out


def _where(recipe_source: dict) -> str | None:
    """Where a source reads from, as the recipe says it (paths, urls, dataset name...)."""
    for key in ("urls", "url", "paths", "dataset", "repo", "packages"):
        v = recipe_source.get(key)
        if v:
            if isinstance(v, list):
                items = [x.get("url", str(x)) if isinstance(x, dict) else str(x) for x in v]
                if key == "paths":  # full paths are in the inputs table; names read better here
                    items = [Path(x).name for x in items]
                return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")
            return str(v)
    if recipe_source.get("type") == "python-env":
        return "installed Python packages" + (" and the standard library" if recipe_source.get("stdlib") else "")
    return None


# ---------------------------------------------------------------- funnel


def kept_share(stage: dict) -> float | None:
    """docs_out / docs_in of a funnel row, None when either is unknown."""
    i, o = stage.get("docs_in"), stage.get("docs_out")
    return o / i if isinstance(i, (int, float)) and isinstance(o, (int, float)) and i else None


def funnel_stages(manifest: Manifest) -> list[dict]:
    return [{"stage": name} | s.model_dump(include={"docs_in", "docs_out", "docs_rejected", "bytes_in", "bytes_out", "seconds"})
            for name, s in manifest.stages.items()]


class Rejected:
    """rejected/ read lazily: counts and bytes per (stage, filter) and a few examples each,
    without ever holding every rejected text in memory (a web crawl rejects most of itself)."""

    def __init__(self, lf: pl.LazyFrame):
        cols = _columns(lf)
        self.lf = lf.select(
            [pl.col(c) if c in cols else pl.lit(None, dtype=pl.String).alias(c)
             for c in ("id", "source", "stage", "filter", "reason", "text")])
        self.counts = (self.lf.group_by("stage", "filter")
                       .agg(pl.len().alias("docs"), pl.col("text").str.len_bytes().fill_null(0).sum().alias("bytes"))
                       .collect(engine="streaming"))

    @classmethod
    def open(cls, corpus_dir: Path | None) -> "Rejected | None":
        paths = list_shards(corpus_dir / "rejected", "*.parquet") if corpus_dir is not None else []
        return cls(pl.scan_parquet([str(p) for p in paths])) if paths else None

    def examples(self, k: int) -> pl.DataFrame:
        """The k smallest ids of every (stage, filter), with their records."""
        keys = self.lf.select("stage", "filter", "id").collect(engine="streaming")
        pick = keys.sort("stage", "filter", "id").group_by("stage", "filter", maintain_order=True).head(k)
        rows = self.lf.filter(pl.col("id").is_in(pick["id"].implode())).collect(engine="streaming")
        return rows.join(pick, on=["stage", "filter", "id"], how="semi").unique(["stage", "filter", "id"], keep="first")

    def records(self, ids: list[str], stage: str) -> pl.DataFrame:
        return self.lf.filter(pl.col("id").is_in(ids) & (pl.col("stage") == stage)).collect(engine="streaming")


def _filters(manifest: Manifest, rejected: Rejected | None) -> list[dict]:
    """Documents removed per (stage, filter) as the stages recorded them, with the bytes of
    text and a few truncated examples read from rejected/ (the clean stage records its own)."""
    examples = rejected.examples(EXAMPLES_PER_FILTER) if rejected is not None else None
    nbytes = ({(r["stage"], r["filter"]): int(r["bytes"]) for r in rejected.counts.iter_rows(named=True)}
              if rejected is not None else {})
    rows = []
    for stage, s in manifest.stages.items():
        recorded = getattr(s, "filters", {})
        for fname, docs in sorted(s.rejected_by_filter.items(), key=lambda kv: (-kv[1], kv[0])):
            if examples is not None:
                ex = examples.filter((pl.col("stage") == stage) & (pl.col("filter") == fname)).sort("id")
                shown = [{"id": e["id"], "source": e.get("source"), "reason": e["reason"], "text": truncate(e.get("text"))}
                         for e in ex.iter_rows(named=True)]
            else:
                shown = [{"id": e.id, "reason": e.reason, "text": truncate(e.text)}
                         for e in (recorded[fname].examples if fname in recorded else [])[:EXAMPLES_PER_FILTER]]
            rows.append({"stage": stage, "filter": fname, "docs": docs,
                         "bytes": recorded[fname].bytes if fname in recorded else nbytes.get((stage, fname)),
                         "examples": shown})
    return rows


def _idle_filters(manifest: Manifest) -> dict[str, list[str]]:
    """Filters a stage ran that removed nothing (so a reader knows they were on)."""
    out = {}
    for stage, s in manifest.stages.items():
        idle = sorted(name for name, f in getattr(s, "filters", {}).items() if not f.docs)
        if idle:
            out[stage] = idle
    return out


# ---------------------------------------------------------------- final documents, languages, lengths, tokens


def _final_docs(corpus_dir: Path | None) -> pl.DataFrame | None:
    """id, source, license, language, bytes of every document in dedup/ (the final corpus)."""
    if corpus_dir is None:
        return None
    lf = _scan(list_shards(corpus_dir / "dedup"))
    if lf is None:
        return None
    cols = _columns(lf)
    exprs = [pl.col("id"), pl.col("text").str.len_bytes().alias("bytes")]
    for c in ("source", "license", "language", "kind"):
        exprs.append(pl.col(c) if c in cols else pl.lit(None, dtype=pl.String).alias(c))
    return lf.select(exprs).collect(engine="streaming")


def _languages(manifest: Manifest) -> dict:
    tok, clean = manifest.stages.tokenize, manifest.stages.clean
    if tok is not None and tok.bytes_per_token_per_language:
        langs = tok.bytes_per_token_per_language
        total = sum(v.documents for v in langs.values())
        rows = [{"language": k, "docs": v.documents, "share": v.documents / total if total else None, "bytes": v.bytes,
                 "tokens": v.tokens, "bytes_per_token": v.bytes_per_token}
                for k, v in sorted(langs.items(), key=lambda kv: (-kv[1].documents, kv[0]))]
        return {"origin": "the tokenize stage's record (final documents)", "rows": rows}
    langs = clean.languages if clean is not None else {}
    total = sum(langs.values())
    rows = [{"language": k, "docs": v, "share": v / total if total else None, "bytes": None}
            for k, v in sorted(langs.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {"origin": "the clean stage's record (before dedup)" if rows else None, "rows": rows}


def _token_figures(manifest: Manifest) -> dict:
    st = manifest.stages.tokenize
    if st is None:
        return {"tokens_train": None, "tokens_val": None, "docs_train": None, "docs_val": None,
                "vocab_size": (manifest.recipe.get("tokenize") or {}).get("vocab_size"), "origin": None,
                "per_source": None, "bytes_per_token": None, "length_histogram": None, "sample_docs": None}
    content = st.tokens_train + st.tokens_val - st.docs_train - st.docs_val  # end-of-text tokens not counted
    return {
        "tokens_train": st.tokens_train, "tokens_val": st.tokens_val, "docs_train": st.docs_train,
        "docs_val": st.docs_val, "vocab_size": st.vocab_size, "origin": "the tokenize stage's record",
        "per_source": dict(st.tokens_per_source),
        "bytes_per_token": round(st.bytes_out / content, 4) if content > 0 else None,
        "length_histogram": st.length_histogram.model_dump() if st.length_histogram else None,
        "sample_docs": st.tokenizer_sample_docs, "sample_bytes": st.tokenizer_sample_bytes,
        "sample_limit": (manifest.recipe.get("tokenize") or {}).get("train_sample_bytes"),
    }


# ---------------------------------------------------------------- duplicates


def size_order(label: str) -> int:
    """Sort key of a cluster-size label: "3" -> 3; the ranges of 0.1 manifests ("6-10", ">100") by their start."""
    return int(label[1:]) + 1 if label.startswith(">") else int(label.split("-")[0])


def _duplicates(manifest: Manifest, corpus_dir: Path | None, rejected: Rejected | None) -> dict:
    d = manifest.stages.dedup
    if d is None:
        return {"docs_in": None, "exact_removed": None, "near_removed": None, "other_removed": None,
                "exact_rate": None, "near_rate": None, "clusters": None, "cluster_sizes": None, "largest": [],
                "origin": None}
    other = d.docs_rejected - d.exact_removed - d.near_removed
    sizes = {} if d.docs_in_clusters is None else {"1": max(d.docs_in - d.docs_in_clusters, 0)}  # no duplicate
    sizes.update(dict(sorted(d.cluster_sizes.items(), key=lambda kv: size_order(kv[0]))))
    out = {
        "docs_in": d.docs_in, "exact_removed": d.exact_removed, "near_removed": d.near_removed,
        "other_removed": other, "removed_by_filter": dict(d.rejected_by_filter),
        "exact_rate": d.exact_removed / d.docs_in if d.docs_in else None,
        "near_rate": d.near_removed / d.docs_in if d.docs_in else None,
        "clusters": d.clusters, "docs_in_clusters": d.docs_in_clusters, "cluster_sizes": sizes,
        "largest": [], "origin": "the dedup stage's record",
    }
    clusters_lf = _scan(list_shards(corpus_dir / "clusters", "*.parquet")) if corpus_dir is not None else None
    if clusters_lf is None:
        out["largest"] = _largest_from_stats(d.largest_clusters)
        return out
    # The largest clusters' members and texts: examples, read from clusters/, dedup/ and rejected/.
    cl = clusters_lf.select("id", "cluster_id", "kept").collect()
    multi = cl.group_by("cluster_id").agg(pl.len().alias("size")).filter(pl.col("size") > 1)
    top = multi.sort(["size", "cluster_id"], descending=[True, False]).head(LARGEST_CLUSTERS)
    if top.height:
        members = cl.join(top, on="cluster_id").sort(["cluster_id", "kept", "id"], descending=[False, True, False])
        texts = _texts_for(corpus_dir, rejected, members["id"].to_list())
        largest = []
        for r in top.iter_rows(named=True):
            m = members.filter(pl.col("cluster_id") == r["cluster_id"])
            kept = m.filter(pl.col("kept"))["id"].to_list()
            largest.append({
                "cluster_id": r["cluster_id"], "size": int(r["size"]), "kept": kept[0] if kept else None,
                "members": [{"id": x["id"], "kept": bool(x["kept"]), "source": texts.get(x["id"], {}).get("source"),
                             "reason": None if x["kept"] else texts.get(x["id"], {}).get("reason"),
                             "text": truncate(texts.get(x["id"], {}).get("text"))}
                            for x in m.head(MEMBERS_PER_CLUSTER).iter_rows(named=True)],
            })
        out["largest"] = largest
    return out


def _largest_from_stats(clusters: list[DuplicateCluster]) -> list[dict]:
    """The dedup stage's own `largest_clusters` (member ids and one excerpt) in the card's shape."""
    return [{"cluster_id": c.cluster_id, "size": c.size, "kept": c.cluster_id,
             "members": [{"id": mid, "kept": mid == c.cluster_id, "text": truncate(c.excerpt) if i == 0 else None}
                         for i, mid in enumerate(c.members[:MEMBERS_PER_CLUSTER])]}
            for c in clusters[:LARGEST_CLUSTERS]]


def _texts_for(corpus_dir: Path, rejected: Rejected | None, ids: list[str]) -> dict[str, dict]:
    """Text and source of the given ids: kept ones from dedup/, removed ones from rejected/."""
    found: dict[str, dict] = {}
    lf = _scan(list_shards(corpus_dir / "dedup"))
    if lf is not None:
        for r in lf.filter(pl.col("id").is_in(ids)).select("id", "source", "text").collect(engine="streaming").iter_rows(named=True):
            found.setdefault(r["id"], r)
    if rejected is not None:
        for r in rejected.records(ids, "dedup").iter_rows(named=True):
            found.setdefault(r["id"], r)
    return found


# ---------------------------------------------------------------- PII, models, licenses


def _pii(manifest: Manifest) -> dict | None:
    clean = manifest.stages.clean
    if clean is None or not clean.pii:
        return None
    return dict(sorted(clean.pii.items(), key=lambda kv: (-kv[1], kv[0])))


def _quality(manifest: Manifest) -> dict | None:
    """The learned scorer's settings and score distribution per source (clean stage)."""
    clean = manifest.stages.clean
    if clean is None or clean.quality is None:
        return None
    q = clean.quality.dump()
    for s in q["sources"].values():
        s["kept_share"] = round(1 - s["rejected"] / s["scored"], 4) if s["scored"] else None
    return q


def _contamination(manifest: Manifest) -> dict | None:
    clean = manifest.stages.clean
    if clean is None or not clean.contamination:
        return None
    docs_in = clean.docs_in or 0
    return {name: {**c.dump(), "share": round(c.docs / docs_in, 6) if docs_in else None}
            for name, c in clean.contamination.items()}


def _split_overlap(manifest: Manifest, corpus_dir: Path | None) -> dict | None:
    """With `clean.decontaminate` in the recipe: the validation split checked against the training
    split the same way (word n-grams), over the final documents (dedup/)."""
    recipe = manifest.recipe or {}
    decon = (recipe.get("clean") or {}).get("decontaminate")
    if not decon or corpus_dir is None or manifest.stages.tokenize is None:
        return None
    shards = list_shards(corpus_dir / "dedup")
    if not shards:
        return None
    from pipeline.clean.decontam import split_overlap
    from pipeline.tokenize.config import TokenizeConfig
    from pipeline.tokenize.tokenizer import val_mask

    try:
        config = TokenizeConfig.model_validate(recipe.get("tokenize") or {})
    except ValueError:
        return None
    return split_overlap(shards, lambda ids: val_mask(ids, config), int(decon.get("ngram", 13)))


def read_models(corpus_dir: Path | None) -> list[dict]:
    """The runs trained on the corpus (models.json), each marked with whether it trained on
    the build the card describes (a run records the sha256 of the manifest it trained on)."""
    path = corpus_dir / ModelList.file_name if corpus_dir is not None else None
    if path is None or not path.is_file():
        return []
    manifest = corpus_dir / Manifest.file_name
    current = sha256_file(manifest) if manifest.is_file() else None
    models = []
    for m in ModelList.load(path).models:
        m.same_build = not m.manifest_sha256 or current is None or m.manifest_sha256 == current
        models.append(m.model_dump(mode="json", exclude_none=True))
    return models


# ---------------------------------------------------------------- entry point


def collect_figures(corpus_dir: str | Path | None, manifest: Manifest) -> dict:
    """All figures of a corpus's card; `corpus_dir=None` draws them from the manifest alone."""
    corpus_dir = Path(corpus_dir) if corpus_dir is not None else None
    final = _final_docs(corpus_dir)
    rejected = Rejected.open(corpus_dir)
    tokens = _token_figures(manifest)
    dedup = manifest.stages.dedup
    summary = {
        "docs": dedup.docs_out if dedup else None,
        "bytes": dedup.bytes_out if dedup else None,
        "tokens": (tokens["tokens_train"] + tokens["tokens_val"]) if tokens["tokens_train"] is not None else None,
        "origin": "the stages' records",
        "kinds": ({str(k): int(v) for k, v in final.group_by("kind").len().sort("kind", nulls_last=True).iter_rows()}
                  if final is not None else {}),
    }
    figures = {
        "figures_version": FIGURES_VERSION,
        "manifest_version": manifest.format_version,
        "name": manifest.name,
        "description": manifest.description,
        "created": manifest.created,
        "recipe_path": manifest.recipe_path,
        "recipe_hash": manifest.recipe_hash,
        "code_version": manifest.code_version,
        "command": manifest.command,
        "versions": dict(manifest.versions),
        "summary": summary,
        "sources": _sources(manifest, corpus_dir, final),
        "funnel": {"stages": funnel_stages(manifest), "filters": _filters(manifest, rejected),
                   "idle_filters": _idle_filters(manifest)},
        "languages": _languages(manifest),
        "lengths": {"unit": "UTF-8 bytes per document",
                    "histogram": _byte_lengths(final)},
        "tokens": tokens,
        "duplicates": _duplicates(manifest, corpus_dir, rejected),
        "pii": _pii(manifest),
        "quality": _quality(manifest),
        "contamination": _contamination(manifest),
        "split_overlap": _split_overlap(manifest, corpus_dir),
        "models": read_models(corpus_dir),
    }
    summary["languages"] = [r["language"] for r in figures["languages"]["rows"]]
    summary["licenses"] = _licenses(figures)
    figures["limitations"] = limitations(figures)
    return _publishable(figures, _recipe_dir(manifest.recipe_path) or (corpus_dir and Path(corpus_dir).resolve()))


def _recipe_dir(recipe: str | None) -> Path | None:
    """The folder of a local recipe (a recipe.yaml file, or the folder given for it); None for a URL."""
    if not recipe or "://" in recipe:
        return None
    path = Path(recipe).resolve()
    return path.parent if path.suffix in (".yaml", ".yml") else path


def _byte_lengths(final: pl.DataFrame | None) -> dict | None:
    """Document lengths in bytes: no stage records them per document, so they are read from dedup/."""
    if final is None or not final.height:
        return None
    hist = Histogram.of(final["bytes"].to_numpy())
    return hist.model_dump() if hist else None


def _licenses(figures: dict) -> dict[str, int | None]:
    """License -> documents in the final corpus (None when only the source's license is known)."""
    out: dict[str, int | None] = {}
    for s in figures["sources"]:
        if s["document_licenses"]:
            for lic, n in s["document_licenses"].items():
                out[lic] = (out.get(lic) or 0) + n
        else:
            out.setdefault(s["license"] or "not stated", None)
    return out


# ---------------------------------------------------------------- limitations


COPYLEFT = ("GPL", "AGPL", "LGPL", "MPL", "EPL", "CC-BY-SA", "GFDL")
NON_COMMERCIAL = ("-NC", "NONCOMMERCIAL")


def limitations(figures: dict) -> list[str]:
    """Plain sentences about what the data itself says a user should know."""
    notes: list[str] = []
    lic = figures["summary"].get("licenses") or {}
    docs = figures["summary"].get("docs") or 0
    named = {k: v for k, v in lic.items() if k != "not stated"}
    if len(named) > 1:
        notes.append(f"Mixed licenses: the corpus combines {len(named)} licenses ({', '.join(sorted(named)[:8])}"
                     f"{', ...' if len(named) > 8 else ''}); a derived work must honour each of them.")
    unlicensed_sources = [s["name"] for s in figures["sources"] if not s.get("license") and not any(
        k != "not stated" for k in s.get("document_licenses") or {})]
    if unlicensed_sources:
        notes.append(f"No license stated for source(s) {', '.join(unlicensed_sources)}: check their terms before redistribution.")
    n_unstated = lic.get("not stated")
    if n_unstated and docs:
        notes.append(f"{n_unstated:,} documents ({n_unstated / docs:.1%}) carry no license of their own.")
    copyleft = sorted(k for k in named if any(c in k.upper() for c in COPYLEFT))
    if copyleft:
        notes.append(f"Share-alike / copyleft licenses present ({', '.join(copyleft)}): redistributed derivatives may have to keep them.")
    nc = sorted(k for k in named if any(c in k.upper() for c in NON_COMMERCIAL))
    if nc:
        notes.append(f"Non-commercial licenses present ({', '.join(nc)}): not for commercial use as a whole.")
    langs = figures["languages"]["rows"]
    if langs and langs[0].get("share") and langs[0]["share"] >= 0.9 and len(langs) > 1:
        notes.append(f"Language skew: {langs[0]['share']:.1%} of documents are `{langs[0]['language']}`; "
                     f"the other {len(langs) - 1} language(s) are thinly covered.")
    unknown = next((r for r in langs if r["language"] in ("unknown", "und", "None")), None)
    if unknown and unknown.get("share"):
        notes.append(f"{unknown['docs']:,} documents ({unknown['share']:.1%}) have no identified language (code, tables, very short text).")
    low = [r for r in langs if r.get("bytes_per_token") and r["bytes_per_token"] < 2.0 and r["docs"] >= 1]
    if low:
        notes.append("The tokenizer splits some languages into many short tokens (under 2 bytes per token: "
                     + ", ".join(f"`{r['language']}` {r['bytes_per_token']:.2f}" for r in low[:6])
                     + "); models see less of that text per token.")
    d = figures["duplicates"]
    rate = (d.get("exact_rate") or 0) + (d.get("near_rate") or 0)
    if rate >= 0.2:
        notes.append(f"Heavy duplication at the source: {rate:.1%} of documents entering dedup were duplicates.")
    if d.get("near_removed") is not None and d.get("near_removed") == 0 and (d.get("docs_in") or 0) > 0:
        notes.append("No near duplicates were removed (MinHash off, or none found): templated or boilerplate text may remain.")
    if figures["pii"] is None:
        notes.append("PII replacement was not recorded: e-mail addresses, phone numbers or other personal data may remain.")
    elif sum(figures["pii"].values()):
        notes.append(f"{sum(figures['pii'].values()):,} PII spans were replaced by placeholders; detection is pattern-based and misses some.")
    if docs and docs < 10_000:
        notes.append(f"Small corpus ({docs:,} documents): fine for tests and ablations, too small to pretrain a useful model.")
    t = figures["tokens"]
    if t.get("tokens_val") == 0 and t.get("tokens_train"):
        notes.append("Empty validation split: models trained on it cannot be evaluated on held-out text from this corpus.")
    no_sha = sum(1 for s in figures["sources"] for f in s["files"] if (f.get("path") or f.get("url")) and not f.get("sha256"))
    if no_sha:
        notes.append(f"{no_sha} input file(s) have no checksum: the exact inputs cannot be verified.")
    return notes
