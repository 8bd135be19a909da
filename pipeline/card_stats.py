"""Every figure a data card shows, gathered once into one JSON-able dict.

`collect_figures(corpus_dir, manifest)` reads the manifest (what each stage reported) and
recomputes the exact figures from the Parquet files with polars where the card needs
them (final documents, languages, lengths, tokens, rejections, clusters). Markdown,
charts, HTML, the terminal summary and `--diff` all render this one dict, so they can
never disagree; it is also written as `card.json` / `data_cards/<name>.json`.

Stage stats evolve; everything here reads them defensively: a figure that was not
recorded is `None` and its section says so, instead of failing.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.io import list_shards, sha256_file

EXAMPLES_PER_FILTER = 3
EXAMPLE_CHARS = 240
LARGEST_CLUSTERS = 5
MEMBERS_PER_CLUSTER = 3
# Local input files without a recorded sha256 are hashed at card time up to this size.
HASH_LIMIT_BYTES = 256 << 20
FIGURES_VERSION = 1


def _scrubber():
    from pipeline.clean.pii import PIIScrubber

    return PIIScrubber("<EMAIL_ADDRESS>", "<IP_ADDRESS>", "<PHONE_NUMBER>")


def truncate(text: str | None, n: int = EXAMPLE_CHARS) -> str | None:
    """An example for the card: PII replaced (a card is published, and a record removed
    before the clean stage's replacement keeps its text as read), one line, at most n characters."""
    if text is None:
        return None
    text = _scrubber()(text[: 4 * n])
    text = " ".join(text.split())  # one line: examples sit in tables
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _num(x, default=None):
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else default


def _stage(manifest: dict, name: str) -> dict:
    s = (manifest.get("stages") or {}).get(name)
    return s if isinstance(s, dict) else {}


def _scan(paths: list[Path]) -> pl.LazyFrame | None:
    paths = [str(p) for p in paths]
    return pl.scan_parquet(paths) if paths else None


def _columns(lf: pl.LazyFrame) -> list[str]:
    return lf.collect_schema().names()


def _log2_histogram(values: np.ndarray) -> dict | None:
    """Counts over power-of-two bins [2^k, 2^(k+1)) (plus [0, 1) when there are zeros)."""
    if values.size == 0:
        return None
    lo = int(math.floor(math.log2(max(int(values.min()), 1))))
    hi = int(math.ceil(math.log2(int(values.max()) + 1)))  # 2^hi > max: every value falls in a bin
    edges = [2**k for k in range(lo, max(hi, lo + 1) + 1)]
    if values.min() == 0:
        edges = [0] + edges
    counts, _ = np.histogram(values, bins=np.array(edges))
    return {
        "edges": edges,
        "counts": [int(c) for c in counts],
        "min": int(values.min()),
        "p10": float(np.percentile(values, 10)),
        "median": float(np.median(values)),
        "mean": float(values.mean()),
        "p90": float(np.percentile(values, 90)),
        "max": int(values.max()),
    }


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


def _sources(manifest: dict, corpus_dir: Path | None, final: pl.DataFrame | None, tokens_by_source: dict) -> list[dict]:
    ingest = _stage(manifest, "ingest")
    recipe_sources = {s.get("name"): s for s in (manifest.get("recipe") or {}).get("sources", []) if isinstance(s, dict)}
    downloaded_rows = _raw_manifest(corpus_dir)
    by_source_dl: dict[str, list[dict]] = {}
    for row in downloaded_rows:
        by_source_dl.setdefault(str(row.get("source")), []).append(row)
    hash_budget = [4 * HASH_LIMIT_BYTES if corpus_dir is not None else 0]  # a manifest-only view hashes nothing
    out = []
    names = list((ingest.get("sources") or {}).keys()) or list(recipe_sources)
    for name in names:
        s = (ingest.get("sources") or {}).get(name) or {}
        rs = recipe_sources.get(name, {})
        dl_rows = by_source_dl.get(name, [])
        downloaded = {str(r.get("path")): r for r in dl_rows} | {str(r.get("url")): r for r in dl_rows}
        prov = [p for p in s.get("provenance") or [] if isinstance(p, dict)]
        files = [_file_entry(p, downloaded, hash_budget) for p in prov]
        known = {f.get("path") for f in files} | {f.get("url") for f in files}
        for r in dl_rows:  # downloaded files the source did not list itself
            if r.get("path") not in known and r.get("url") not in known:
                files.append(_file_entry(r, {}, hash_budget))
        entry = {
            "name": name,
            "type": s.get("type") or rs.get("type"),
            "license": s.get("license") or rs.get("license"),
            "where": _where(rs),
            "docs_in": _num(s.get("docs_in")),
            "docs_out": _num(s.get("docs_out")),
            "docs_rejected": _num(s.get("docs_rejected")),
            "bytes_in": _num(s.get("bytes_in")),
            "bytes_out": _num(s.get("bytes_out")),
            "rejected_by_reason": s.get("rejected_by_reason") or {},
            "files": files,
            "files_bytes": sum(f.get("size") or 0 for f in files) if files else None,
            "final_docs": None,
            "final_bytes": None,
            "document_licenses": {},
            "tokens": tokens_by_source.get(name),
        }
        if final is not None:
            sub = final.filter(pl.col("source") == name)
            entry["final_docs"] = int(sub.height)
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


def funnel_stages(manifest: dict) -> list[dict]:
    rows = []
    for name, s in (manifest.get("stages") or {}).items():
        if not isinstance(s, dict) or "docs_in" not in s:
            continue
        rows.append({"stage": name} | {k: _num(s.get(k)) for k in ("docs_in", "docs_out", "docs_rejected", "bytes_in", "bytes_out", "seconds")})
    return rows


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


def _filters(manifest: dict, rejected: Rejected | None) -> list[dict]:
    """Documents removed per (stage, filter), with a few truncated examples.

    Exact counts and examples come from rejected/; without it, from the stage stats."""
    rows = []
    if rejected is not None and rejected.counts.height:
        order = {name: i for i, name in enumerate((manifest.get("stages") or {}).keys())}
        agg = rejected.counts.with_columns(pl.col("stage").replace_strict(order, default=len(order)).alias("_o"))
        agg = agg.sort(["_o", "docs", "filter"], descending=[False, True, False])
        examples = rejected.examples(EXAMPLES_PER_FILTER)
        for r in agg.iter_rows(named=True):
            ex = examples.filter((pl.col("stage") == r["stage"]) & (pl.col("filter") == r["filter"])).sort("id")
            rows.append({
                "stage": r["stage"], "filter": r["filter"], "docs": int(r["docs"]), "bytes": int(r["bytes"]),
                "examples": [{"id": e["id"], "source": e.get("source"), "reason": e["reason"], "text": truncate(e.get("text"))}
                             for e in ex.iter_rows(named=True)],
            })
        return rows
    for stage in (manifest.get("stages") or {}):
        s = _stage(manifest, stage)
        for fname, f in (s.get("filters") or {}).items():
            if isinstance(f, dict):
                rows.append({"stage": stage, "filter": fname, "docs": _num(f.get("docs"), 0), "bytes": _num(f.get("bytes")),
                             "examples": [{k: (truncate(e.get(k)) if k == "text" else e.get(k)) for k in ("id", "reason", "text")}
                                          for e in (f.get("examples") or [])[:EXAMPLES_PER_FILTER] if isinstance(e, dict)]})
            elif isinstance(f, (int, float)):
                rows.append({"stage": stage, "filter": fname, "docs": int(f), "bytes": None, "examples": []})
        for fname, n in (s.get("rejected_by_reason") or {}).items():
            rows.append({"stage": stage, "filter": fname, "docs": int(n), "bytes": None, "examples": []})
    return rows


def _idle_filters(manifest: dict) -> dict[str, list[str]]:
    """Filters a stage ran that removed nothing (so a reader knows they were on)."""
    out = {}
    for stage in (manifest.get("stages") or {}):
        idle = [name for name, f in (_stage(manifest, stage).get("filters") or {}).items()
                if isinstance(f, dict) and not f.get("docs")]
        if idle:
            out[stage] = sorted(idle)
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


def _tokens(corpus_dir: Path | None) -> pl.DataFrame | None:
    """id, split, n_tokens of every tokenized document."""
    if corpus_dir is None:
        return None
    frames = []
    for split in ("train", "val"):
        lf = _scan(list_shards(corpus_dir / "tokens" / split))
        if lf is None:
            continue
        n = pl.col("n_tokens").cast(pl.Int64) if "n_tokens" in _columns(lf) else pl.col("input_ids").list.len().cast(pl.Int64).alias("n_tokens")
        frames.append(lf.select(pl.col("id"), n, pl.lit(split).alias("split")).collect(engine="streaming"))
    return pl.concat(frames) if frames else None


def _languages(final: pl.DataFrame | None, manifest: dict, tok: pl.DataFrame | None) -> dict:
    if final is None:
        langs = _stage(manifest, "clean").get("languages") or {}
        total = sum(v for v in langs.values() if isinstance(v, (int, float))) or 0
        rows = [{"language": k, "docs": int(v), "share": (v / total if total else None), "bytes": None}
                for k, v in sorted(langs.items(), key=lambda kv: (-kv[1], kv[0])) if isinstance(v, (int, float))]
        return {"origin": "clean stage stats (before dedup)" if rows else None, "rows": rows}
    df = final.with_columns(pl.col("language").fill_null("unknown"))
    agg = df.group_by("language").agg(pl.len().alias("docs"), pl.col("bytes").sum().alias("bytes"))
    if tok is not None:
        # bytes per token: the text's UTF-8 bytes over its tokens, the end-of-text token not counted
        joined = df.join(tok.select("id", "n_tokens"), on="id", how="inner")
        t = joined.group_by("language").agg((pl.col("n_tokens") - 1).clip(lower_bound=0).sum().alias("tokens"),
                                           pl.col("bytes").sum().alias("tok_bytes"))
        agg = agg.join(t, on="language", how="left")
    agg = agg.sort(["docs", "language"], descending=[True, False])
    total = int(df.height)
    rows = []
    for r in agg.iter_rows(named=True):
        row = {"language": r["language"], "docs": int(r["docs"]), "share": r["docs"] / total if total else None, "bytes": int(r["bytes"])}
        if tok is not None:
            row["tokens"] = int(r["tokens"] or 0)
            row["bytes_per_token"] = round(r["tok_bytes"] / r["tokens"], 4) if r["tokens"] else None
        rows.append(row)
    return {"origin": "dedup/ (final documents)", "rows": rows}


def _token_figures(manifest: dict, final: pl.DataFrame | None, tok: pl.DataFrame | None) -> dict:
    st = _stage(manifest, "tokenize")
    out = {
        "tokens_train": _num(st.get("tokens_train")),
        "tokens_val": _num(st.get("tokens_val")),
        "docs_train": _num(st.get("docs_train")),
        "docs_val": _num(st.get("docs_val")),
        "vocab_size": _num(st.get("vocab_size")) or _num(((manifest.get("recipe") or {}).get("tokenize") or {}).get("vocab_size")),
        "origin": "tokenize stage stats" if st else None,
        "per_source": None,
        "bytes_per_token": _num(st.get("bytes_per_token")),
        "length_histogram": None,
    }
    if tok is None:
        return out
    by_split = {r["split"]: r for r in tok.group_by("split").agg(pl.len().alias("docs"), pl.col("n_tokens").sum().alias("tokens")).iter_rows(named=True)}
    for split, key in (("train", "train"), ("val", "val")):
        r = by_split.get(split, {"docs": 0, "tokens": 0})
        out[f"tokens_{key}"] = int(r["tokens"] or 0)
        out[f"docs_{key}"] = int(r["docs"])
    out["origin"] = "tokens/ (recounted)"
    out["length_histogram"] = _log2_histogram(tok["n_tokens"].to_numpy())
    if final is not None:
        joined = final.select("id", "source", "bytes").join(tok.select("id", "n_tokens"), on="id", how="inner")
        per = joined.group_by("source").agg(pl.col("n_tokens").sum().alias("tokens")).sort("source")
        out["per_source"] = {r["source"]: int(r["tokens"]) for r in per.iter_rows(named=True)}
        content = int((joined["n_tokens"] - 1).clip(lower_bound=0).sum() or 0)
        out["bytes_per_token"] = round(int(joined["bytes"].sum() or 0) / content, 4) if content else None
    return out


# ---------------------------------------------------------------- duplicates


def _duplicates(manifest: dict, corpus_dir: Path | None, rejected: Rejected | None) -> dict:
    d = _stage(manifest, "dedup")
    docs_in = _num(d.get("docs_in"))
    out = {
        "docs_in": docs_in,
        "exact_removed": _num(d.get("exact_removed")),
        "near_removed": _num(d.get("near_removed")),
        "other_removed": None,
        "exact_rate": None, "near_rate": None,
        "clusters": _num(d.get("clusters")) if not isinstance(d.get("clusters"), (list, dict)) else None,
        "cluster_sizes": None, "largest": [], "origin": "dedup stage stats" if d else None,
    }
    if isinstance(d.get("cluster_sizes"), dict):
        out["cluster_sizes"] = {str(k): int(v) for k, v in d["cluster_sizes"].items()}
    if rejected is not None and rejected.counts.height:
        dr = rejected.counts.filter(pl.col("stage") == "dedup")
        counts = {r["filter"]: int(r["docs"]) for r in dr.iter_rows(named=True)}
        exact = sum(n for f, n in counts.items() if "exact" in f.lower() and "url" not in f.lower())
        near = sum(n for f, n in counts.items() if any(w in f.lower() for w in ("near", "minhash", "fuzzy")))
        out["exact_removed"], out["near_removed"] = exact, near
        out["other_removed"] = sum(counts.values()) - exact - near
        out["removed_by_filter"] = counts
        out["origin"] = "rejected/ and clusters/ (recounted)"
    if docs_in:
        if out["exact_removed"] is not None:
            out["exact_rate"] = out["exact_removed"] / docs_in
        if out["near_removed"] is not None:
            out["near_rate"] = out["near_removed"] / docs_in
    clusters_lf = _scan(list_shards(corpus_dir / "clusters", "*.parquet")) if corpus_dir is not None else None
    if clusters_lf is None:
        out["largest"] = _largest_from_stats(d.get("largest_clusters"))
        return out
    cl = clusters_lf.select("id", "cluster_id", "kept").collect()
    sizes = cl.group_by("cluster_id").agg(pl.len().alias("size"))
    multi = sizes.filter(pl.col("size") > 1)
    dist = multi.group_by("size").len().sort("size")
    in_multi = int(multi["size"].sum() or 0)
    size_dist = {}
    if docs_in is not None:
        size_dist["1"] = max(docs_in - in_multi, 0)  # documents with no duplicate
    size_dist.update({str(r["size"]): int(r["len"]) for r in dist.iter_rows(named=True)})
    out["cluster_sizes"] = size_dist
    out["clusters"] = int(multi.height)
    out["docs_in_clusters"] = in_multi
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


def _largest_from_stats(clusters) -> list[dict]:
    """The dedup stage's own `largest_clusters` (member ids and one excerpt) in the card's shape."""
    out = []
    for c in clusters if isinstance(clusters, list) else []:
        if not isinstance(c, dict):
            continue
        members = []
        for i, m in enumerate(c.get("members") or []):
            mid = m.get("id") if isinstance(m, dict) else str(m)
            members.append({"id": mid, "kept": mid == c.get("cluster_id"),
                            "text": truncate(c.get("excerpt")) if i == 0 else None})
        out.append({"cluster_id": c.get("cluster_id"), "size": c.get("size"), "kept": c.get("cluster_id"),
                    "members": members[:MEMBERS_PER_CLUSTER]})
    return out[:LARGEST_CLUSTERS]


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


def _pii(manifest: dict) -> dict | None:
    pii = _stage(manifest, "clean").get("pii")
    if not isinstance(pii, dict):
        return None
    flat: dict[str, int] = {}
    for k, v in pii.items():
        if isinstance(v, dict):  # e.g. {"replaced": {"email": 3}} or {"email": {"docs": 2, "count": 3}}
            n = _num(v.get("count"), _num(v.get("replaced")))
            if n is not None:
                flat[k] = int(n)
            else:
                for k2, v2 in v.items():
                    if _num(v2) is not None:
                        flat[k2] = flat.get(k2, 0) + int(v2)
        elif _num(v) is not None:
            flat[k] = int(v)
    return dict(sorted(flat.items(), key=lambda kv: (-kv[1], kv[0])))


def read_models(corpus_dir: Path | None) -> list[dict]:
    if corpus_dir is None:
        return []
    path = corpus_dir / "models.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    models = data.get("models", []) if isinstance(data, dict) else data
    manifest = corpus_dir / "manifest.json"
    current = sha256_file(manifest) if manifest.is_file() else None
    for m in models:
        # a run records the manifest it trained on; a rebuilt corpus makes it an earlier build's result
        m["same_build"] = not m.get("manifest_sha256") or current is None or m["manifest_sha256"] == current
    return models


# ---------------------------------------------------------------- entry point


def collect_figures(corpus_dir: str | Path | None, manifest: dict | None = None) -> dict:
    """All figures of a corpus's card. `corpus_dir=None` uses the manifest alone."""
    corpus_dir = Path(corpus_dir) if corpus_dir is not None else None
    if manifest is None:
        if corpus_dir is None:
            raise ValueError("collect_figures needs a corpus folder or a manifest")
        mpath = corpus_dir / "manifest.json"
        if not mpath.is_file():
            raise FileNotFoundError(f"{mpath}: no manifest.json; build the corpus first (opencorpus run RECIPE)")
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    final = _final_docs(corpus_dir)
    tok = _tokens(corpus_dir)
    rejected = Rejected.open(corpus_dir)
    tokens = _token_figures(manifest, final, tok)
    dedup = _stage(manifest, "dedup")
    summary = {
        "docs": int(final.height) if final is not None else _num(dedup.get("docs_out")),
        "bytes": int(final["bytes"].sum() or 0) if final is not None else _num(dedup.get("bytes_out")),
        "tokens": (tokens["tokens_train"] or 0) + (tokens["tokens_val"] or 0) if tokens["tokens_train"] is not None else None,
        "origin": "dedup/ and tokens/ (recounted)" if final is not None else "manifest",
        "kinds": ({str(k): int(v) for k, v in final.group_by("kind").len().sort("kind", nulls_last=True).iter_rows()}
                  if final is not None else {}),
    }
    figures = {
        "figures_version": FIGURES_VERSION,
        "name": manifest.get("name"),
        "description": manifest.get("description") or "",
        "created": manifest.get("created"),
        "recipe_path": manifest.get("recipe_path"),
        "recipe_hash": manifest.get("recipe_hash"),
        "code_version": manifest.get("code_version"),
        "command": manifest.get("command"),
        "versions": manifest.get("versions") or {},
        "summary": summary,
        "sources": _sources(manifest, corpus_dir, final, tokens.get("per_source") or {}),
        "funnel": {"stages": funnel_stages(manifest), "filters": _filters(manifest, rejected), "idle_filters": _idle_filters(manifest)},
        "languages": _languages(final, manifest, tok),
        "lengths": {"unit": "UTF-8 bytes per document",
                    "histogram": _log2_histogram(final["bytes"].to_numpy()) if final is not None and final.height else None},
        "tokens": tokens,
        "duplicates": _duplicates(manifest, corpus_dir, rejected),
        "pii": _pii(manifest),
        "models": read_models(corpus_dir),
    }
    summary["languages"] = [r["language"] for r in figures["languages"]["rows"]]
    summary["licenses"] = _licenses(figures)
    figures["limitations"] = limitations(figures)
    return figures


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
