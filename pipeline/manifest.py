"""`manifest.json` (pipeline.records.Manifest): what a corpus was built from, with what, and what each stage did."""
from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import platform
import subprocess
from pathlib import Path

from pipeline.records import Manifest, Stages

# Distributions whose versions decide the output; recorded in every manifest.
TRACKED_PACKAGES = (
    "opencorpus", "pyarrow", "polars", "datasets", "tokenizers", "datasketch", "ftfy", "prefect",
    "torch", "numpy", "py3langid", "resiliparse", "xxhash", "pydantic",
)


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


def build_manifest(recipe, recipe_path: str | None, stages: Stages, command: str, resume: dict | None = None) -> Manifest:
    return Manifest(
        name=recipe.name, description=recipe.description,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        recipe_path=recipe_path, recipe_hash=recipe.hash(), recipe=recipe.as_written(),
        code_version=code_version(), versions=package_versions(), command=command, stages=stages,
        resume=resume or {},
    )
