"""The Prefect API server of `opencorpus` commands: one per Prefect home, kept between runs.

Without a configured API (PREFECT_API_URL, or a profile's), Prefect starts a temporary server
in every process that runs a flow and stops it at exit. On 2 cores that start (imports, the
database check) took ~5 s of every `opencorpus run`, a quarter of the default run. So the
first command that needs a server starts one in a session of its own, where it outlives the
command, and later commands with the same Prefect home use it:

* it stops by itself once no command has used it for `OPENCORPUS_SERVER_IDLE_S` seconds
  (default 600): no request in flight or for that long, and no command registered as using
  it still alive (a run whose only task takes an hour sends nothing for an hour);
* `OPENCORPUS_SERVER_IDLE_S=0`: a server of the run's own, stopped when it ends (Prefect's
  behaviour); `opencorpus server status` / `opencorpus server stop`;
* it is the server Prefect itself would start (uvicorn, `create_app`, ephemeral settings, no
  UI), on 127.0.0.1 only, and is used only from the Python environment and Prefect version it
  was started from: a command from another one (a new venv, an upgrade) stops it and starts
  its own.

A new Prefect home costs more: the server creates its database (Prefect's migrations) and
registers its block types, ~6 s on 2 cores, before it answers. The result is the same for
every home of one Prefect version, so the first server that does it saves a copy of the empty,
migrated database (`$OPENCORPUS_CACHE/prefect-db/prefect-VERSION.db`, with Prefect's
`memo_store.toml` beside it), and a server started for a home without a database starts from
that copy (`seed_database`). `python -m flows.server template` makes the copy ahead of time
(`make venv` does). Only for the default database, SQLite in the home: a configured database
URL is left to Prefect.

Its files, in $PREFECT_HOME: `opencorpus-server.json` (pid, URL, versions), `.lock` (one
command starts it at a time), `.log` (its output), `opencorpus-server.clients/PID` (the
commands using it). Commands only read and write these; the server removes the json when
it stops. This module imports no Prefect (the CLI calls `ensure_server` before importing it).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

IDLE_ENV = "OPENCORPUS_SERVER_IDLE_S"
DEFAULT_IDLE_S = 600.0
START_TIMEOUT_S = 120.0  # a fresh database migrates first; a busy 2-core machine is slow at it
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


def idle_seconds() -> float:
    value = os.environ.get(IDLE_ENV, "")
    try:
        return float(value) if value.strip() else DEFAULT_IDLE_S
    except ValueError:
        raise ValueError(f"{IDLE_ENV}={value!r}: expected seconds (0: a server per run)") from None


def home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")


def _files(folder: Path) -> dict[str, Path]:
    return {k: folder / f"opencorpus-server{suffix}" for k, suffix in
            (("info", ".json"), ("lock", ".lock"), ("log", ".log"), ("clients", ".clients"))}


def _identity() -> dict:
    """What a client must share with the server to use it: the interpreter and Prefect's version
    (read from the installed metadata: importing Prefect here would cost the time saved)."""
    from importlib.metadata import version

    return {"environment": sys.prefix, "prefect": version("prefect")}


def _alive(pid: int) -> bool:
    """The process runs (an exited one its parent has not reaped yet, a zombie, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) is all there is


def _healthy(url: str, timeout: float = 1.0) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def read_info(folder: Path | None = None) -> dict | None:
    path = _files(folder or home())["info"]
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "pid" in info and "url" in info else None


@contextlib.contextmanager
def _locked(path: Path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_server() -> tuple[str, int]:
    """(API URL, server pid) of this Prefect home's kept server: the running one, or one started
    now (it may still be booting: `wait_until_ready`). Registers this process as its user."""
    folder = home()
    files = _files(folder)
    with _locked(files["lock"]):
        info = read_info(folder)
        if info is not None and _alive(info["pid"]):
            if {k: info.get(k) for k in _identity()} == _identity():
                _register(files["clients"])
                return info["url"], info["pid"]
            stop_server(folder, locked=True)  # another interpreter's or Prefect's: not ours to talk to
        url, pid = _spawn(folder, files)
        _register(files["clients"])
        return url, pid


def _register(clients: Path):
    import atexit

    clients.mkdir(parents=True, exist_ok=True)
    mark = clients / str(os.getpid())
    mark.touch()
    atexit.register(lambda: mark.unlink(missing_ok=True))


# --------------------------------------------------------------------------- the database template
DATABASE_ENV = ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL")
MIGRATE_ENV = "PREFECT_SERVER_DATABASE_MIGRATE_ON_START"


def template_paths() -> tuple[Path, Path]:
    """(database, memo store) of the migrated empty database for this Prefect version."""
    from importlib.metadata import version

    from flows.storage import cache_dir

    folder = cache_dir() / "prefect-db"
    name = f"prefect-{version('prefect')}"
    return folder / f"{name}.db", folder / f"{name}.memo_store.toml"


def _default_database(folder: Path) -> bool:
    """The home's database is Prefect's default, prefect.db in the home: no URL set in the
    environment or in the home's profiles (read as text: this side imports no Prefect)."""
    if any(os.environ.get(k) for k in DATABASE_ENV):
        return False
    try:
        return "DATABASE_CONNECTION_URL" not in (folder / "profiles.toml").read_text()
    except OSError:
        return True


def seed_database(folder: Path) -> bool:
    """Give a home that has no database a copy of the template; True if this call put it there
    (the database is then this Prefect version's, fully migrated)."""
    database = folder / "prefect.db"
    template, memo = template_paths()
    if database.exists() or not template.is_file() or not _default_database(folder):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    if not _copy_new(template, database):
        return False  # another command's server got there first; Prefect checks that database
    if memo.is_file():
        _copy_new(memo, folder / "memo_store.toml")
    return True


def _copy_new(source: Path, target: Path) -> bool:
    """Copy `source` to `target` unless `target` exists by then (False): through a temporary
    file, so a killed copy never leaves half a file, linked into place, which fails rather
    than replace a database another process has just created and opened."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, tmp)
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _save_template(folder: Path) -> None:
    """In the server, once Prefect has migrated a new home's database and before any request:
    a consistent copy of it (VACUUM INTO reads through the WAL) becomes the template."""
    import sqlite3

    from pipeline.io import atomic_path

    template, memo = template_paths()
    if template.exists():
        return
    if (folder / "memo_store.toml").is_file():
        with atomic_path(memo) as tmp:
            shutil.copyfile(folder / "memo_store.toml", tmp)
    # The database last: a template that exists is complete. VACUUM INTO accepts the empty file.
    with atomic_path(template) as tmp, contextlib.closing(sqlite3.connect(folder / "prefect.db")) as db:
        db.execute("VACUUM INTO ?", (str(tmp),))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_env(seeded: bool) -> dict:
    """Prefect's temporary-server settings; for a home just seeded with the template (migrated by
    this Prefect version), no migration check at start (alembic loads every migration: ~0.4 s)."""
    return {**SERVER_ENV, **({MIGRATE_ENV: "false"} if seeded else {})}


def _spawn(folder: Path, files: dict[str, Path]) -> tuple[str, int]:
    seeded = seed_database(folder)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "OPENCORPUS_SUPERVISED")}
    env.update(_server_env(seeded), PREFECT_HOME=str(folder), PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[1])] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])))
    with open(files["log"], "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "flows.server", "serve", "--port", str(port),
                                    "--idle", str(idle_seconds())],
                                   env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   start_new_session=True, close_fds=True, cwd=str(folder))
    url = f"http://127.0.0.1:{port}/api"
    info = {"pid": process.pid, "url": url, "started": time.time(), **_identity()}
    tmp = files["info"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, files["info"])
    return url, process.pid


def wait_until_ready(url: str, pid: int, timeout: float = START_TIMEOUT_S) -> bool:
    """True once the server answers; False if it exited first (its log says why) or never answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _healthy(url, timeout=2.0):
            return True
        if not _alive(pid):
            return False
        time.sleep(0.05)
    return False


def stop_server(folder: Path | None = None, locked: bool = False, timeout: float = 10.0) -> int | None:
    """Stop this home's kept server, if one runs; its pid, or None."""
    folder = folder or home()
    files = _files(folder)
    with (contextlib.nullcontext() if locked else _locked(files["lock"])):
        info = read_info(folder)
        if info is None:
            return None
        pid = info["pid"]
        if _alive(pid):
            _terminate(pid, timeout)
        files["info"].unlink(missing_ok=True)
        return pid


def _terminate(pid: int, timeout: float = 5.0):
    """SIGTERM, then SIGKILL after `timeout` s; reaped where it is this process's child."""
    def gone() -> bool:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # a child of this process: a zombie still answers kill(0)
        return not _alive(pid)

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not gone():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        gone()


def status(folder: Path | None = None) -> str:
    folder = folder or home()
    info = read_info(folder)
    if info is None or not _alive(info["pid"]):
        return f"no opencorpus Prefect server for {folder}"
    clients = [p.name for p in _files(folder)["clients"].glob("*") if p.name.isdigit() and _alive(int(p.name))]
    state = "answering" if _healthy(info["url"]) else "not answering"
    return (f"Prefect server {info['url']} (pid {info['pid']}, {state}, Prefect {info.get('prefect')}), "
            f"home {folder}; in use by {len(clients)} command(s); stops after {idle_seconds():g} s idle "
            f"({IDLE_ENV})")


# --------------------------------------------------------------------------- the server process


def serve(port: int, idle: float) -> None:
    """Run Prefect's ephemeral API app on 127.0.0.1:port until idle for `idle` seconds."""
    import threading

    import uvicorn

    folder = home()
    files = _files(folder)
    activity = {"last": time.monotonic(), "open": 0}
    new_database = not (folder / "prefect.db").exists() and _default_database(folder)

    def app_factory():
        from prefect.server.api.server import create_app

        inner = create_app()

        async def app(scope, receive, send):
            if scope["type"] == "lifespan":
                async def send_after_startup(message):
                    if message["type"] == "lifespan.startup.complete":
                        if new_database:
                            try:
                                _save_template(folder)
                            except Exception as e:  # noqa: BLE001 - only a later home's start is slower
                                print(f"opencorpus: no database template saved: {e}", file=sys.stderr)
                        # Recording a run's events and logs takes it ~2 CPU-seconds on the default
                        # corpus: below the run's own processes in priority, it uses the cores they
                        # leave idle. Not before it answers: the run waits for that.
                        _lower_priority(10)
                    await send(message)

                return await inner(scope, receive, send_after_startup)
            activity["open"] += 1  # one event loop: no lock needed
            try:
                return await inner(scope, receive, send)
            finally:
                activity["open"] -= 1
                activity["last"] = time.monotonic()

        return app

    config = uvicorn.Config(app_factory, factory=True, host="127.0.0.1", port=port, log_level="error", lifespan="on")
    server = uvicorn.Server(config)

    def users_alive() -> bool:
        alive = False
        for mark in list(files["clients"].glob("*")) if files["clients"].is_dir() else []:
            if mark.name.isdigit() and _alive(int(mark.name)):
                alive = True
            else:
                mark.unlink(missing_ok=True)  # a command killed before it could unregister
        return alive

    def watch():
        while not server.should_exit:
            time.sleep(min(5.0, max(idle / 4, 0.2)))
            if activity["open"] == 0 and time.monotonic() - activity["last"] > idle and not users_alive():
                server.should_exit = True

    threading.Thread(target=watch, name="opencorpus-server-idle", daemon=True).start()
    try:
        server.run()
    finally:
        info = read_info(folder)
        if info is not None and info.get("pid") == os.getpid():
            files["info"].unlink(missing_ok=True)


def _lower_priority(increment: int) -> None:
    """Nice every thread of this process (on Linux a nice value is per thread, and the database
    threads started during start-up would keep theirs); threads started later inherit it.

    And the session's: where the kernel groups processes by session for scheduling (autogroup,
    on by default in most Linux distributions), a thread's nice value only ranks it within its
    session, and each session gets an equal share of a busy CPU. This server has a session of
    its own, so without this it took half the cores from a run while it recorded the run's
    events. Raising a nice value needs no privilege."""
    with contextlib.suppress(OSError):
        current = os.getpriority(os.PRIO_PROCESS, 0)
        tasks = [int(t) for t in os.listdir("/proc/self/task")] if os.path.isdir("/proc/self/task") else [0]
        for tid in tasks:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, tid, min(current + increment, 19))
    if os.getsid(0) == os.getpid():  # never the session of a command that runs it in its own
        with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as f:
            f.write(str(min(increment, 19)))


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m flows.server")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--idle", type=float, default=DEFAULT_IDLE_S)
    sub.add_parser("template", help="make the migrated database template for this Prefect version, if missing")
    args = ap.parse_args(argv)
    if args.cmd == "template":
        return make_template()
    serve(args.port, args.idle)
    return 0


def make_template() -> int:
    """Start a server on a new, temporary home (it saves the template) and stop it."""
    import tempfile

    template = template_paths()[0]
    if template.is_file():
        print(f"database template: {template} (exists)")
        return 0
    with tempfile.TemporaryDirectory(prefix="opencorpus-prefect-") as tmp:
        os.environ.update(PREFECT_HOME=tmp, **{IDLE_ENV: "60"})  # 0 (a server per run) would stop it at once
        for k in DATABASE_ENV:
            os.environ.pop(k, None)
        url, pid = _spawn(Path(tmp), _files(Path(tmp)))
        try:
            wait_until_ready(url, pid)
        finally:
            _terminate(pid)
        log = _files(Path(tmp))["log"].read_text(errors="replace")[-2000:]
    if template.is_file():
        print(f"database template: {template}")
        return 0
    print(f"database template: not made; the server's output:\n{log}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())


# --------------------------------------------------------------------------- the commands' side


class _NotTemporaryServerInfo:
    def filter(self, record) -> bool:
        return record.levelno > 20 or "temporary server" not in str(record.msg)


# (url, pid, this run's own: stop it at exit) of start_server_early, until prefect_api() takes it
_early_server: tuple[str, int, bool] | None = None


def start_server_early() -> None:
    """When no API is configured: make sure this home's server runs (the kept one, or a server of
    this run's own with OPENCORPUS_SERVER_IDLE_S=0), without waiting for it, so that it boots
    while this process imports the flow and the pool's workers start; prefect_api() waits. Its
    URL goes into the environment now (spawn_server_early's: before the pool's fork server
    starts), before anything imports Prefect: every process and thread then finds this one
    server. Should a profile name a server of its own (read once Prefect is imported), that
    one is used instead."""
    global _early_server, _spawned
    if _early_server is not None or (os.environ.get("PREFECT_API_URL") and _spawned is None):
        return
    spawn_server_early()
    url, pid, own = _spawned
    _spawned = None
    os.environ.pop("PREFECT_API_URL", None)  # ours: what a profile says is read without it
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():  # a profile's server or Prefect Cloud
        if own:
            _terminate(pid)
        return
    _early_server = (url, pid, own)
    os.environ["PREFECT_API_URL"] = url
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()


# (url, pid, this run's own) of spawn_server_early, until start_server_early takes it
_spawned: tuple[str, int, bool] | None = None


def spawn_server_early() -> None:
    """The first half of start_server_early, without importing Prefect (~0.6 s): the server is
    spawned (or the kept one found) and its URL put into the environment. A command calls it
    first, then starts what needs no Prefect (the pool, a head start), then start_server_early."""
    global _spawned
    if _spawned is not None or _early_server is not None or os.environ.get("PREFECT_API_URL"):
        return
    own = idle_seconds() <= 0
    url, pid = _spawn_own() if own else ensure_server()
    _spawned = (url, pid, own)
    os.environ["PREFECT_API_URL"] = url  # for the processes started before start_server_early


def _spawn_own() -> tuple[str, int]:
    """A server for this run only (Prefect's temporary server, started the way Prefect starts it),
    stopped at exit after Prefect's exit hooks have flushed the logs."""
    import atexit

    seeded = seed_database(home())
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
                                "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
                               env={**os.environ, **_server_env(seeded)})
    atexit.register(_terminate, process.pid)  # registered first, so it runs after the exit hooks Prefect adds later
    return f"http://127.0.0.1:{port}/api", process.pid


@contextlib.contextmanager
def prefect_api():
    """Run the body against one Prefect API that every process of the run shares: the configured
    one, or this home's server (start_server_early; started here if it was not). Without it,
    Prefect starts a temporary server per process, so every pool or Dask worker would start
    its own (seconds each)."""
    import logging

    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL

    global _early_server
    # The "Starting/Stopping temporary server" INFO lines are not news to someone who ran
    # `opencorpus run`; Prefect's warnings and errors still show.
    logging.getLogger("prefect").addFilter(_NotTemporaryServerInfo())
    if _early_server is None and not os.environ.get("PREFECT_API_URL") and not PREFECT_API_URL.value():
        start_server_early()
    early = _early_server
    if early is not None and os.environ.get("PREFECT_API_URL") == early[0]:
        _early_server = None
        url, pid, own = early
        if not wait_until_ready(url, pid):
            log = _files(home())["log"]
            raise RuntimeError(f"the Prefect API server (pid {pid}) did not start"
                               + ("" if own else f"; its output is in {log}"))
        try:
            yield
        finally:
            os.environ.pop("PREFECT_API_URL", None)
            refresh_global_settings_context()
        return
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    url = PREFECT_API_URL.value()  # set in a profile or a settings context, not in the environment
    from prefect.settings import temporary_settings

    os.environ["PREFECT_API_URL"] = url
    # Threads that run outside this context read Prefect's global settings, built at import
    # from the environment of that moment: rebuild them from the environment that has the URL.
    refresh_global_settings_context()
    try:
        with temporary_settings({PREFECT_API_URL: url}):  # this process's settings context may lack it
            yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        refresh_global_settings_context()
