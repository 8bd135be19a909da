"""Resume and change detection: a `.done` record per unit of work, keyed on what made it.

A unit is one piece of a stage the flow can skip as a whole: one source (ingest), one
shard (clean), or the whole corpus (dedup, tokenizer training, encoding). When a unit
finishes, the flow writes `DIR/.opencorpus/done/<stage>/<unit>.json` atomically, holding

    key      sha256 of (stage, the hashes of its input files, its config, its code)
    outputs  every file it wrote, relative to DIR, with size, mtime and sha256
    stats    what the stage function returned (so a skipped unit still has its funnel row)

A rerun skips a unit when its record exists, the key is equal and every output is still
there with the recorded size and content. The input hashes of a downstream unit are the
recorded output hashes of the units before it, so a change anywhere (recipe, code, input
file) reruns exactly the units it reaches: if a changed clean config yields the same
clean shards, dedup is not rerun either.

Why records next to the outputs rather than Prefect's cache policies: the record lives
and dies with the files it vouches for (delete the folder and nothing stale is trusted,
copy it to another machine or bucket and the resume state travels with it), it does not
depend on a Prefect result store or server database, and it verifies the outputs
themselves, not only that a task once returned.
"""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pipeline.io import write_json

STATE_DIR = ".opencorpus"
PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"

# The code and libraries each stage's output depends on. Editing any of these files (or
# upgrading a listed library) changes the stage's key, and so reruns it.
STAGE_CODE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # ingest: plus the modules of the source's own class (source_code_files)
    "ingest": (("ingest.py", "sources/__init__.py", "sources/base.py", "schema.py", "io.py"), ("pyarrow",)),
    "clean": (("clean", "schema.py", "io.py"), ("pyarrow", "polars", "ftfy", "py3langid", "lingua-language-detector", "numpy")),
    "dedup": (("dedup", "schema.py", "io.py"), ("pyarrow", "polars", "datasketch", "numpy", "xxhash", "scipy")),
    "tokenizer": (("tokenize", "io.py"), ("tokenizers", "pyarrow", "numpy")),
    "tokenize": (("tokenize", "io.py"), ("tokenizers", "pyarrow", "numpy")),
}


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@lru_cache(maxsize=None)
def code_fingerprint(stage: str, extra: tuple[str, ...] = ()) -> str:
    """sha256 over the stage's source files (plus `extra`, relative to pipeline/) and the
    versions of the libraries it uses."""
    paths, libs = STAGE_CODE[stage]
    h = hashlib.sha256(f"python {platform.python_version()}\n".encode())
    for rel in sorted(set(paths) | set(extra)):
        root = PIPELINE / rel
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for f in files:
            if f.is_file():
                h.update(f.relative_to(PIPELINE).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    for lib in libs:
        try:
            h.update(f"{lib}=={md.version(lib)}\n".encode())
        except md.PackageNotFoundError:
            pass
    return h.hexdigest()


def unit_key(stage: str, inputs: dict[str, str], config, code_extra: tuple[str, ...] = ()) -> str:
    """The cache key of a unit: its stage, input name -> content hash, config and code."""
    code = code_fingerprint(stage, tuple(sorted(code_extra)))
    return sha256_json({"stage": stage, "inputs": inputs, "config": config, "code": code})


# Libraries a source type reads with; their versions are part of its ingest key.
SOURCE_LIBS = {"warc": ("fastwarc", "resiliparse"), "commoncrawl": ("fastwarc", "resiliparse"), "hf": ("datasets",)}


def source_code_files(source) -> tuple[str, ...]:
    """Modules (relative to pipeline/) that define a source's class and its bases, plus the
    downloader for sources that fetch: editing another source type's module reruns nothing here."""
    import inspect

    files = set()
    for cls in type(source).__mro__:
        try:
            path = Path(inspect.getsourcefile(cls) or "").resolve()
        except TypeError:
            continue
        if PIPELINE in path.parents:
            files.add(path.relative_to(PIPELINE).as_posix())
    if hasattr(source, "fetch"):
        files.add("download.py")
    return tuple(sorted(files))


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class HashCache:
    """sha256 of local files, remembered by (path, size, mtime) so large unchanged inputs
    are read once, not on every run. Kept in the state folder; only the flow process writes it."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, list] = {}
        if path is not None and path.is_file():
            try:
                self.entries = json.loads(path.read_text())
            except (OSError, ValueError):
                self.entries = {}  # a damaged cache only costs rehashing
        self.dirty = False

    def sha256(self, path: Path) -> str:
        path = Path(path).resolve()
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        hit = self.entries.get(str(path))
        if hit and hit[:2] == stamp:
            return hit[2]
        digest = file_sha256(path)
        self.entries[str(path)] = stamp + [digest]
        self.dirty = True
        return digest

    def save(self):
        if self.path is not None and self.dirty:
            write_json(self.entries, self.path)
            self.dirty = False


@dataclass
class DoneRecord:
    stage: str
    unit: str
    key: str
    outputs: dict[str, dict]  # relative path -> {size, mtime_ns, sha256}
    stats: dict

    def output_hashes(self) -> dict[str, str]:
        return {rel: o["sha256"] for rel, o in self.outputs.items()}


class StateStore:
    """Done records of one output folder (`root/.opencorpus/done/<stage>/<unit>.json`)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.dir = self.root / STATE_DIR

    def record_path(self, stage: str, unit: str) -> Path:
        return self.dir / "done" / stage / f"{unit}.json"

    def load(self, stage: str, unit: str) -> DoneRecord | None:
        path = self.record_path(stage, unit)
        try:
            data = json.loads(path.read_text())
            return DoneRecord(data["stage"], data["unit"], data["key"], data["outputs"], data["stats"])
        except (OSError, ValueError, KeyError):
            return None  # missing or unreadable: the unit is simply not done

    def valid(self, stage: str, unit: str, key: str) -> DoneRecord | None:
        """The unit's record if it is done with this key and its outputs are intact."""
        rec = self.load(stage, unit)
        if rec is None or rec.key != key:
            return None
        for rel, o in rec.outputs.items():
            path = self.root / rel
            try:
                st = path.stat()
            except OSError:
                return None
            if st.st_size != o["size"]:
                return None
            # A copied or touched file: check its content, not its timestamp.
            if st.st_mtime_ns != o["mtime_ns"] and file_sha256(path) != o["sha256"]:
                return None
        return rec

    def write(self, stage: str, unit: str, key: str, outputs: list[str | os.PathLike], stats: dict) -> DoneRecord:
        """Record a finished unit (outputs hashed here, so call it where they were written)."""
        described = {}
        for p in sorted({Path(p) for p in outputs}):
            path = p if p.is_absolute() else self.root / p
            st = path.stat()
            rel = path.resolve().relative_to(self.root.resolve()).as_posix()
            described[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(path)}
        rec = DoneRecord(stage, unit, key, described, stats)
        write_json({"stage": stage, "unit": unit, "key": key, "outputs": described, "stats": stats},
                   self.record_path(stage, unit))
        return rec

    def forget(self, stage: str, unit: str):
        self.record_path(stage, unit).unlink(missing_ok=True)

    def units(self, stage: str) -> list[str]:
        folder = self.dir / "done" / stage
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def source_fingerprint(source, hashes: HashCache) -> dict:
    """What a source's documents depend on besides its config: its input files' content
    (file sources), or the installed distributions (python-env). Remote sources are keyed
    on their config (URLs, revisions, checksums); their downloader verifies the bytes."""
    libs = {}
    for lib in SOURCE_LIBS.get(source.config.type, ()):
        try:
            libs[lib] = md.version(lib)
        except md.PackageNotFoundError:
            pass
    own = getattr(source, "fingerprint", None)
    if callable(own):
        return {"source": own(), "libs": libs}
    return {**_inputs_of(source, hashes), "libs": libs}


def _inputs_of(source, hashes: HashCache) -> dict:
    config = source.config
    if getattr(config, "paths", None):
        files = source.resolve_globs(config.paths)
        return {"files": {str(p): hashes.sha256(p) for p in files}}
    if config.type == "python-env":
        try:
            dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in source._distributions())
        except Exception:  # noqa: BLE001 - fall back to every installed distribution
            dists = sorted(f"{d.metadata.get('Name')}=={d.version}" for d in md.distributions())
        return {"python": platform.python_version(), "distributions": dists}
    return {}
