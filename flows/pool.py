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

import contextlib
import multiprocessing
import os
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor

# What every worker needs: the functions the tasks hand over (flows.units, no Prefect: its ~2
# CPU-seconds of imports would compete with the flow's own start) and the pipeline's stages.
PRELOAD = ["flows.units", "pipeline.clean", "pipeline.dedup", "pipeline.ingest", "pipeline.tokenize", "pipeline.units"]

_executor: Executor | None = None  # the pool of the flow run in progress in this process, if any
_opened_early = False  # opened by open_pool(early=True): the next open_pool (the flow's runner) takes it
# Units started before the flow run (flows/head_start.py), by tag, until a task takes its own;
# the head start's thread adds to it while the flow's task threads take from it.
_early: dict[str, Future] = {}
_early_lock = threading.Lock()


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


def open_pool(workers: int, early: bool = False) -> ProcessPoolExecutor:
    """The pool `run` hands work to, until close_pool. `early`: opened before the flow run, for
    the units of a head start; the flow's task runner then takes this pool as its own."""
    global _executor, _opened_early
    if _executor is not None:
        if _opened_early and not early and _executor._max_workers == workers:
            _opened_early = False
            return _executor
        raise RuntimeError("a process pool is already open in this process")
    _executor = ProcessPoolExecutor(workers, mp_context=context(), initializer=init_worker,
                                    initargs=(dict(os.environ),))
    _opened_early = early
    return _executor


def close_pool() -> None:
    global _executor, _opened_early
    executor, _executor, _opened_early = _executor, None, False
    with _early_lock:
        _early.clear()
    if executor is not None:
        executor.shutdown(wait=True, cancel_futures=True)


def submit_early(tag: str, fn, *args) -> Future:
    """Start fn(*args) on the open pool now, for the task that later runs it with `early=tag`."""
    if _executor is None:
        raise RuntimeError("no process pool is open")
    future = _executor.submit(fn, *args)
    with _early_lock:
        _early[tag] = future
    return future


def opened_early() -> bool:
    """The open pool is one a head start opened, and no flow's runner has taken it yet."""
    return _executor is not None and _opened_early


def early_tags() -> set[str]:
    with _early_lock:
        return set(_early)


def early_done(tags) -> bool:
    """Every one of these early units has finished."""
    with _early_lock:
        return all(_early[t].done() for t in tags if t in _early)


def _take_early(tag: str) -> Future | None:
    with _early_lock:
        return _early.pop(tag, None)


def drop_early(tags) -> None:
    """Wait for these early units (they may be writing files) and forget them: no task takes them."""
    for tag in tags:
        future = _take_early(tag)
        if future is not None and not future.cancel():
            with contextlib.suppress(BaseException):
                future.result()


def run(fn, *args, early: str | None = None):
    """fn(*args) on the open pool (from a task's thread), or here where none is open: one
    worker, or a Dask worker process, where the task itself already runs where it should.
    `early`: where a head start began this very unit (submit_early with this tag), its result."""
    started = _take_early(early) if early is not None else None
    if started is not None:
        return started.result()
    executor = _executor
    if executor is None:
        return fn(*args)
    return executor.submit(fn, *args).result()
