"""Where a run reads and writes: local folders, or fsspec URLs (s3://, gs://, file://, ...).

How far object storage goes: the stages themselves read and write local files (Arrow,
tokenizers and the process pools want real paths and fast random access), so

* a remote OUTPUT (`--output s3://bucket/corpus`) is built in a local staging folder
  (`work_dir`, default `~/.cache/opencorpus/staging/<hash of the URL>`). At the start the
  run pulls what the URL already holds (so a rerun on a fresh machine resumes from the
  bucket), and after each stage it pushes the new or changed files, done records last,
  and deletes the remote files the run pruned. The bucket is thus always a valid,
  resumable corpus folder: a done record never arrives before the outputs it vouches for.
* remote INPUTS (a source's `paths:` entries that are URLs; globs allowed) are downloaded
  once into `$OPENCORPUS_CACHE/inputs/` (default ~/.cache/opencorpus) and read from there;
  ids, which use the file name, are the same as for a local copy.

Tasks never need the staging folder. With a remote output every task (an ingest source, a
clean shard, a unit of dedup or tokenize) works in a folder of its own (`TaskStore`): on a Dask
worker under the worker's local directory, elsewhere under the system's temporary folder or
`$OPENCORPUS_TASK_SCRATCH`. It fetches from the store the files its unit reads, runs the unit
there, puts what the unit wrote back into the store (outputs first, done records last) and
removes its folder. The flow then copies those files from the store into its staging folder
(`OutputLocation.receive`), where the driver steps of dedup and tokenize, the card and the
resume logic read them. So the flow's machine holds the whole corpus once, and workers only
the inputs and outputs of the unit they run; each output crosses the network twice (worker
to store, store to flow). Workers read local source paths and files a recipe names (block
lists, custom filters) by path: with no shared filesystem, give sources as URLs.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from flows.state import STATE_DIR, OutputFolderError
from pipeline.io import LEDGER, atomic_path, note_written, write_json

LOCAL_PROTOCOLS = {"file", "local"}
# Machine-local state that is never pushed: the hash cache, the progress log, the ledger.
NOT_PUSHED = (f"{STATE_DIR}/file-hashes.json", f"{STATE_DIR}/progress.jsonl", f"{STATE_DIR}/lock",
              f"{STATE_DIR}/pushed.json")


def split_url(url: str) -> tuple[str | None, str]:
    """(protocol, path) of a URL; protocol None for a plain local path or file:// URL."""
    if "://" not in url:
        return None, url
    protocol, rest = url.split("://", 1)
    if protocol in LOCAL_PROTOCOLS:
        return None, rest
    return protocol, rest


def default_output(recipe) -> Path:
    return Path("data") / recipe.name


def default_staging(url: str) -> Path:
    base = Path(os.environ.get("OPENCORPUS_STAGING", Path.home() / ".cache" / "opencorpus" / "staging"))
    return base / hashlib.sha256(url.encode()).hexdigest()[:16]


@dataclass
class OutputLocation:
    url: str
    local: Path
    remote: str | None = None  # the fsspec URL, None when the output is local
    storage_options: dict = field(default_factory=dict)

    @classmethod
    def of(cls, target: str, work_dir: str | None = None) -> "OutputLocation":
        protocol, path = split_url(str(target))
        if protocol is None:
            return cls(str(target), Path(path))
        return cls(str(target), Path(work_dir) if work_dir else default_staging(str(target)), str(target).rstrip("/"))

    def check_writable(self) -> None:
        """Write and delete a small probe object under the URL: a missing bucket, missing
        credentials or a read-only key then fail before the first stage, not at its first push."""
        if not self.remote:
            return
        import uuid

        try:
            fs, root = self._fs()
            probe = f"{root}/{STATE_DIR}/.tmp-write-probe-{uuid.uuid4().hex}"  # .tmp-: never pulled or pushed if left behind
            fs.pipe_file(probe, b"")
            fs.rm_file(probe)
        except Exception as e:  # noqa: BLE001 - any failure here means the run could not push its outputs
            reason = " ".join(str(e).split()) or type(e).__name__  # one line: botocore messages span several
            raise OutputFolderError(f"--output {self.url} is not writable: {reason}") from e

    def _fs(self):
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.remote, **self.storage_options)
        return fs, root.rstrip("/")

    @property
    def _ledger_path(self) -> Path:
        return self.local / STATE_DIR / "pushed.json"

    def _ledger(self) -> dict[str, list[int]]:
        try:
            return json.loads(self._ledger_path.read_text())
        except (OSError, ValueError):
            return {}

    def _local_files(self) -> dict[str, Path]:
        out = {}
        for p in sorted(self.local.rglob("*")):
            rel = p.relative_to(self.local).as_posix()
            if p.is_file() and not p.name.startswith(".tmp-") and not rel.startswith(NOT_PUSHED) and rel not in NOT_PUSHED:
                out[rel] = p
        return out

    def pull(self) -> int:
        """Download the remote files that the staging folder lacks (or holds at another size)."""
        if not self.remote:
            return 0
        fs, root = self._fs()
        self.local.mkdir(parents=True, exist_ok=True)
        if not fs.exists(root):
            return 0
        ledger, rpaths, lpaths = self._ledger(), [], []
        for rpath, info in fs.find(root, detail=True).items():
            rel = rpath[len(root):].lstrip("/")
            local = self.local / rel
            if rel in NOT_PUSHED or rel.startswith(NOT_PUSHED) or Path(rel).name.startswith(".tmp-"):
                continue
            if not (local.is_file() and local.stat().st_size == info["size"]):
                rpaths.append(rpath)
                lpaths.append(str(local))
        for lp in lpaths:
            Path(lp).parent.mkdir(parents=True, exist_ok=True)
        if rpaths:
            fs.get(rpaths, lpaths)
        for rel, p in self._local_files().items():
            st = p.stat()
            ledger[rel] = [st.st_size, st.st_mtime_ns]
        write_json(ledger, self._ledger_path)
        return len(rpaths)

    def task_store(self) -> "TaskStore | None":
        """What tasks get instead of the staging folder (None for a local output)."""
        if not self.remote:
            return None
        return TaskStore(self.remote, dict(self.storage_options), str(self.local.resolve()))

    def receive(self, transfer: dict) -> None:
        """Copy what a task put into the store into the staging folder (in the order it was put:
        outputs before the done records that vouch for them, each file complete before it is
        renamed into place) and apply its deletions; none of it is pushed back."""
        if not transfer:
            return
        fs, root = self._fs()
        ledger = self._ledger()
        for rel in transfer["deleted"]:
            (self.local / rel).unlink(missing_ok=True)
            ledger.pop(rel, None)
        rels = transfer["uploaded"]
        tmps = [self.local / rel for rel in rels]
        tmps = [p.with_name(f".tmp-{uuid.uuid4().hex}-{p.name}") for p in tmps]
        for t in tmps:
            t.parent.mkdir(parents=True, exist_ok=True)
        if rels:
            fs.get([f"{root}/{r}" for r in rels], [str(t) for t in tmps])
        for rel, t, mtime in zip(rels, tmps, transfer["mtime_ns"]):
            os.utime(t, ns=(mtime, mtime))  # as the task recorded it in its done record: no rehash on reuse
            os.replace(t, self.local / rel)
            st = (self.local / rel).stat()
            ledger[rel] = [st.st_size, st.st_mtime_ns]
        note_written(self.local, transfer["written"])
        write_json(ledger, self._ledger_path)

    def push(self) -> int:
        """Upload new or changed files (done records last) and delete remote files pruned here."""
        if not self.remote:
            return 0
        fs, root = self._fs()
        ledger, now = self._ledger(), self._local_files()
        changed = []
        for rel, p in now.items():
            st = p.stat()
            if ledger.get(rel) != [st.st_size, st.st_mtime_ns]:
                changed.append(rel)
        state = [r for r in changed if r.startswith(STATE_DIR + "/")]
        data = [r for r in changed if not r.startswith(STATE_DIR + "/")]
        gone = sorted(set(ledger) - set(now))
        # Outputs before the records that vouch for them; deletions of records before their files.
        gone_state = [r for r in gone if r.startswith(STATE_DIR + "/")]
        gone_data = [r for r in gone if not r.startswith(STATE_DIR + "/")]
        for batch in (gone_state, gone_data):
            for rel in batch:
                with contextlib.suppress(FileNotFoundError):
                    fs.rm_file(f"{root}/{rel}")
                ledger.pop(rel, None)
        for batch in (data, state):
            if batch:
                fs.put([str(now[r]) for r in batch], [f"{root}/{r}" for r in batch])
                for rel in batch:
                    st = now[rel].stat()
                    ledger[rel] = [st.st_size, st.st_mtime_ns]
                write_json(ledger, self._ledger_path)
        if gone:
            write_json(ledger, self._ledger_path)
        return len(changed) + len(gone)


def _task_scratch_base() -> Path:
    """Where a task makes its folder: $OPENCORPUS_TASK_SCRATCH, a Dask worker's own local
    directory, or the system's temporary folder."""
    if os.environ.get("OPENCORPUS_TASK_SCRATCH"):
        return Path(os.environ["OPENCORPUS_TASK_SCRATCH"])
    try:
        from distributed import get_worker

        return Path(get_worker().local_directory)
    except (ImportError, ValueError):
        return Path(tempfile.gettempdir())


@dataclass(frozen=True)
class TaskStore:
    """A remote output as a task sees it: the store's URL, and the flow's staging folder only
    as a name, so that paths under it in the task's arguments can be rewritten to the task's
    own folder (see the module docstring)."""

    url: str
    storage_options: dict
    staging: str

    def _fs(self):
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs, root.rstrip("/")

    @contextlib.contextmanager
    def task_folder(self, reads=()) -> Iterator["TaskFolder"]:
        """A folder of the task's own holding the files `reads` names (paths or globs under the
        staging folder; others are read where they are); on a clean exit, what the task wrote
        there is put into the store (`TaskFolder.transfer` says what). Always removed."""
        base = _task_scratch_base()
        base.mkdir(parents=True, exist_ok=True)
        folder = TaskFolder(self, Path(tempfile.mkdtemp(prefix="opencorpus-task-", dir=base)))
        try:
            folder.fetch(reads)
            yield folder
            folder.put()
        finally:
            shutil.rmtree(folder.path, ignore_errors=True)


class TaskFolder:
    def __init__(self, store: TaskStore, path: Path):
        self.store, self.path = store, path
        (path / STATE_DIR).mkdir()  # a corpus folder: what the unit writes is noted in its own ledger
        self.fetched: dict[str, tuple[int, int]] = {}
        self.transfer: dict = {}

    def local(self, obj):
        """`obj` (a path, or lists, tuples and dicts of them) with the staging folder replaced by this folder."""
        staging = self.store.staging
        if isinstance(obj, (str, Path)):
            s = str(obj)
            if s == staging or s.startswith(staging + os.sep):
                s = str(self.path) + s[len(staging):]
                return Path(s) if isinstance(obj, Path) else s
            return obj
        if type(obj) in (list, tuple):
            return type(obj)(self.local(o) for o in obj)
        if type(obj) is dict:
            return {k: self.local(v) for k, v in obj.items()}
        return obj

    def _rel(self, path: str) -> str | None:
        staging = self.store.staging
        return path[len(staging) + 1:] if path.startswith(staging + os.sep) else None

    def fetch(self, reads) -> None:
        fs, root = self.store._fs()
        rels = []
        for r in reads:
            rel = self._rel(str(r))
            if rel is None:
                continue
            if any(ch in rel for ch in "*?["):
                rels.extend(m[len(root) + 1:] for m in sorted(fs.glob(f"{root}/{rel}")))
            else:
                rels.append(rel)
        rels = sorted(set(rels))
        for rel in rels:
            (self.path / rel).parent.mkdir(parents=True, exist_ok=True)
        if rels:
            try:
                fs.get([f"{root}/{r}" for r in rels], [str(self.path / r) for r in rels])
            except FileNotFoundError as e:
                raise FileNotFoundError(f"a task's input is missing from {self.store.url}: {e}") from e
        for rel in rels:
            st = (self.path / rel).stat()
            self.fetched[rel] = (st.st_size, st.st_mtime_ns)

    def put(self) -> None:
        """Put new and changed files into the store, outputs first, done records last; remove
        from the store the fetched files the task deleted."""
        fs, root = self.store._fs()
        ledger = f"{STATE_DIR}/{LEDGER}"
        now = {}
        for p in self.path.rglob("*"):
            rel = p.relative_to(self.path).as_posix()
            if p.is_file() and not p.name.startswith(".tmp-") and rel != ledger:
                st = p.stat()
                now[rel] = (st.st_size, st.st_mtime_ns)
        changed = sorted((r for r, st in now.items() if self.fetched.get(r) != st),
                         key=lambda r: (r.startswith(STATE_DIR + "/"), "/done/" in f"/{r}", r))
        deleted = sorted(set(self.fetched) - set(now))
        # Three batches (fs.put sends a batch concurrently): outputs, then scratch state, then the
        # done records, so the store never holds a record without the files it vouches for.
        for kind in ((False, False), (True, False), (True, True)):
            batch = [r for r in changed if (r.startswith(STATE_DIR + "/"), "/done/" in f"/{r}") == kind]
            if batch:
                fs.put([str(self.path / r) for r in batch], [f"{root}/{r}" for r in batch])
        for rel in deleted:
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(f"{root}/{rel}")
        ledger_path = self.path / ledger
        written = ledger_path.read_text(encoding="utf-8").split() if ledger_path.is_file() else []
        self.transfer = {"uploaded": changed, "mtime_ns": [now[r][1] for r in changed], "deleted": deleted,
                         "written": written}


def cache_dir() -> Path:
    return Path(os.environ.get("OPENCORPUS_CACHE", Path.home() / ".cache" / "opencorpus"))


def stage_remote_sources(recipe, inputs_dir: Path | None = None):
    """The recipe with remote `paths:` entries replaced by local copies.

    Copies go to `inputs_dir`, default `$OPENCORPUS_CACHE/inputs/<hash of the file URL>/<name>`:
    a place that does not depend on the output folder, because documents record the path
    they were read from, and equal paths are what lets a build in another staging folder
    (or on another machine with the same OPENCORPUS_CACHE) reuse the recorded units."""
    sources, changed = [], False
    for source in recipe.sources:
        paths = getattr(source, "paths", None)
        if not paths or not any("://" in p for p in paths):
            sources.append(source)
            continue
        local_paths = []
        for pattern in paths:
            protocol, path = split_url(pattern)
            if "://" not in pattern:
                local_paths.append(pattern)
            elif protocol is None:
                local_paths.append(path)
            else:
                local_paths.extend(str(p) for p in _download(pattern, inputs_dir))
        sources.append(source.model_copy(update={"paths": local_paths}))
        changed = True
    return recipe.model_copy(update={"sources": sources}) if changed else recipe


def _download(pattern: str, inputs_dir: Path | None) -> list[Path]:
    """Local copies of the files a URL (or URL glob) names; a copy whose size and checksum
    (ETag / md5, when the store reports one) still match the remote file is reused."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(pattern)
    protocol = pattern.split("://", 1)[0]
    matches = sorted(fs.glob(path)) if any(ch in path for ch in "*?[") else [path]
    matches = [m for m in matches if fs.isfile(m)]
    if not matches:
        raise FileNotFoundError(f"{pattern}: matched no file")
    out = []
    for m in matches:
        url = f"{protocol}://{m}"
        folder = (inputs_dir or cache_dir() / "inputs") / hashlib.sha256(url.encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        local, stamp_path = folder / Path(m).name, folder / f".{Path(m).name}.remote.json"
        info = fs.info(m)
        stamp = {"url": url, "size": info["size"], "checksum": str(info.get("ETag") or info.get("md5Hash") or "")}
        try:
            fresh = local.is_file() and json.loads(stamp_path.read_text()) == stamp
        except (OSError, ValueError):
            fresh = False
        if not fresh:
            with atomic_path(local) as tmp:
                fs.get_file(m, str(tmp))
            write_json(stamp, stamp_path)
        out.append(local)
    return out
