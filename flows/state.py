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

import contextlib
import hashlib
import importlib.metadata as md
import json
import os
import platform
import shutil
from functools import lru_cache
from pathlib import Path

from pipeline.io import STATE_DIR, sha256_file, write_json
from pipeline.records import UNIT_STATS, DoneRecord, RecordError, StageStats

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"

# The module each stage's unit runs; its code is that module and every pipeline module it
# imports (at any depth), and its libraries are the distributions those modules import.
STAGE_MODULES = {
    "ingest": "pipeline.ingest",  # plus the module of the source's own class (source_code_files)
    "clean": "pipeline.clean.stage",
    "dedup": "pipeline.dedup.stage",
    "tokenizer": "pipeline.tokenize.tokenizer",
    "tokenize": "pipeline.tokenize.stage",
}


def _module_file(name: str) -> Path | None:
    rel = Path(*name.split(".")[1:])
    for cand in (PIPELINE / rel.with_suffix(".py"), PIPELINE / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None  # a name imported from a module, not a module


@lru_cache(maxsize=None)
def _packages_distributions() -> dict[str, list[str]]:
    """Top-level module -> distributions; reading every installed distribution's file list
    takes seconds in a large environment, so once per process (it was once per stage)."""
    return md.packages_distributions()


def warm_code_fingerprints() -> None:
    """Compute every stage's code fingerprint now (the CLI does it while Prefect's server boots)."""
    for stage in STAGE_MODULES:
        code_fingerprint(stage)


@lru_cache(maxsize=None)
def module_closure(module: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(pipeline files relative to pipeline/, third-party distributions) that `module` uses,
    following its imports (top-level and inside functions) through pipeline/.

    Parsing every pipeline module and mapping imports to distributions takes ~0.5 s, a
    tenth of a small run's start: the closures are kept in $OPENCORPUS_CACHE, valid while no
    pipeline file (path, size, mtime) and no import folder of this interpreter (its mtime:
    installing or removing a distribution changes it) has changed. The fingerprint itself
    still reads every file of the closure and every library's version, on every run."""
    cache = _closure_cache()
    hit = cache["closures"].get(module)
    if hit is not None:
        return tuple(hit[0]), tuple(hit[1])
    closure = _module_closure(module)
    cache["closures"][module] = [list(closure[0]), list(closure[1])]
    with contextlib.suppress(OSError):  # a read-only cache folder only costs the time saved
        write_json(cache, _closure_cache_path())
    return closure


def _closure_cache_path() -> Path:
    from flows.storage import cache_dir  # flows.storage imports this module

    return cache_dir() / "code-closures.json"


@lru_cache(maxsize=None)
def _closure_cache() -> dict:
    import sys

    h = hashlib.sha256(f"{platform.python_version()}\n{PIPELINE}\n".encode())
    for f in sorted(PIPELINE.rglob("*.py")):
        st = f.stat()
        h.update(f"{f.relative_to(PIPELINE).as_posix()} {st.st_size} {st.st_mtime_ns}\n".encode())
    for folder in sys.path:
        with contextlib.suppress(OSError):
            h.update(f"{folder} {os.stat(folder or '.').st_mtime_ns}\n".encode())
    key = h.hexdigest()
    try:
        cached = json.loads(_closure_cache_path().read_text())
        if cached.get("key") == key and isinstance(cached.get("closures"), dict):
            return cached
    except (OSError, ValueError, AttributeError):
        pass
    return {"key": key, "closures": {}}


def _module_closure(module: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    import ast
    import sys

    files: set[Path] = set()
    imported: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        todo += [".".join(parts[:k]) for k in range(2, len(parts))]  # a package's __init__ runs first
        path = _module_file(name) if name.startswith("pipeline.") else None
        if path is None or path in files:
            continue
        files.add(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for n in names:
                (todo.append(n) if n.startswith("pipeline.") else imported.add(n.split(".")[0]))
    dists = _packages_distributions()
    libs = {d for top in imported - set(sys.stdlib_module_names) - {"__future__", "pipeline"} for d in dists.get(top, [])}
    return tuple(sorted(f.relative_to(PIPELINE).as_posix() for f in files)), tuple(sorted(libs))


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@lru_cache(maxsize=None)
def code_fingerprint(stage: str, extra_module: str | None = None) -> str:
    """sha256 over the files and library versions of the stage's module closure (plus that of
    `extra_module`, the source class of an ingest unit)."""
    files, libs = module_closure(STAGE_MODULES[stage])
    if extra_module:
        more_files, more_libs = module_closure(extra_module)
        files, libs = sorted(set(files) | set(more_files)), sorted(set(libs) | set(more_libs))
    h = hashlib.sha256(f"python {platform.python_version()}\n".encode())
    for rel in files:
        h.update(rel.encode() + b"\0" + (PIPELINE / rel).read_bytes() + b"\0")
    for lib in libs:
        try:
            h.update(f"{lib}=={md.version(lib)}\n".encode())
        except md.PackageNotFoundError:
            pass
    return h.hexdigest()


def unit_key(stage: str, inputs: dict[str, str], config, code_module: str | None = None) -> str:
    """The cache key of a unit: its stage, input name -> content hash, config and code."""
    code = code_fingerprint(stage, code_module)
    return sha256_json({"stage": stage, "inputs": inputs, "config": config, "code": code})


def source_module(source) -> str:
    """The module that defines a source's class: its closure (base classes, the downloader for
    sources that fetch, the reader libraries) joins the ingest key; editing another source
    type's module reruns nothing here."""
    return type(source).__module__


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
        digest = sha256_file(path)
        self.entries[str(path)] = stamp + [digest]
        self.dirty = True
        return digest

    def save(self):
        if self.path is not None and self.dirty:
            write_json(self.entries, self.path)
            self.dirty = False


class StateStore:
    """Done records of one output folder (`root/.opencorpus/done/<stage>/<unit>.json`)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.dir = self.root / STATE_DIR

    def record_path(self, stage: str, unit: str) -> Path:
        return self.dir / "done" / stage / f"{unit}.json"

    def load(self, stage: str, unit: str) -> DoneRecord | None:
        try:
            return DoneRecord.load(self.record_path(stage, unit))
        except RecordError:
            return None  # missing, unreadable or from another version: the unit is simply not done

    def stats(self, rec: DoneRecord) -> StageStats | None:
        """The unit's stats as its stage's record type (None if they do not parse: rerun it)."""
        try:
            return UNIT_STATS[rec.stage].parse(rec.stats)
        except RecordError:
            return None

    def valid(self, stage: str, unit: str, key: str) -> DoneRecord | None:
        """The unit's record if it is done with this key and its outputs are intact."""
        rec = self.load(stage, unit)
        if rec is None or rec.key != key or self.stats(rec) is None:
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
            if st.st_mtime_ns != o["mtime_ns"] and sha256_file(path) != o["sha256"]:
                return None
        return rec

    def write(self, stage: str, unit: str, key: str, outputs: list[str | os.PathLike], stats: StageStats) -> DoneRecord:
        """Record a finished unit (outputs hashed here, so call it where they were written)."""
        described = {}
        for p in sorted({Path(p) for p in outputs}):
            path = p if p.is_absolute() else self.root / p
            st = path.stat()
            rel = path.resolve().relative_to(self.root.resolve()).as_posix()
            described[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path)}
        rec = DoneRecord(stage=stage, unit=unit, key=key, outputs=described, stats=stats.dump())
        rec.write(self.record_path(stage, unit))
        return rec

    def forget(self, stage: str, unit: str):
        self.record_path(stage, unit).unlink(missing_ok=True)

    def units(self, stage: str) -> list[str]:
        folder = self.dir / "done" / stage
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def source_fingerprint(source, hashes: HashCache) -> dict:
    """What a source's documents depend on besides its config: its input files' content
    (file sources), or the installed distributions (python-env). Remote sources are keyed
    on their config (URLs, revisions, checksums); their downloader verifies the bytes. The
    versions of the libraries that read them are in the code fingerprint (source_module)."""
    own = getattr(source, "fingerprint", None)
    if callable(own):
        return {"source": own()}
    return _inputs_of(source, hashes)


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


# --------------------------------------------------------------------------- the output folder


class OutputFolderError(ValueError):
    """An output folder the run must not use (another run holds it, or it is the user's)."""


LOCK_WAIT_S = 10.0  # a run that is being stopped (Ctrl-C, a killed supervisor) lets go within this
_claimed: set[Path] = set()  # the folders this process holds


@contextlib.contextmanager
def claim_output(root: Path, force: bool = False, wait_s: float = LOCK_WAIT_S):
    """Hold `root` for one run: refuse a non-empty folder that is not a corpus of ours (unless
    `force`), refuse a folder another run is building (naming it; waited for up to `wait_s`),
    and remove the `.tmp-*` files and folders earlier runs left behind when killed (no other
    run writes them: the lock says so). Files opencorpus wrote are listed in the ledger
    (pipeline.io); a folder from before the ledger gets one made from its done records.

    A folder this process already holds (a head start's claim, flows/head_start.py) is held
    again at once, and nothing is removed: its units may be writing their temporary files."""
    root = Path(root)
    held = root.resolve()
    if held in _claimed:
        yield root  # the outer claim holds the lock, and releases it
        return
    check_output(root, force)
    state = root / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    lock = _lock(root, wait_s)
    _claimed.add(held)
    try:
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {platform.node()}\n")
        lock.flush()
        _seed_ledger(root)
        # The state folder's too: a run killed while a unit wrote its done record leaves a
        # `.tmp-` record there, which no run trusts and none would otherwise remove.
        for stale in sorted(root.rglob(".tmp-*"), key=lambda p: -len(p.parts)):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
        yield root
    finally:
        _claimed.discard(held)
        lock.close()  # closing releases the lock


def check_output(root: Path, force: bool = False):
    """The checks of claim_output that need no lock held (the CLI runs them before Prefect starts)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise OutputFolderError(f"--output {root} is a file, not a folder")
    state = root / STATE_DIR
    if root.is_dir() and not state.is_dir() and any(root.iterdir()):
        if not force:
            raise OutputFolderError(f"--output {root} is not empty and holds no opencorpus corpus (no {STATE_DIR}/): "
                                    "choose an empty or new folder, or pass --force (files of yours there are never "
                                    "deleted or overwritten)")
        in_the_way = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and _ours_by_name(root, p))
        if in_the_way:
            more = f" and {len(in_the_way) - 5} more" if len(in_the_way) > 5 else ""
            raise OutputFolderError(f"--output {root}: files of yours stand where the run writes its own "
                                    f"({', '.join(in_the_way[:5])}{more}); move them away first")
    if (state / "lock").exists():
        _lock(root).close()  # only to see whether another run holds it


# Where a run writes: its folders, and its files at the top of the output folder.
OUTPUT_FOLDERS = {"documents", "clean", "dedup", "clusters", "rejected", "tokens", "dedup_index", "raw", STATE_DIR}
OUTPUT_FILES = {"README.md", "manifest.json", "card.json", "models.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json"}


def _ours_by_name(root: Path, path: Path) -> bool:
    rel = path.relative_to(root).parts
    return rel[0] in OUTPUT_FOLDERS or rel[0].endswith("_assets") or (len(rel) == 1 and rel[0] in OUTPUT_FILES)


def _lock(root: Path, wait_s: float = LOCK_WAIT_S):
    """The open lock file of a corpus folder, locked by this process. A held lock is waited for
    up to `wait_s` seconds, then an error names the holder."""
    import fcntl
    import time

    lock = open(Path(root) / STATE_DIR / "lock", "a+")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    lock.seek(0)
    holder = lock.read().strip() or "another process"
    lock.close()
    raise OutputFolderError(f"--output {root} is being built by {holder}; wait for it or use another folder")


def _seed_ledger(root: Path):
    from pipeline.io import LEDGER

    ledger = root / STATE_DIR / LEDGER
    if ledger.exists():
        return
    done = root / STATE_DIR / "done"
    names = set()
    for path in done.rglob("*.json") if done.is_dir() else []:
        try:
            names.update(json.loads(path.read_text()).get("outputs", {}))
        except (OSError, ValueError):
            continue
    ledger.write_text("".join(f"{n}\n" for n in sorted(names)), encoding="utf-8")
