"""The local engine's worker processes: a process pool whose workers are forked from one fork
server that imported the stages' modules once.

With `--workers N` (no Dask), every unit is still one Prefect task run, but the task runs on a
thread of the flow process and hands its work, a plain function of the pipeline, to this pool
(`run`). Prefect's own process-pool runner ran the task engine in each worker instead: a task
there cost ~100 ms of pickling, settings and API traffic of its own (2.2 s for 21 empty tasks,
against 0.2 s this way), more than many units' work on the default corpus. The workers are
plain: no Prefect state, no API client, only the pipeline.

Spawned workers would each import the pipeline (~2 CPU-seconds) when the first unit reaches
them; here they are forked from a fork server (`multiprocessing` "forkserver") that imported
those modules once, and `prestart()` starts that server early, while Prefect's API server
boots. The fork server is a fresh single-threaded interpreter, as safe to fork as spawn is to
start. This module imports no Prefect (the CLI calls prestart() before importing it).
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor

# What every worker needs: the functions the tasks hand over (flows.units, no Prefect: its ~2
# CPU-seconds of imports would compete with the flow's own start) and the pipeline's stages.
PRELOAD = ["flows.units", "pipeline.clean", "pipeline.dedup", "pipeline.ingest", "pipeline.tokenize", "pipeline.units"]

_executor: Executor | None = None  # the pool of the flow run in progress in this process, if any


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
    worker would have it (the fork server keeps the one of its own start)."""
    os.environ.clear()
    os.environ.update(environ)


def open_pool(workers: int) -> ProcessPoolExecutor:
    """The pool `run` hands work to, until close_pool."""
    global _executor
    if _executor is not None:
        raise RuntimeError("a process pool is already open in this process")
    _executor = ProcessPoolExecutor(workers, mp_context=context(), initializer=init_worker,
                                    initargs=(dict(os.environ),))
    return _executor


def close_pool() -> None:
    global _executor
    executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True, cancel_futures=True)


def run(fn, *args):
    """fn(*args) on the open pool (from a task's thread), or here where none is open: one
    worker, or a Dask worker process, where the task itself already runs where it should."""
    executor = _executor
    if executor is None:
        return fn(*args)
    return executor.submit(fn, *args).result()
