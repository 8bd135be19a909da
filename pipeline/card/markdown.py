"""The card as Markdown: Hugging Face metadata, then one section per part of the data story.

Everything is rendered from the figures dict (`pipeline.card.figures.collect_figures`), so
the Markdown, charts, HTML, terminal summary and diff never disagree.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml

from pipeline.card.figures import collect_figures, funnel_stages, kept_share, limitations, size_order
from pipeline.card.format import Raw, count, mb, pct, table
from pipeline.records import Manifest

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
               "agpl-3.0-only": "agpl-3.0", "agpl-3.0-or-later": "agpl-3.0", "gfdl-1.3": "gfdl", "bsd-3": "bsd-3-clause",
               # SPDX ids the Hub names without their version
               "odc-by-1.0": "odc-by", "odbl-1.0": "odbl", "pddl-1.0": "pddl", "gfdl-1.1": "gfdl", "gfdl-1.2": "gfdl",
               "lgpl-2.0": "lgpl", "gpl-1.0": "gpl", "cc-pddc": "other"}
# An SPDX id (name, then a version): the Hub has no id for it, so the card links its SPDX page.
_SPDX_ID = re.compile(r"[A-Za-z][A-Za-z0-9.+]*(?:-[A-Za-z0-9.+]+)*-\d[A-Za-z0-9.]*")
HF_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                      (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


# ---------------------------------------------------------------- metadata


def _hf_license(lic: str) -> str:
    """The Hub's id of a license (an SPDX id or a common spelling); "other" when it has none."""
    key = re.sub(r"[\s_]+", "-", lic.strip().lower())
    key = re.sub(r"\(.*?\)", "", key).strip("-; ").removesuffix("-license")
    key = _HF_ALIASES.get(key, key)
    if key not in HF_LICENSES:  # SPDX's -only / -or-later variants (GFDL-1.3-only...) share the Hub's id
        key = _HF_ALIASES.get(re.sub(r"-(only|or-later)$", "", key), re.sub(r"-(only|or-later)$", "", key))
    return key if key in HF_LICENSES else "other"


def _size_category(n: int) -> str:
    for limit, label in HF_SIZE_CATEGORIES:
        if n < limit:
            return label
    return "1B<n<10B"


def _is_language_code(code: str) -> bool:
    return bool(re.fullmatch(r"[a-z]{2,3}", code or "")) and code not in ("und", "unk", "zxx")


def card_metadata(f: dict) -> dict:
    """The card's YAML metadata (Hugging Face dataset card fields) from the figures."""
    named = sorted({lic for s in f["sources"] for lic in _license_atoms(s)})
    hf = sorted({_hf_license(x) for x in named}) or ["unknown"]
    meta: dict = {"pretty_name": f["name"], "license": hf[0] if len(hf) == 1 else hf}
    if "other" in hf:
        others = sorted({x for x in named if _hf_license(x) == "other"})
        meta["license_name"] = re.sub(r"[^a-z0-9.-]+", "-", "-".join(others).lower()).strip("-")[:80] or "other"
        meta["license_details"] = "See the Sources and Limitations sections: " + "; ".join(others)
        if len(others) == 1 and _SPDX_ID.fullmatch(others[0]):
            meta["license_link"] = f"https://spdx.org/licenses/{others[0]}.html"
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
    # Browsable on the Hub viewer; declared only when they hold rows, as `datasets` refuses a
    # configuration whose files are all empty ("corresponds to no data").
    if sum(s.get("docs_rejected") or 0 for s in f["funnel"]["stages"]):
        meta["configs"].append({"config_name": "rejected", "data_files": [{"split": "train", "path": "rejected/*.parquet"}]})
    if f["duplicates"].get("docs_in_clusters"):
        meta["configs"].append({"config_name": "clusters", "data_files": [{"split": "train", "path": "clusters/*.parquet"}]})
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


def funnel_markdown(source: Manifest | dict) -> str:
    """The per-stage funnel table (also the flow's Prefect artifact), from a manifest or figures."""
    stages = funnel_stages(source) if isinstance(source, Manifest) else source["funnel"]["stages"]
    rows = []
    for s in stages:
        kept = kept_share(s)
        rows.append([s["stage"], count(s["docs_in"]), count(s["docs_out"]), count(s["docs_rejected"]), pct(kept),
                     mb(s["bytes_in"]), mb(s["bytes_out"]),
                     "n/a" if s.get("seconds") is None else f"{s['seconds']:.1f}"])
    return "\n".join(table(["Stage", "Docs in", "Docs out", "Rejected", "Kept", "Text in", "Text out", "Seconds"], rows))


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
        f"- Documents: {count(s.get('docs'))} ({mb(s.get('bytes'))} of UTF-8 text)",
        f"- Tokens: {count(s.get('tokens'))} ({count(t.get('tokens_train'))} train / {count(t.get('tokens_val'))} validation"
        + (f", vocabulary {t['vocab_size']:,}" if t.get("vocab_size") else "") + ")",
        *([f"- Tokenizer: byte-level BPE trained on a seeded sample of {t['sample_docs']:,} train documents "
           f"({mb(t['sample_bytes'])}; `tokenize.train_sample_bytes`: "
           f"{mb(t['sample_limit']) if t.get('sample_limit') else 'no limit'})"] if t.get("sample_docs") else []),
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
    out += ["# from the recipe's folder (the card's paths are relative to it)", f["command"]] if f.get("command") else [
        "# command not recorded"]
    out += ["```", ""]
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
                     count(s.get("docs_in")), mb(s.get("bytes_in")), count(s.get("final_docs")), mb(s.get("final_bytes")),
                     count(s.get("tokens"))])
    out += table(["Source", "Type", "License", "From", "Docs read", "Read", "Docs kept", "Kept", "Tokens"], rows, "lllllrrrr")
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
            rows = [[x.get("distribution"), x.get("version"), x.get("license") or "not stated", count(x.get("files"))] for x in files[:200]]
            out += table(["Distribution", "Version", "License", "Files"], rows, "lllr")
        else:
            rows = [[x.get("url") or x.get("path"), count(x.get("size")),
                     Raw(f"`{x['sha256']}`") if x.get("sha256") else "not recorded",
                     x.get("license") or "", x.get("fetched_at") or ""] for x in files[:200]]
            out += table(["File", "Bytes", "sha256", "License", "Fetched"], rows, "lrlll")
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
    rows = [[x["stage"], Raw(f"`{x['filter']}`"), count(x["docs"]), mb(x.get("bytes"))] for x in filters]
    out += table(["Stage", "Filter", "Docs removed", "Text removed"], rows, "llrr") + [""]
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
            out += table(["Id", "Reason", "Text (truncated)"], rows, "lll") + ["", "</details>", ""]
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
            row = [r["language"], count(r["docs"]), pct(r.get("share")), mb(r.get("bytes"))]
            if has_tok:
                row += [count(r.get("tokens")), "n/a" if r.get("bytes_per_token") is None else f"{r['bytes_per_token']:.2f}"]
            rows.append(row)
        out += table(header, rows) + ["", f"Counted from {f['languages']['origin']}.", ""]
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
    rows = [["train", count(t.get("docs_train")), count(t.get("tokens_train"))],
            ["validation", count(t.get("docs_val")), count(t.get("tokens_val"))]]
    out += table(["Split", "Docs", "Tokens"], rows) + [""]
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
    out += [f"- Documents entering dedup: {count(d.get('docs_in'))}",
            f"- Exact duplicates removed: {count(d.get('exact_removed'))} ({pct(d.get('exact_rate'))})",
            f"- Near duplicates removed: {count(d.get('near_removed'))} ({pct(d.get('near_rate'))})"]
    if d.get("other_removed"):
        out.append(f"- Removed by other dedup rules: {count(d['other_removed'])} ("
                   + ", ".join(f"`{k}` {v:,}" for k, v in (d.get("removed_by_filter") or {}).items()) + ")")
    if d.get("clusters") is not None:
        out.append(f"- Duplicate clusters (2+ documents): {count(d['clusters'])}"
                   + (f", holding {count(d['docs_in_clusters'])} documents" if d.get("docs_in_clusters") is not None else ""))
    out.append("")
    sizes = d.get("cluster_sizes")
    if sizes:
        rows = [[k, count(v)] for k, v in sorted(sizes.items(), key=lambda kv: size_order(kv[0]))]
        out += ["### Cluster sizes", ""] + table(["Documents in cluster", "Clusters"], rows) + [""]
        out += _img(charts, "clusters", "duplicate cluster sizes", prefix)
    if d.get("largest"):
        out += ["### Largest clusters", ""]
        for c in d["largest"]:
            out += [f"**Cluster `{c.get('cluster_id')}`: {c.get('size')} documents, kept `{c.get('kept')}`**", ""]
            rows = [[m.get("id"), "kept" if m.get("kept") else ("removed: " + m["reason"] if m.get("reason") else "removed"),
                     m.get("source") or "", m.get("text") or ""] for m in c.get("members", [])]
            out += table(["Id", "", "Source", "Text (truncated)"], rows, "llll") + [""]
    return out


def _pii(f: dict, charts: dict, prefix: str | None) -> list[str]:
    out = ["## PII replaced", ""]
    if f["pii"] is None:
        return out + [NOT_RECORDED, ""]
    if not f["pii"]:
        return out + ["No personal data pattern matched.", ""]
    out += table(["Type", "Replaced"], [[k, count(v)] for k, v in f["pii"].items()]) + [""]
    return out + _img(charts, "pii", "PII replaced by type", prefix)


def _quality_and_contamination(f: dict, charts: dict, prefix: str | None) -> list[str]:
    """Only for corpora built with a learned scorer or decontamination."""
    q, c, so = f.get("quality"), f.get("contamination"), f.get("split_overlap")
    if not q and not c and not so:
        return []
    out = ["## Quality scores and contamination", ""]
    if q:
        out += ["### Learned quality score", "",
                f"Scorer `{q['name']}` (`{q['model']}`), threshold {q['threshold']:g}: prose scoring below it was "
                f"removed (filter `quality.{q['name']}`). Every scored document keeps its score in the "
                "`quality_score` column of `clean/` and `rejected/`."]
        h = q.get("held_out") or {}
        if h.get("roc_auc") is not None:
            out += [f"The model's own held-out figures: ROC AUC {h['roc_auc']:.3f}, accuracy {h['accuracy']:.3f}; "
                    f"at {h['threshold']:g} it keeps {pct(h.get('kept_positive'))} of held-out positives and "
                    f"{pct(h.get('kept_negative'))} of held-out negatives."]
        out.append("")
        deciles = [f"{k / 10:.1f}" for k in range(10)]
        mark = min(int(q["threshold"] * 10), 9)
        header = ["Source", "Scored", "Kept"] + [d + (" ▼" if i == mark else "") for i, d in enumerate(deciles)]
        rows = []
        for name, s in sorted(q["sources"].items()):
            counts = s["counts"]
            per = max(1, len(counts) // 10)
            dec = [sum(counts[i * per:(i + 1) * per]) for i in range(10)]
            rows.append([name, count(s["scored"]), pct(s.get("kept_share"))] + [count(x) for x in dec])
        out += table(header, rows) + ["", "Documents per score decile (▼: the decile holding the threshold).", ""]
        out += _img(charts, "quality", "quality score distribution per source", prefix)
    if c:
        out += ["### Contamination", ""]
        rows = [[name, count(x.get("items")), count(x.get("ngrams")), f"{x['ngram']}", x["action"], count(x["docs"]),
                 pct(x.get("share")), ", ".join(f"{k} {v:,}" for k, v in sorted(x.get("sources", {}).items())) or "-"]
                for name, x in c.items()]
        out += table(["Evaluation set", "Texts", "N-grams indexed", "n", "Action", "Documents matched", "Share",
                      "Per source"], rows)
        out += ["", "A document matches when it shares a word n-gram (lowercased, punctuation ignored) with the set.", ""]
    if so:
        out += ["### Validation split against training split", "",
                f"The validation split checked against the training split the same way ({so['ngram']}-grams, final "
                f"documents): {count(so['val_docs_shared'])} of {count(so['val_docs'])} validation documents share an "
                f"n-gram with {count(so['train_docs_sharing'])} of {count(so['train_docs'])} training documents."
                + (" Examples (validation, training): " + ", ".join(f"`{e['val']}` / `{e['train']}`" for e in so["examples"])
                   if so.get("examples") else ""), ""]
    return out


def _mixtures(models: list[dict]) -> list[str]:
    """The mixture each run consumed (share of its training tokens per source), with its `mix` weights."""
    mixed = [m for m in models if (m.get("mixture") or {}).get("tokens")]
    if not mixed:
        return []
    sources = sorted({k for m in mixed for k in m["mixture"]["tokens"]})
    rows = []
    for m in mixed:
        tokens, weights = m["mixture"]["tokens"], m["mixture"].get("weights") or {}
        total = sum(tokens.values()) or 1
        rows.append([m.get("run")] + [f"{100 * tokens.get(k, 0) / total:.1f} %" + (f" (x{weights[k]:g})" if k in weights else "")
                                      for k in sources])
    return (["Training mixture consumed (share of each run's training tokens per source; `mix` weight in brackets):", ""]
            + table(["Run"] + sources, rows, "l" + "r" * len(sources)) + [""])


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
            rows.append([m.get("run") + note, m.get("preset") or "", m.get("objective") or "clm", count(m.get("n_params")),
                         count(m.get("tokens_seen")),
                         _fmt(m.get("val_loss"), 4), _fmt(m.get("val_perplexity"), 2), _fmt(m.get("val_bits_per_byte"), 4),
                         Raw(_link("report", m.get("report"), card_dir))])
        out += table(["Run", "Preset", "Objective", "Parameters", "Tokens seen", "Val loss", "Perplexity", "Bits per byte",
                       "Report"], rows, "lllrrrrrl") + [""]
        out += _mixtures(models)
        ablations = sorted({m["ablation"] for m in models if m.get("ablation")})
        if ablations:
            out += ["Trained by the ablation" + ("s " if len(ablations) > 1 else " ")
                    + ", ".join(f"`{a}` (`opencorpus ablate`; report: `ablations/{a}/report.md` where it ran)" for a in ablations)
                    + ": the report compares these runs with the other variants' over the same seeds.", ""]
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
                 Raw(_link("report", m.get("report"), card_dir))] for m in finetunes]
        out += table(["Run", "Task", "Base model", *[k.replace("_", " ") for k in keys], "Report"], rows,
                      "lll" + "r" * len(keys) + "l") + [""]
    return out


def _fmt(x, digits: int) -> str:
    return "n/a" if not isinstance(x, (int, float)) else f"{x:.{digits}f}"


def _link(label: str, target: str | None, card_dir: Path | None) -> str:
    """A link to a file inside the card's folder; a file elsewhere (a run folder, which is not
    published or committed with the card) is named, not linked, and never by its absolute path."""
    if not target:
        return ""
    if card_dir is not None and os.path.isabs(target):
        rel = os.path.relpath(target, card_dir)
        if not rel.startswith(".."):
            return f"[{label}]({Path(rel).as_posix()})"
    return f"`{Path(target).parent.name}/{Path(target).name}`"


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
            + _duplicates(f, charts, assets_prefix) + _pii(f, charts, assets_prefix)
            + _quality_and_contamination(f, charts, assets_prefix) + _models(f, card_dir)
            + _limitations(f))
    if f.get("versions"):
        body += ["## Versions", "", "```json", json.dumps(f["versions"], indent=1), "```", ""]
    sections = [line[3:] for line in body if line.startswith("## ")]
    lines += ["Contents: " + " · ".join(f"[{title}](#{slug(title)})" for title in sections), ""]
    return "\n".join(lines + body)


def slug(title: str) -> str:
    """The anchor GitHub and the Hugging Face Hub give a heading (lowercase, punctuation dropped, spaces to hyphens)."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def render_card(manifest: Manifest) -> str:
    """The card from the manifest alone (no Parquet recount, no charts)."""
    return render_markdown(collect_figures(None, manifest))
