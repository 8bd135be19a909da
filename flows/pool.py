"""The process pool's workers: forked from one fork server that imported the flow's modules once.

Prefect's ProcessPoolTaskRunner spawns its workers (`multiprocessing` "spawn"): each one is a
new interpreter that imports Prefect and the pipeline (~3 CPU-seconds each) when the first
task reaches it. Here they are forked from a fork server (`multiprocessing` "forkserver")
that imported those modules once, and `prestart()` starts that server early, while Prefect's
temporary API server boots: the first ingest task then starts at once. The fork server is a
fresh single-threaded interpreter, as safe to fork as Prefect's spawn is to start; the tasks
still run through Prefect's task engine and API, only the way the worker processes start
differs. This module imports no Prefect (the CLI calls prestart() before importing it).
"""
from __future__ import annotations

import multiprocessing
import os

# What every worker needs: the flow's tasks (Prefect, the pipeline's stages) and their libraries.
PRELOAD = ["flows.corpus", "pipeline.clean", "pipeline.dedup", "pipeline.ingest", "pipeline.tokenize", "pipeline.units"]


def context():
    """The `multiprocessing` context of the pool: a fork server with the modules preloaded."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def prestart() -> None:
    """Start the fork server now (it imports PRELOAD in its own process, in parallel with
    whatever this process does next). It sees this process's environment as it is now: set
    PREFECT_API_URL and the like first. Later pools of this process reuse it."""
    from multiprocessing import forkserver

    context()
    forkserver.ensure_running()


def init_worker(environ: dict) -> None:
    """In each worker, first: the flow process's environment at the pool's start, as a spawned
    worker would have it (the fork server keeps the one of its own start), and Prefect's global
    settings rebuilt from it (threads outside a task's context read those)."""
    os.environ.clear()
    os.environ.update(environ)
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()
