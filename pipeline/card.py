"""Data cards: the corpus's story, generated from its manifest and Parquet files.

The card is written as `DIR/README.md` (so the output folder is a ready Hugging Face
dataset repository, YAML metadata first), its charts as `DIR/<name>_assets/*.png`, and
every figure as `DIR/card.json`. With `data_cards_dir`, the same card is copied to
`data_cards/<name>.md` (charts in `data_cards/<name>_assets/`, figures in
`data_cards/<name>.json`): the chart links are the same relative paths in both places, so
the copy is the same text (until a model is added: links to run reports differ).

All renderings (Markdown, HTML, terminal, diff) draw from one figures dict built by
`pipeline.card_stats.collect_figures`; models trained on the corpus are kept in
`DIR/models.json` and added with `add_model_entry(run_dir)` after `opencorpus eval`.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path

import yaml

from pipeline.card_stats import collect_figures, funnel_stages, kept_share, limitations, read_models
from pipeline.io import write_json, write_text

FIGURES_FILE = "card.json"
MODELS_FILE = "models.json"
NOT_RECORDED = "_Not recorded for this corpus._"
# Fine-tuning results shown in the card, in this order, when a result has them.
FINETUNE_METRICS = ("accuracy", "macro_f1", "validation_accuracy", "majority_class_accuracy", "scratch_accuracy",
                    "accuracy_gain")

# License identifiers the Hugging Face Hub accepts in card metadata (the common ones).
HF_LICENSES = {
    "apache-2.0", "mit", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause",
    "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0",
    "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0", "epl-2.0",
    "etalab-2.0", "eupl-1.1", "eupl-1.2", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1",
    "lgpl-3.0", "isc", "lppl-1.3c", "ms-pl", "mpl-2.0", "odc-by", "odbl", "osl-3.0", "postgresql", "ofl-1.1",
    "ncsa", "unlicense", "zlib", "pddl", "unknown", "other",
}
_HF_ALIASES = {"public-domain": "other", "cc0": "cc0-1.0", "gpl-3.0-only": "gpl-3.0", "gpl-3.0-or-later": "gpl-3.0",
               "gpl-2.0-only": "gpl-2.0", "gpl-2.0-or-later": "gpl-2.0", "lgpl-2.1-only": "lgpl-2.1",
               "lgpl-2.1-or-later": "lgpl-2.1", "lgpl-3.0-only": "lgpl-3.0", "lgpl-3.0-or-later": "lgpl-3.0",
               "agpl-3.0-only": "agpl-3.0", "agpl-3.0-or-later": "agpl-3.0", "gfdl-1.3": "gfdl", "bsd-3": "bsd-3-clause"}
HF_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                      (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


def assets_dir(name: str) -> str:
    """Folder of a card's charts, next to the card (the same name in DIR and in data_cards/)."""
    return f"{name}_assets"


# ---------------------------------------------------------------- formatting helpers


def _mb(n) -> str:
    """A byte count for people: B, kB, MB or GB (decimal units)."""
    if n is None:
        return "n/a"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{int(n):,} B"


def _int(n) -> str:
    return "n/a" if n is None else f"{int(n):,}"


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def _cell(text) -> str:
    """Text safe inside a Markdown table cell."""
    if text is None:
        return ""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def _table(header: list[str], rows: list[list], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"] + [
        "| " + " | ".join(_cell(c) if not isinstance(c, _Raw) else str(c) for c in row) + " |" for row in rows
    ]


class _Raw(str):
    """A table cell that is already Markdown (links, code spans)."""


# ---------------------------------------------------------------- metadata


def _hf_license(lic: str) -> str:
    key = re.sub(r"[\s_]+", "-", lic.strip().lower())
    key = re.sub(r"\(.*?\)", "", key).strip("-; ").removesuffix("-license")
    key = _HF_ALIASES.get(key, key)
    return key if key in HF_LICENSES else "other"


def _size_category(n: int) -> str:
    for limit, label in HF_SIZE_CATEGORIES:
        if n < limit:
            return label
    return "1B<n<10B"


def _is_language_code(code: str) -> bool:
    return bool(re.fullmatch(r"[a-z]{2,3}", code or "")) and code not in ("und", "unk", "zxx")


def card_metadata(manifest_or_figures: dict) -> dict:
    """The card's YAML metadata (Hugging Face dataset card fields)."""
    f = manifest_or_figures if "summary" in manifest_or_figures else collect_figures(None, manifest_or_figures)
    named = sorted({lic for s in f["sources"] for lic in _license_atoms(s)})
    hf = sorted({_hf_license(x) for x in named}) or ["unknown"]
    meta: dict = {"pretty_name": f["name"], "license": hf[0] if len(hf) == 1 else hf}
    if "other" in hf:
        others = sorted({x for x in named if _hf_license(x) == "other"})
        meta["license_name"] = re.sub(r"[^a-z0-9.-]+", "-", "-".join(others).lower()).strip("-")[:80] or "other"
        meta["license_details"] = "See the Sources and Limitations sections: " + "; ".join(others)
    langs = [lang for lang in f["summary"].get("languages") or [] if _is_language_code(lang)]
    if (f["summary"].get("kinds") or {}).get("code"):
        langs.append("code")  # the Hub's tag for source code (as in bigcode/the-stack)
    if langs:
        meta["language"] = langs
    meta["size_categories"] = [_size_category(f["summary"].get("docs") or 0)]
    meta["task_categories"] = ["text-generation"]
    meta["source_datasets"] = [s["name"] for s in f["sources"]] or ["original"]
    meta["configs"] = [
        {"config_name": "documents", "default": True, "data_files": [{"split": "train", "path": "dedup/part-*.parquet"}]},
        {"config_name": "tokens", "data_files": [
            {"split": "train", "path": "tokens/train/part-*.parquet"},
            {"split": "validation", "path": "tokens/val/part-*.parquet"},
        ]},
    ]
    return meta


def _license_atoms(source: dict) -> list[str]:
    """Licenses a source's documents carry (split SPDX `OR`/`AND` expressions)."""
    found = [k for k in (source.get("document_licenses") or {}) if k != "not stated"]
    if not found:  # no recount: what the source and its input files say
        found = ([source["license"]] if source.get("license") else []) + [
            f["license"] for f in source.get("files") or [] if f.get("license")]
    atoms = []
    for lic in found:
        for a in re.split(r"\s+(?:OR|AND)\s+", lic):
            a = re.sub(r"\s+WITH\s+.*$", "", a.strip(" ()"))  # an exception does not change the base license
            if a:
                atoms.append(a)
    return atoms


# ---------------------------------------------------------------- Markdown sections


def funnel_markdown(manifest_or_figures: dict) -> str:
    """The per-stage funnel table (also the flow's Prefect artifact)."""
    stages = (manifest_or_figures["funnel"]["stages"] if "funnel" in manifest_or_figures
              else funnel_stages(manifest_or_figures))
    rows = []
    for s in stages:
        kept = kept_share(s)
        rows.append([s["stage"], _int(s["docs_in"]), _int(s["docs_out"]), _int(s["docs_rejected"]), _pct(kept),
                     _mb(s["bytes_in"]), _mb(s["bytes_out"]),
                     "n/a" if s.get("seconds") is None else f"{s['seconds']:.1f}"])
    return "\n".join(_table(["Stage", "Docs in", "Docs out", "Rejected", "Kept", "Text in", "Text out", "Seconds"], rows))


def _img(charts: dict, key: str, alt: str, prefix: str | None) -> list[str]:
    if prefix is None or key not in charts:
        return []
    return [f"![{alt}]({prefix}/{charts[key]})", ""]


def _summary(f: dict) -> list[str]:
    s, t = f["summary"], f["tokens"]
    lic = s.get("licenses") or {}
    lic_items = [f"{k} ({v:,} docs)" if v is not None else k for k, v in sorted(lic.items(), key=lambda kv: -(kv[1] or 0))]
    lic_text = ", ".join(lic_items[:6]) + (f", and {len(lic_items) - 6} more (see Sources)" if len(lic_items) > 6 else "")
    lic_text = lic_text or "not recorded"
    kinds = s.get("kinds") or {}
    langs = f["languages"]["rows"]
    lang_text = ", ".join(f"{r['language']} ({r['share']:.1%})" for r in langs[:8] if r.get("share") is not None)
    if len(langs) > 8:
        lang_text += f", and {len(langs) - 8} more"
    out = [
        "## Summary", "",
        f"- Documents: {_int(s.get('docs'))} ({_mb(s.get('bytes'))} of UTF-8 text)",
        f"- Tokens: {_int(s.get('tokens'))} ({_int(t.get('tokens_train'))} train / {_int(t.get('tokens_val'))} validation"
        + (f", vocabulary {t['vocab_size']:,}" if t.get("vocab_size") else "") + ")",
        f"- Languages: {lang_text or 'not recorded'}",
        *(["- Kinds: " + ", ".join(f"{k} ({v:,} docs)" for k, v in kinds.items())] if len(kinds) > 1 else []),
        f"- Licenses: {lic_text}",
        f"- Built: {f.get('created') or 'not recorded'} with opencorpus {f.get('code_version') or '?'}",
        f"- Recipe hash: `{f.get('recipe_hash') or 'not recorded'}`",
        "",
        "Reproduce:",
        "",
        "```bash",
    ]
    commit = (f.get("code_version") or "").partition("+g")[2]
    if commit:
        out.append(f"git checkout {commit}   # opencorpus {f['code_version']}")
    out += [f.get("command") or "# command not recorded", "```", ""]
    return out


def _sources(f: dict) -> list[str]:
    out = ["## Sources", ""]
    if not f["sources"]:
        return out + [NOT_RECORDED, ""]
    rows = []
    for s in f["sources"]:
        lic = s.get("license") or ("per document (below)" if len(s.get("document_licenses") or {}) > 1 else
                                   next(iter(s.get("document_licenses") or {}), "not stated"))
        rows.append([s["name"], s.get("type") or "", lic, s.get("where") or "",
                     _int(s.get("docs_in")), _mb(s.get("bytes_in")), _int(s.get("final_docs")), _mb(s.get("final_bytes")),
                     _int(s.get("tokens"))])
    out += _table(["Source", "Type", "License", "From", "Docs read", "Read", "Docs kept", "Kept", "Tokens"], rows, "lllllrrrr")
    out.append("")
    for s in f["sources"]:
        files = s.get("files") or []
        doc_lic = s.get("document_licenses") or {}
        if len(doc_lic) > 1:
            out += [f"Licenses of `{s['name']}` documents: " + ", ".join(f"{k} ({v:,})" for k, v in doc_lic.items()), ""]
        if not files:
            continue
        out += [f"<details><summary>Inputs of <code>{s['name']}</code> ({len(files):,})</summary>", ""]
        if any("distribution" in x for x in files):
            rows = [[x.get("distribution"), x.get("version"), x.get("license") or "not stated", _int(x.get("files"))] for x in files[:200]]
            out += _table(["Distribution", "Version", "License", "Files"], rows, "lllr")
        else:
            rows = [[x.get("url") or x.get("path"), _int(x.get("size")),
                     _Raw(f"`{x['sha256']}`") if x.get("sha256") else "not recorded",
                     x.get("license") or "", x.get("fetched_at") or ""] for x in files[:200]]
            out += _table(["File", "Bytes", "sha256", "License", "Fetched"], rows, "lrlll")
        if len(files) > 200:
            out.append(f"\n… and {len(files) - 200:,} more (see the card's JSON).")
        hashed = [x for x in files if x.get("sha256_origin", "").startswith("hashed")]
        if hashed:
            out.append(f"\n{len(hashed)} checksum(s) were computed when the card was written (the source did not record them).")
        out += ["", "</details>", ""]
    return out


def _funnel(f: dict, charts: dict, prefix: str | None) -> list[str]:
    out = ["## Processing funnel", ""]
    if not f["funnel"]["stages"]:
        return out + [NOT_RECORDED, ""]
    out += [funnel_markdown(f), ""] + _img(charts, "funnel", "documents and bytes per stage", prefix)
    filters = f["funnel"]["filters"]
    out += ["### Removed, per filter", ""]
    if not filters:
        return out + ["No document was removed by any filter.", ""]
    rows = [[x["stage"], _Raw(f"`{x['filter']}`"), _int(x["docs"]), _mb(x.get("bytes"))] for x in filters]
    out += _table(["Stage", "Filter", "Docs removed", "Text removed"], rows, "llrr") + [""]
    out += _img(charts, "filters", "documents removed per filter", prefix)
    for stage, names in (f["funnel"].get("idle_filters") or {}).items():
        out += [f"Filters of `{stage}` that removed nothing: " + ", ".join(f"`{n}`" for n in names) + ".", ""]
    with_ex = [x for x in filters if x.get("examples")]
    if with_ex:
        out += ["### Examples of removed documents", "",
                "Truncated, with e-mail addresses, public IP addresses and phone numbers replaced by placeholders.", ""]
        for x in with_ex:
            out += [f"<details><summary>{x['stage']} / <code>{x['filter']}</code>: {x['docs']:,} removed, "
                    f"{len(x['examples'])} example(s)</summary>", ""]
            rows = [[e.get("id"), e.get("reason"), e.get("text") or ""] for e in x["examples"]]
            out += _table(["Id", "Reason", "Text (truncated)"], rows, "lll") + ["", "</details>", ""]
    return out


def _distributions(f: dict, charts: dict, prefix: str | None) -> list[str]:
    out = ["## Languages, lengths and tokens", "", "### Languages", ""]
    langs = f["languages"]["rows"]
    if not langs:
        out += [NOT_RECORDED, ""]
    else:
        has_tok = any("bytes_per_token" in r for r in langs)
        header = ["Language", "Docs", "Share", "Text"] + (["Tokens", "Bytes per token"] if has_tok else [])
        rows = []
        for r in langs:
            row = [r["language"], _int(r["docs"]), _pct(r.get("share")), _mb(r.get("bytes"))]
            if has_tok:
                row += [_int(r.get("tokens")), "n/a" if r.get("bytes_per_token") is None else f"{r['bytes_per_token']:.2f}"]
            rows.append(row)
        out += _table(header, rows) + ["", f"Counted from {f['languages']['origin']}.", ""]
        out += _img(charts, "languages", "documents per language", prefix)
    out += ["### Document length", ""]
    h = f["lengths"]["histogram"]
    if not h:
        out += [NOT_RECORDED, ""]
    else:
        out += [f"{f['lengths']['unit']}: min {h['min']:,}, 10th percentile {h['p10']:,.0f}, median {h['median']:,.0f}, "
                f"mean {h['mean']:,.0f}, 90th percentile {h['p90']:,.0f}, max {h['max']:,}.", ""]
        out += _img(charts, "lengths", "document length distribution", prefix)
    out += ["### Tokens", ""]
    t = f["tokens"]
    if t.get("tokens_train") is None:
        return out + [NOT_RECORDED, ""]
    rows = [["train", _int(t.get("docs_train")), _int(t.get("tokens_train"))],
            ["validation", _int(t.get("docs_val")), _int(t.get("tokens_val"))]]
    out += _table(["Split", "Docs", "Tokens"], rows) + [""]
    if t.get("bytes_per_token"):
        out += [f"Bytes per token over the whole corpus: {t['bytes_per_token']:.2f} (UTF-8 bytes of text over tokens, "
                "the end-of-text token not counted).", ""]
    th = t.get("length_histogram")
    if th:
        out += [f"Tokens per document: median {th['median']:,.0f}, mean {th['mean']:,.0f}, 90th percentile {th['p90']:,.0f}, max {th['max']:,}.", ""]
    out += _img(charts, "token_lengths", "tokens per document", prefix)
    out += _img(charts, "bytes_per_token", "bytes per token per language", prefix)
    return out


def _duplicates(f: dict, charts: dict, prefix: str | None) -> list[str]:
    d = f["duplicates"]
    out = ["## Duplicates", ""]
    if d.get("docs_in") is None and d.get("exact_removed") is None:
        return out + [NOT_RECORDED, ""]
    out += [f"- Documents entering dedup: {_int(d.get('docs_in'))}",
            f"- Exact duplicates removed: {_int(d.get('exact_removed'))} ({_pct(d.get('exact_rate'))})",
            f"- Near duplicates removed: {_int(d.get('near_removed'))} ({_pct(d.get('near_rate'))})"]
    if d.get("other_removed"):
        out.append(f"- Removed by other dedup rules: {_int(d['other_removed'])} ("
                   + ", ".join(f"`{k}` {v:,}" for k, v in (d.get("removed_by_filter") or {}).items()) + ")")
    if d.get("clusters") is not None:
        out.append(f"- Duplicate clusters (2+ documents): {_int(d['clusters'])}"
                   + (f", holding {_int(d['docs_in_clusters'])} documents" if d.get("docs_in_clusters") is not None else ""))
    out.append("")
    sizes = d.get("cluster_sizes")
    if sizes:
        rows = [[k, _int(v)] for k, v in sorted(sizes.items(), key=lambda kv: int(kv[0]))]
        out += ["### Cluster sizes", ""] + _table(["Documents in cluster", "Clusters"], rows) + [""]
        out += _img(charts, "clusters", "duplicate cluster sizes", prefix)
    if d.get("largest"):
        out += ["### Largest clusters", ""]
        for c in d["largest"]:
            out += [f"**Cluster `{c.get('cluster_id')}`: {c.get('size')} documents, kept `{c.get('kept')}`**", ""]
            rows = [[m.get("id"), "kept" if m.get("kept") else ("removed: " + m["reason"] if m.get("reason") else "removed"),
                     m.get("source") or "", m.get("text") or ""] for m in c.get("members", [])]
            out += _table(["Id", "", "Source", "Text (truncated)"], rows, "llll") + [""]
    return out


def _pii(f: dict, charts: dict, prefix: str | None) -> list[str]:
    out = ["## PII replaced", ""]
    if f["pii"] is None:
        return out + [NOT_RECORDED, ""]
    if not f["pii"]:
        return out + ["No personal data pattern matched.", ""]
    out += _table(["Type", "Replaced"], [[k, _int(v)] for k, v in f["pii"].items()]) + [""]
    return out + _img(charts, "pii", "PII replaced by type", prefix)


def _models(f: dict, card_dir: Path | None) -> list[str]:
    out = ["## Models trained on this corpus", ""]
    models = [m for m in f.get("models") or [] if m.get("kind", "pretrain") == "pretrain"]
    finetunes = [m for m in f.get("models") or [] if m.get("kind") == "finetune"]
    if not models and not finetunes:
        return out + ["None yet. `opencorpus train --data DIR --out RUN_DIR` then `opencorpus eval RUN_DIR` adds a row here.", ""]
    if models:
        rows = []
        for m in models:
            note = "" if m.get("same_build", True) else " (earlier build)"
            rows.append([m.get("run") + note, m.get("preset") or "", m.get("objective") or "clm", _int(m.get("n_params")),
                         _int(m.get("tokens_seen")),
                         _fmt(m.get("val_loss"), 4), _fmt(m.get("val_perplexity"), 2), _fmt(m.get("val_bits_per_byte"), 4),
                         _Raw(_link("report", m.get("report"), card_dir))])
        out += _table(["Run", "Preset", "Objective", "Parameters", "Tokens seen", "Val loss", "Perplexity", "Bits per byte",
                       "Report"], rows, "lllrrrrrl") + [""]
        if any(m.get("objective") == "mlm" for m in models):
            out += ["Masked-LM runs (`mlm`) report the loss on masked tokens: not comparable with next-token (`clm`) loss.", ""]
        if any(not m.get("same_build", True) for m in models):
            out += ["_(earlier build)_: the run recorded a different manifest than this corpus has now.", ""]
    if finetunes:
        out += ["### Fine-tuned on this corpus", ""]
        present = {k for m in finetunes for k, v in (m.get("metrics") or {}).items() if isinstance(v, (int, float))}
        keys = [k for k in FINETUNE_METRICS if k in present] or sorted(present)[:6]
        rows = [[m.get("run"), m.get("task") or "", m.get("base") or "",
                 *[_fmt((m.get("metrics") or {}).get(k), 4) for k in keys],
                 _Raw(_link("report", m.get("report"), card_dir))] for m in finetunes]
        out += _table(["Run", "Task", "Base model", *[k.replace("_", " ") for k in keys], "Report"], rows,
                      "lll" + "r" * len(keys) + "l") + [""]
    return out


def _fmt(x, digits: int) -> str:
    return "n/a" if not isinstance(x, (int, float)) else f"{x:.{digits}f}"


def _link(label: str, target: str | None, card_dir: Path | None) -> str:
    if not target:
        return ""
    if card_dir is not None and os.path.isabs(target):
        target = os.path.relpath(target, card_dir)
    return f"[{label}]({Path(target).as_posix()})"


def _limitations(f: dict) -> list[str]:
    notes = f.get("limitations") or limitations(f)
    out = ["## Limitations and licensing notes", ""]
    out += [f"- {n}" for n in notes] if notes else ["- No specific limitation detected from the data."]
    return out + ["", "These notes are generated from the data; they do not replace reading each source's terms.", ""]


def render_markdown(figures: dict, assets_prefix: str | None = None, charts: dict | None = None,
                    card_dir: str | Path | None = None) -> str:
    """The card as Markdown. Charts are linked as `<assets_prefix>/<file>`; links to run
    reports are made relative to `card_dir`."""
    f, charts = figures, charts or {}
    card_dir = Path(card_dir).resolve() if card_dir is not None else None
    meta = card_metadata(f)
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(), "---", "", f"# {f['name']}", ""]
    if f.get("description"):
        lines += [f["description"].strip(), ""]
    lines += ["_This card is generated by `opencorpus` from the corpus's manifest and Parquet files; "
              "do not edit it by hand._", ""]
    body = (_summary(f) + _sources(f) + _funnel(f, charts, assets_prefix) + _distributions(f, charts, assets_prefix)
            + _duplicates(f, charts, assets_prefix) + _pii(f, charts, assets_prefix) + _models(f, card_dir)
            + _limitations(f))
    if f.get("versions"):
        body += ["## Versions", "", "```json", json.dumps(f["versions"], indent=1), "```", ""]
    sections = [line[3:] for line in body if line.startswith("## ")]
    lines += ["Contents: " + " · ".join(f"[{title}](#{slug(title)})" for title in sections), ""]
    return "\n".join(lines + body)


def slug(title: str) -> str:
    """The anchor GitHub and the Hugging Face Hub give a heading (lowercase, punctuation dropped, spaces to hyphens)."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def render_card(manifest: dict) -> str:
    """The card from the manifest alone (no Parquet recount, no charts)."""
    return render_markdown(collect_figures(None, manifest))


# ---------------------------------------------------------------- writing


def _write_all(out_dir: Path, figures: dict, charts: dict, data_cards_dir: Path | None) -> Path:
    name = figures["name"]
    path = write_text(render_markdown(figures, assets_dir(name), charts, out_dir), out_dir / "README.md")
    write_json(figures | {"charts": charts}, out_dir / FIGURES_FILE)
    if data_cards_dir is not None:
        data_cards_dir = Path(data_cards_dir)
        assets = data_cards_dir / assets_dir(name)
        if assets.exists():
            shutil.rmtree(assets)
        if charts:
            assets.mkdir(parents=True)
            for file in charts.values():
                shutil.copyfile(out_dir / assets_dir(name) / file, assets / file)
        write_text(render_markdown(figures, assets_dir(name), charts, data_cards_dir), data_cards_dir / f"{name}.md")
        write_json(figures | {"charts": charts}, data_cards_dir / f"{name}.json")
    return path


def write_card(out_dir: Path, manifest: dict, data_cards_dir: Path | None = None) -> Path:
    """Recount the corpus in out_dir, draw its charts and write its card (and the copy)."""
    from pipeline.card_charts import write_charts

    out_dir = Path(out_dir)
    figures = collect_figures(out_dir, manifest)
    charts = write_charts(figures, out_dir / assets_dir(figures["name"]))
    return _write_all(out_dir, figures, charts, data_cards_dir)


def _default_copy_dir(name: str) -> Path | None:
    """./data_cards when it holds this corpus's copy (the corpus flow runs from the repo root)."""
    d = Path("data_cards")
    return d if (d / f"{name}.md").is_file() else None


def rewrite_card(corpus_dir: str | Path, data_cards_dir: str | Path | None = None) -> Path:
    """Regenerate DIR's card from its manifest.json and Parquet files (`opencorpus card DIR --write`)."""
    corpus_dir = Path(corpus_dir)
    mpath = corpus_dir / "manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"{mpath}: no manifest.json; build the corpus first (opencorpus run RECIPE)")
    manifest = _read_json(mpath, "manifest.json")
    copy = Path(data_cards_dir) if data_cards_dir is not None else _default_copy_dir(manifest.get("name", ""))
    return write_card(corpus_dir, manifest, copy)


def load_figures(corpus_dir: str | Path) -> dict:
    """The figures of a corpus: its card.json when written, else recounted from its files."""
    corpus_dir = Path(corpus_dir)
    path = corpus_dir / FIGURES_FILE
    if path.is_file():
        figures = json.loads(path.read_text(encoding="utf-8"))
        figures["models"] = read_models(corpus_dir)  # newer than the card when a run was added since
        return figures
    return collect_figures(corpus_dir)


# ---------------------------------------------------------------- models trained on the corpus


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no {what}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None


def _upsert_entry(corpus_dir: Path, entry: dict, data_cards_dir: Path | None) -> dict:
    """Add or replace (same kind and run folder) an entry in models.json and rewrite the card."""
    models = [m for m in read_models(corpus_dir) if not (m.get("run_dir") == entry["run_dir"] and m.get("kind") == entry["kind"])]
    models.append(entry)
    models.sort(key=lambda m: (m.get("kind", ""), m.get("run", ""), m.get("run_dir", "")))
    write_json({"models": models}, corpus_dir / MODELS_FILE)
    if (corpus_dir / "manifest.json").is_file():
        figures = load_figures(corpus_dir)
        charts = figures.pop("charts", None)
        if charts is None:
            from pipeline.card_charts import write_charts

            charts = write_charts(figures, corpus_dir / assets_dir(figures["name"]))
        if data_cards_dir is None:
            data_cards_dir = _default_copy_dir(figures["name"])
        _write_all(corpus_dir, figures, charts, data_cards_dir)
    return entry


def add_model_entry(run_dir: str | Path, data_cards_dir: str | Path | None = None) -> dict:
    """Record an evaluated run (eval.json + run.json) in the card of the corpus it trained on.

    Idempotent: evaluating the same run again replaces its entry. Returns the entry."""
    run_dir = Path(run_dir).resolve()
    ev = _read_json(run_dir / "eval.json", "eval.json (run `opencorpus eval RUN_DIR` first)")
    run = _read_json(run_dir / "run.json", "run.json") if (run_dir / "run.json").is_file() else {}
    corpus = run.get("corpus") or ev.get("corpus") or {}
    data_dir = corpus.get("data_dir")
    if not data_dir:
        raise ValueError(f"{run_dir / 'run.json'}: does not name the corpus the run trained on (corpus.data_dir)")
    corpus_dir = Path(data_dir)
    if not corpus_dir.is_dir():
        raise FileNotFoundError(f"{run_dir / 'run.json'}: corpus folder {corpus_dir} does not exist")
    evaluated_on = (ev.get("corpus") or {}).get("data_dir")
    entry = {
        "kind": "pretrain",
        "run": run_dir.name,
        "run_dir": str(run_dir),
        "preset": run.get("preset"),
        # a masked-LM loss is not a next-token loss: the card keeps them apart
        "objective": ev.get("objective") or (run.get("config") or {}).get("objective") or "clm",
        "n_params": ev.get("n_params") or run.get("n_params"),
        "step": ev.get("step") or run.get("final_step"),
        "tokens_seen": ev.get("tokens_seen") or run.get("tokens_seen"),
        "val_loss": ev.get("val_loss"),
        "val_perplexity": ev.get("val_perplexity"),
        "val_bits_per_byte": ev.get("val_bits_per_byte"),
        "val_tokens": ev.get("val_tokens"),
        "evaluated_on": evaluated_on,
        "report": str(run_dir / "report.md") if (run_dir / "report.md").is_file() else None,
        "manifest_sha256": corpus.get("manifest_sha256"),
        "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return _upsert_entry(corpus_dir, entry, Path(data_cards_dir) if data_cards_dir else None)


def add_finetune_entry(ft_dir: str | Path, corpus_dir: str | Path | None = None,
                       data_cards_dir: str | Path | None = None) -> dict:
    """Record a fine-tuning result in a corpus's card (the corpus it fine-tuned on).

    Reads `ft_dir/eval.json` (or `results.json`) for numeric metrics and `ft_dir/run.json`
    for the corpus folder and base model when `corpus_dir` is not given."""
    ft_dir = Path(ft_dir).resolve()
    result_path = next((ft_dir / n for n in ("eval.json", "results.json", "metrics.json") if (ft_dir / n).is_file()), None)
    if result_path is None:
        raise FileNotFoundError(f"{ft_dir}: no eval.json or results.json with the fine-tuning results")
    res = _read_json(result_path, "results")
    run = _read_json(ft_dir / "run.json", "run.json") if (ft_dir / "run.json").is_file() else {}
    corpus = run.get("corpus") or res.get("corpus") or {}
    corpus_dir = Path(corpus_dir or corpus.get("data_dir") or "")
    if not str(corpus_dir) or not (corpus_dir / "manifest.json").is_file():
        raise ValueError(f"{ft_dir}: cannot tell which corpus it was fine-tuned on; pass corpus_dir")
    metrics = {k: v for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    entry = {
        "kind": "finetune", "run": ft_dir.name, "run_dir": str(ft_dir), "task": res.get("task"),
        "base": run.get("base") or run.get("base_model") or res.get("base_model"),
        "metrics": metrics,
        "report": str(ft_dir / "report.md") if (ft_dir / "report.md").is_file() else None,
        "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return _upsert_entry(corpus_dir.resolve(), entry, Path(data_cards_dir) if data_cards_dir else None)


# ---------------------------------------------------------------- other views (own modules)


def print_summary(corpus_dir, console=None) -> None:
    from pipeline.card_terminal import print_summary as _print

    _print(corpus_dir, console)


def write_html(corpus_dir, out_path=None) -> Path:
    from pipeline.card_html import write_html as _write

    return _write(corpus_dir, out_path)


def diff_cards(dir_a, dir_b) -> str:
    from pipeline.card_diff import diff_cards as _diff

    return _diff(dir_a, dir_b)
