"""The Prefect server kept between commands (flows/server.py): a second `opencorpus run` uses
the server the first one started, `opencorpus server stop` ends it, an idle server stops by
itself, and a server started from another environment is replaced, not talked to."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SOURCE = {"name": "py", "type": "python-env", "packages": ["idna"], "stdlib": False, "include": ["code"]}


def _env(home: Path, idle: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(home), OPENCORPUS_SERVER_IDLE_S=idle, PYTHONPATH=str(REPO))
    return env


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


def _alive(pid: int) -> bool:
    from flows.server import _alive

    return _alive(pid)


def _info(home: Path) -> dict:
    return json.loads((home / "opencorpus-server.json").read_text())


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A Prefect home whose database the first test's first run creates; its server is always stopped."""
    from flows.server import stop_server

    folder = tmp_path_factory.mktemp("prefect-home")
    yield folder
    stop_server(folder)


def test_a_second_run_uses_the_server_the_first_kept_and_stop_ends_it(tmp_path, home):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "kept", "sources": [SOURCE], "ingest": {"shard_docs": 20},
                                      "tokenize": {"vocab_size": 300, "val_fraction": 0.1}}))
    env = _env(home, "300")
    _cli(env, "run", str(recipe), "--output", str(tmp_path / "a"), "--workers", "2")
    first = _info(home)
    assert _alive(first["pid"]), "the server stopped with the command that started it"
    assert first["url"].startswith("http://127.0.0.1:")
    # Below the runs in CPU priority, also where the kernel schedules sessions as groups (the
    # server has a session of its own): its threads' nice value and its session's.
    assert os.getpriority(os.PRIO_PROCESS, first["pid"]) >= 10
    autogroup = Path(f"/proc/{first['pid']}/autogroup")
    if autogroup.is_file():
        assert autogroup.read_text().split()[-1] == "10", autogroup.read_text()
    _cli(env, "run", str(recipe), "--output", str(tmp_path / "b"), "--workers", "1")
    assert _info(home)["pid"] == first["pid"], "the second run started a server of its own"
    assert (tmp_path / "b" / "manifest.json").is_file()
    assert "answering" in _cli(env, "server", "status").stdout
    assert str(first["pid"]) in _cli(env, "server", "stop").stdout
    deadline = time.monotonic() + 10
    while _alive(first["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(first["pid"])
    assert not (home / "opencorpus-server.json").exists()
    assert "no opencorpus Prefect server" in _cli(env, "server", "status").stdout


def test_an_unused_server_stops_itself_and_one_from_another_environment_is_replaced(home):
    from flows import server

    env = _env(home, "1")
    start = ("from flows import server; url, pid = server.ensure_server(); "
             "assert server.wait_until_ready(url, pid); print(pid)")
    # A record naming a live process of another environment: never talked to, stopped, replaced.
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    (home / "opencorpus-server.json").write_text(json.dumps(
        {"pid": stranger.pid, "url": "http://127.0.0.1:9/api", "environment": "/elsewhere", "prefect": "0"}))
    pid = int(subprocess.run([sys.executable, "-c", start], env=env, capture_output=True, text=True, check=True,
                             timeout=300).stdout.split()[-1])
    assert stranger.wait(timeout=10) is not None and pid != stranger.pid
    assert _info(home)["pid"] == pid and _info(home)["environment"] == sys.prefix
    # The command that started it has exited and nothing talks to it: it stops after ~1 s idle.
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), "the idle server kept running"
    assert server.read_info(home) is None


def test_a_new_home_starts_from_the_migrated_database_template(tmp_path):
    """The first server on a new home saves its migrated database as the template (one per Prefect
    version); a later new home starts from a copy of it, and a run on that home works. A home
    with a database of its own, or a configured database URL, is never seeded."""
    from flows import server

    cache = tmp_path / "cache"
    env = {**_env(tmp_path / "unused", "0"), "OPENCORPUS_CACHE": str(cache)}
    made = subprocess.run([sys.executable, "-m", "flows.server", "template"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    template = next((cache / "prefect-db").glob("prefect-*.db"))
    import sqlite3

    with sqlite3.connect(template) as db:  # migrated: Prefect's tables and alembic's version
        tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
        assert {"flow_run", "task_run", "alembic_version"} <= tables
        assert db.execute("select count(*) from flow_run").fetchone()[0] == 0
    again = subprocess.run([sys.executable, "-m", "flows.server", "template"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert "exists" in again.stdout

    old = os.environ.get("OPENCORPUS_CACHE")
    os.environ["OPENCORPUS_CACHE"] = str(cache)
    try:
        seeded = tmp_path / "seeded"
        assert server.seed_database(seeded)
        assert (seeded / "prefect.db").read_bytes() == template.read_bytes()
        assert (seeded / "memo_store.toml").is_file()  # block types registered: not again at start
        assert not server.seed_database(seeded), "a home's own database was replaced"
        raced = tmp_path / "raced"  # a database another command created after the check: kept, not replaced
        raced.mkdir()
        (raced / "prefect.db").write_bytes(b"another server's")
        assert not server._copy_new(template, raced / "prefect.db")
        assert (raced / "prefect.db").read_bytes() == b"another server's" and sorted(raced.iterdir()) == [raced / "prefect.db"]
        configured = tmp_path / "configured"
        os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = "postgresql+asyncpg://db.invalid/prefect"
        try:
            assert not server.seed_database(configured) and not (configured / "prefect.db").exists()
        finally:
            del os.environ["PREFECT_API_DATABASE_CONNECTION_URL"]
    finally:
        os.environ.pop("OPENCORPUS_CACHE") if old is None else os.environ.__setitem__("OPENCORPUS_CACHE", old)

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "seeded", "sources": [SOURCE], "ingest": {"shard_docs": 20},
                                      "tokenize": {"vocab_size": 300, "val_fraction": 0.1}}))
    run_env = {**_env(tmp_path / "new-home", "0"), "OPENCORPUS_CACHE": str(cache)}
    _cli(run_env, "run", str(recipe), "--output", str(tmp_path / "out"), "--workers", "1")
    assert (tmp_path / "out" / "manifest.json").is_file()
    with sqlite3.connect(tmp_path / "new-home" / "prefect.db") as db:  # the run was recorded in the copy
        assert db.execute("select count(*) from flow_run").fetchone()[0] == 1
