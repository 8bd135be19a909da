"""`manifest.json`: what a corpus was built from, with what, and what each stage did."""
from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import platform
import subprocess
from pathlib import Path

# Distributions whose versions decide the output; recorded in every manifest.
TRACKED_PACKAGES = (
    "opencorpus", "pyarrow", "polars", "datasets", "tokenizers", "datasketch", "ftfy", "prefect",
    "torch", "numpy", "py3langid", "resiliparse", "xxhash", "pydantic",
)
STAGE_ORDER = ("ingest", "clean", "dedup", "tokenize")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def code_version() -> str:
    """The opencorpus version plus the git commit when run from a checkout."""
    version = md.version("opencorpus")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+g{commit}" if commit else version


def build_manifest(recipe, recipe_path: str | None, stages: dict[str, dict], command: str) -> dict:
    return {
        "name": recipe.name,
        "description": recipe.description,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "recipe_path": recipe_path,
        "recipe_hash": recipe.hash(),
        "recipe": recipe.model_dump(mode="json"),
        "code_version": code_version(),
        "versions": package_versions(),
        "command": command,
        "stages": {k: stages[k] for k in STAGE_ORDER if k in stages} | {k: v for k, v in stages.items() if k not in STAGE_ORDER},
    }


def check_conservation(manifest: dict) -> list[str]:
    """Stages whose counts do not add up (empty when every document is accounted for)."""
    bad = []
    for name, s in manifest["stages"].items():
        if {"docs_in", "docs_out", "docs_rejected"} <= s.keys() and s["docs_in"] != s["docs_out"] + s["docs_rejected"]:
            bad.append(f"{name}: docs_in {s['docs_in']} != docs_out {s['docs_out']} + docs_rejected {s['docs_rejected']}")
    return bad
