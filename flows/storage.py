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

Remote Dask workers need the staging folder on a filesystem they share with the flow.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from flows.state import STATE_DIR, OutputFolderError
from pipeline.io import atomic_path, write_json

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


@contextlib.contextmanager
def prefect_api():
    """Make sure worker processes talk to the same Prefect API as the flow.

    Without a configured API, Prefect starts a temporary server per process, so every
    worker of a process pool or Dask cluster would start its own (seconds each). Start
    the one temporary server here and hand its URL to the workers through the environment."""
    from prefect.settings import PREFECT_API_URL

    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    url = PREFECT_API_URL.value()  # set in a profile or a settings context, not in the environment
    settings = contextlib.nullcontext()
    if not url and _early_server is not None:
        url = _wait_for_server(*_early_server)
        if url:  # this process's settings were read at import: tell its client too, or it starts a server of its own
            from prefect.settings import temporary_settings

            settings = temporary_settings({PREFECT_API_URL: url})
    if not url:
        from prefect.server.api.server import SubprocessASGIServer

        # Its "Starting/Stopping temporary server" INFO lines (on the `prefect` logger itself) are
        # not news to someone who ran `opencorpus run`; its warnings and errors still show.
        logging.getLogger("prefect").addFilter(_NotTemporaryServerInfo())
        server = SubprocessASGIServer()  # the same instance Prefect's own client would start
        server.start(timeout=120)  # a fresh database migrates first; it stops at exit, after the logs are flushed
        url = server.api_url
    os.environ["PREFECT_API_URL"] = url
    try:
        with settings:
            yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)


class _NotTemporaryServerInfo:
    def filter(self, record) -> bool:
        return record.levelno > logging.INFO or "temporary server" not in str(record.msg)


_early_server: tuple | None = None  # (process, API URL) of start_temporary_server


def start_temporary_server() -> None:
    """Spawn Prefect's temporary API server now, without waiting for it, when no API is
    configured: it boots (imports, database check: ~5 s) while this process imports the
    flow, and prefect_api() waits for it. The command is the one Prefect's own
    SubprocessASGIServer runs (prefect/server/api/server.py), spawned without importing that
    module (~2 s more). Stopped at exit, after Prefect's exit hooks have flushed the logs."""
    global _early_server
    if _early_server is not None or os.environ.get("PREFECT_API_URL"):
        return
    import atexit
    import socket
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL, get_current_settings

    if PREFECT_API_URL.value():  # a profile's server or Prefect Cloud
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
           **get_current_settings().to_environment_variables(exclude_unset=True)}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
                                "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
                               env=env)
    atexit.register(_stop_server, process)  # registered first, so it runs after the exit hooks Prefect adds later
    _early_server = (process, f"http://127.0.0.1:{port}/api")


def _wait_for_server(process, url: str, timeout: float = 120) -> str | None:
    """`url` once the server answers /health; None (Prefect's usual start then follows) if it exited."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client() as client:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    _stop_server(process)
    return None


def _stop_server(process):
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
