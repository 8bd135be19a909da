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

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _find_shared() -> Path:
    """The folder with the shared test corpora (`corpora/`) and baselines (`anchors/`):
    $OPENCORPUS_SHARED, else a `shared/` beside the checkout or beside one of its parents
    (a clone made elsewhere on the project machine still finds /work/shared)."""
    env = os.environ.get("OPENCORPUS_SHARED")
    candidates = [Path(env)] if env else []
    candidates += [parent / "shared" for parent in REPO.parents]
    candidates.append(Path("/work/shared"))
    for c in candidates:
        if (c / "corpora").is_dir():
            return c
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


def require_shared() -> Path:
    if not SHARED_CORPORA.is_dir():
        pytest.skip(f"shared corpora not found at {SHARED_CORPORA}")
    return SHARED_CORPORA


@pytest.fixture(scope="session")
def shared_corpora() -> Path:
    return require_shared()


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
