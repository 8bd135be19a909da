"""Shared test setup: Prefect isolated from the user's home, one temporary API per session."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before anything imports prefect: state in a throwaway folder, no telemetry (no network here).
_PREFECT_HOME = tempfile.mkdtemp(prefix="opencorpus-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# A command run without an API starts a server per run, stopped when it ends: the kept server
# (flows/server.py) would outlive the suite. tests/test_prefect_server.py tests the kept one.
os.environ.setdefault("OPENCORPUS_SERVER_IDLE_S", "0")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _find_shared() -> Path:
    """The folder with the shared test corpora (`corpora/`) and baselines (`anchors/`):
    $OPENCORPUS_SHARED when set (and then only it: pointing it at an empty folder hides
    shared/), else a `shared/` beside the checkout or beside one of its parents."""
    env = os.environ.get("OPENCORPUS_SHARED")
    if env:
        return Path(env)
    for parent in REPO.parents:
        if (parent / "shared" / "corpora").is_dir():
            return parent / "shared"
    return REPO.parent / "shared"


SHARED = _find_shared()
SHARED_CORPORA = SHARED / "corpora"
_TASKS_DIR = Path(tempfile.mkdtemp(prefix="opencorpus-tasks-"))


def shipped_task(name: str) -> Path:
    """recipes/tasks/<name> with its `../../../shared/` data paths pointed at SHARED: the
    shipped task files assume the checkout sits beside shared/, a test clone may not."""
    out = _TASKS_DIR / name
    if not out.exists():
        text = (REPO / "recipes" / "tasks" / name).read_text(encoding="utf-8")
        out.write_text(text.replace("../../../shared/", f"{SHARED}/"), encoding="utf-8")
    return out


SHARED_SKIP_REASON = f"needs ../shared/corpora (not found at {SHARED_CORPORA})"


def require_shared() -> Path:
    """The shared corpora, for tests marked `shared` (they are skipped without them)."""
    if not SHARED_CORPORA.is_dir():
        pytest.skip(SHARED_SKIP_REASON)
    return SHARED_CORPORA


@pytest.fixture(scope="session")
def shared_corpora() -> Path:
    return require_shared()


@pytest.fixture(scope="session")
def corpora(tmp_path_factory) -> Path:
    """The generated corpora of tests/fixtures_corpus.py (seeded: the same bytes on every machine)."""
    from fixtures_corpus import build_corpora

    return build_corpora(tmp_path_factory.mktemp("corpora"))


LONGEST_FIRST = ["test_finetune_gain.py", "test_run_safety.py", "test_flow_resume.py", "test_flow_dask.py",
                 "test_flow_changes.py", "test_train.py"]


def pytest_collection_modifyitems(config, items):
    """Tests marked `shared` need ../shared/corpora: without it they are skipped (and counted
    in the summary); a test that asks for `shared_corpora` must carry the marker."""
    have = SHARED_CORPORA.is_dir()
    for item in items:
        marked = item.get_closest_marker("shared") is not None
        if "shared_corpora" in getattr(item, "fixturenames", ()) and not marked:
            raise pytest.UsageError(f"{item.nodeid} uses shared_corpora but is not marked `shared`")
        if marked and not have:
            item.add_marker(pytest.mark.skip(reason=SHARED_SKIP_REASON))
    # The longest files first (measured: minutes each): with `make test`'s two processes taking
    # whole files, a long file started last would leave one process idle at the end.
    items.sort(key=lambda item: LONGEST_FIRST.index(item.path.name) if item.path.name in LONGEST_FIRST else len(LONGEST_FIRST))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if isinstance(r.longrepr, tuple) and SHARED_SKIP_REASON in str(r.longrepr[2])]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests need ../shared/corpora (not found at {SHARED_CORPORA}): skipped; "
            "set OPENCORPUS_SHARED or put shared/ beside the checkout to run them", yellow=True)


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect server for the whole session (it takes ~10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on one torch thread: two OpenMP threads fighting other jobs for two
    cores run them 10-30x slower than one thread does."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
