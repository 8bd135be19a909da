"""Helpers of the orchestration tests (tests/test_flow_*.py): a small real recipe, output
snapshots for byte-identity checks, and the environment a `opencorpus` subprocess needs to
talk to the session's temporary Prefect server."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# Files that carry the run's time (manifest, card): everything else must be byte-identical.
RUN_SPECIFIC = ("manifest.json", "README.md", "card.json", "card_assets/", ".opencorpus/")


def small_recipe(folder: Path, corpora: Path, name: str = "flow-small", **overrides) -> Path:
    """The generated corpora's (tests/fixtures_corpus.py) 40 WikiText-style articles, a novel's
    12 chapters twice (exact duplicates) and 60 web pages, in shards of 40 documents."""
    classic, web = corpora / "classic", corpora / "web"
    recipe = {
        "name": name,
        "sources": [
            {"name": "wt2", "type": "text", "license": "CC-BY-SA-3.0", "paths": [str(classic / "wiki.txt")],
             "separator_regex": r"^ = [^=].* = $"},
            {"name": "botchan", "type": "text", "license": "public-domain", "paths": [str(classic / "novel.txt")],
             "separator_regex": r"^CHAPTER [IVXL]+"},
            {"name": "botchan_copy", "type": "text", "license": "public-domain", "paths": [str(classic / "novel.txt")],
             "separator_regex": r"^CHAPTER [IVXL]+"},
            {"name": "cc", "type": "jsonl", "license": "ODC-BY",
             "paths": [str(web / "pages.jsonl.gz")], "max_docs": 120},
        ],
        "ingest": {"shard_docs": 40},
        "tokenize": {"vocab_size": 1024, "val_fraction": 0.1, "seed": 7},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict):
            recipe[key] = {**recipe[key], **value}
        else:
            recipe[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def snapshot(root: Path, normalize: bool = True) -> dict[str, str]:
    """sha256 of every output file, by path relative to `root` (run-specific files left out).

    JSON files may name the folder itself (dedup_index/index.json holds absolute paths of
    its shards): the folder's own path is replaced by a placeholder before hashing, so
    two builds in different folders compare equal exactly when nothing else differs."""
    root = Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(RUN_SPECIFIC) and rel not in RUN_SPECIFIC:
            data = p.read_bytes()
            if normalize and p.suffix == ".json":
                data = data.replace(str(root.resolve()).encode(), b"<root>").replace(str(root).encode(), b"<root>")
            out[rel] = hashlib.sha256(data).hexdigest()
    return out


def cli_env() -> dict[str, str]:
    """Environment for an `opencorpus` subprocess: the session's Prefect API, this repo importable."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", *args]


def run_until_killed(cmd: list[str], ready, log: Path, timeout: float = 300, poll_s: float = 0.05) -> None:
    """Start `cmd`, SIGKILL its whole process group as soon as `ready()` holds."""
    import pytest

    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"run finished (rc {proc.returncode}) before the kill point; log: {Path(log).read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("kill point not reached in time")
            time.sleep(poll_s)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# Worker-side audit of file access (tests of runs whose workers share no filesystem with the
# flow): installed in each Dask worker with `client.run(watch_folder, path)`, it records every
# open, listing, rename or removal of a path inside that folder.
_WATCHED: dict = {"folder": None, "seen": []}
_AUDITED = {"open", "os.listdir", "os.scandir", "os.rename", "os.remove", "os.mkdir", "shutil.rmtree"}


def _audit(event: str, args: tuple):
    folder = _WATCHED["folder"]
    if folder is None or event not in _AUDITED or not args:
        return
    path = args[0]
    if isinstance(path, (str, bytes, os.PathLike)):
        path = os.fsdecode(path)
        if os.path.abspath(path) == folder or os.path.abspath(path).startswith(folder + os.sep):
            _WATCHED["seen"].append(f"{event} {path}")


def watch_folder(folder: str) -> None:
    if _WATCHED["folder"] is None:
        sys.addaudithook(_audit)  # audit hooks cannot be removed: one per process, repointed
    _WATCHED["folder"], _WATCHED["seen"] = os.path.abspath(folder), []


def folder_accesses() -> list[str]:
    return list(_WATCHED["seen"])
