"""Data cards: the corpus's story, generated from its manifest and Parquet files.

The card is written as `DIR/README.md` (so the output folder is a ready Hugging Face
dataset repository) and copied to `data_cards/<name>.md`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from pipeline.io import write_text


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


def funnel_markdown(manifest: dict) -> str:
    rows = ["| Stage | Docs in | Docs out | Rejected | MB in | MB out | Seconds |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in manifest["stages"].items():
        if "docs_in" not in s:
            continue
        rows.append(
            f"| {name} | {s['docs_in']:,} | {s['docs_out']:,} | {s.get('docs_rejected', 0):,} | "
            f"{s.get('bytes_in', 0) / 1e6:,.2f} | {s.get('bytes_out', 0) / 1e6:,.2f} | {s.get('seconds', 0):.1f} |"
        )
    return "\n".join(rows)


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def card_metadata(manifest: dict) -> dict:
    stages = manifest["stages"]
    licenses = sorted({lic for s in stages["ingest"].get("sources", {}).values() for lic in _source_licenses(s)})
    langs = sorted((stages.get("clean", {}).get("languages") or {}).keys())
    docs = stages.get("dedup", {}).get("docs_out", 0)
    return {
        "pretty_name": manifest["name"],
        "license": "other" if len(licenses) != 1 else licenses[0].lower(),
        "language": langs or ["en"],
        "size_categories": [_size_category(docs)],
        "task_categories": ["text-generation"],
        "configs": [
            {"config_name": "documents", "data_files": [{"split": "train", "path": "dedup/part-*.parquet"}]},
            {
                "config_name": "tokens",
                "data_files": [
                    {"split": "train", "path": "tokens/train/part-*.parquet"},
                    {"split": "validation", "path": "tokens/val/part-*.parquet"},
                ],
            },
        ],
    }


def _source_licenses(source_stats: dict) -> list[str]:
    lic = [p.get("license") for p in source_stats.get("provenance", []) if p.get("license")]
    if source_stats.get("license"):
        lic.append(source_stats["license"])
    return lic


def render_card(manifest: dict) -> str:
    meta = card_metadata(manifest)
    stages = manifest["stages"]
    tok = stages.get("tokenize", {})
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "", f"# {manifest['name']}", ""]
    if manifest.get("description"):
        lines += [manifest["description"].strip(), ""]
    lines += [
        "## Summary",
        "",
        f"- Documents: {stages.get('dedup', {}).get('docs_out', 0):,} ({_mb(stages.get('dedup', {}).get('bytes_out', 0))} of text)",
        f"- Tokens: {tok.get('tokens_train', 0):,} train / {tok.get('tokens_val', 0):,} validation",
        f"- Built: {manifest['created']} with opencorpus {manifest['code_version']}",
        f"- Recipe hash: `{manifest['recipe_hash']}`",
        f"- Reproduce: `{manifest['command']}`",
        "",
        "## Sources",
        "",
        "| Source | Type | License | Docs read | MB read |",
        "|---|---|---|---:|---:|",
    ]
    for name, s in stages["ingest"].get("sources", {}).items():
        lic = ", ".join(sorted(set(_source_licenses(s)))) or "not stated"
        lines.append(f"| {name} | {s.get('type', '')} | {lic} | {s['docs_in']:,} | {s['bytes_in'] / 1e6:,.2f} |")
    lines += ["", "## Processing funnel", "", funnel_markdown(manifest), ""]
    filters = stages.get("clean", {}).get("filters") or {}
    if filters:
        lines += ["### Clean filters", "", "| Filter | Docs removed | MB removed |", "|---|---:|---:|"]
        for fname, f in filters.items():
            lines.append(f"| {fname} | {f.get('docs', 0):,} | {f.get('bytes', 0) / 1e6:,.3f} |")
        lines.append("")
    d = stages.get("dedup", {})
    if d:
        lines += ["## Duplicates", "", f"- Exact duplicates removed: {d.get('exact_removed', 0):,}",
                  f"- Near duplicates removed: {d.get('near_removed', 0):,}", ""]
    lines += ["## Versions", "", "```json", json.dumps(manifest["versions"], indent=1), "```", ""]
    return "\n".join(lines)


def write_card(out_dir: Path, manifest: dict, data_cards_dir: Path | None = None) -> Path:
    out_dir = Path(out_dir)
    path = write_text(render_card(manifest), out_dir / "README.md")
    if data_cards_dir is not None:
        Path(data_cards_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(data_cards_dir) / f"{manifest['name']}.md")
    return path
