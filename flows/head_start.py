"""A head start: the first units of `opencorpus run` begin before the Prefect flow run exists.

A run cannot start its flow before the Prefect API answers, and on a new Prefect home that is
the server's start (~4 s on 2 cores: importing Prefect's API app and its start-up), after ~1.5 s
of importing Prefect in the command itself. On the default corpus those seconds were most of
what the orchestration cost. The work does not need them: the ingest and clean units are plain
functions on the process pool (flows/units.py), whose workers never import Prefect.

So the command, once the pool's fork server is started, plans the run's ingest units exactly as
the flow will (flows/units.py `ingest_units`: same keys), starts on the pool those that are not
already done, and starts each clean unit as soon as the ingest unit that writes its shard has
finished. When the flow reaches a stage, each task run of a unit that was started early takes
that unit's result (flows/pool.py `run(..., early=tag)`) instead of submitting it again: the unit
is still one Prefect task run, with its state, retries (a retry runs the unit again, normally)
and logs, and the card counts it as run, not reused. Its task run is short: the work began
before it.

What makes that safe:

* the head start claims the output folder first (flows/state.py `claim_output`, which the flow
  then takes over in the same process) and does nothing if another run holds it;
* it starts only units without a valid done record, with the keys the flow computes; where the
  flow plans a unit the head start did not (an input changed in between), the flow first waits
  for every unit the head start began and takes none of them (`abandon`);
* only for what runs on this machine's pool: a local output, local sources and recipe, `--workers`
  above 1, no Dask.

Nothing here imports Prefect.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from concurrent.futures import Future, wait
from pathlib import Path

from flows import pool

ENV = "OPENCORPUS_HEAD_START"  # 0: none (every unit waits for the flow run)
_current: "HeadStart | None" = None


class HeadStart:
    def __init__(self, recipe, root: Path, hashes, claim: contextlib.ExitStack):
        self.recipe, self.root, self.hashes, self.claim = recipe, root, hashes, claim
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.planned_later = {"clean"}  # stages whose units the thread starts, as their inputs are written
        # Per stage, perf_counter() times: its first early unit's start and last early unit's end;
        # and, for the stages whose early units the flow took, whether all were done by then.
        self.first_started: dict[str, float] = {}
        self.last_done: dict[str, float] = {}
        self.taken: dict[str, bool] = {}

    def start(self) -> None:
        from flows.units import clean_unit, early_tag, in_task_folder, ingest_unit, ingest_units

        started: list[Future] = []
        for name, key, params in ingest_units(self.recipe, self.root, self.hashes):
            if self._done("ingest", name, key):
                continue
            started.append(self._submit("ingest", early_tag("ingest", self.root, key), in_task_folder, None, (),
                                        ingest_unit, params["recipe"], params["index"], params["root"], key))
        self.hashes.save()
        self.thread = threading.Thread(target=self._clean_when_ingested, args=(started, clean_unit, in_task_folder),
                                       name="opencorpus-head-start", daemon=True)
        self.thread.start()

    def _submit(self, stage: str, tag: str, fn, *args) -> Future:
        self.first_started.setdefault(stage, time.perf_counter())
        future = pool.submit_early(tag, fn, *args)

        def finished(_):  # in the pool's manager thread, one at a time
            self.last_done[stage] = max(self.last_done.get(stage, 0.0), time.perf_counter())

        future.add_done_callback(finished)
        return future

    def _done(self, stage: str, name: str, key: str) -> bool:
        from flows.state import StateStore

        return StateStore(self.root).valid(stage, name, key) is not None

    def _clean_when_ingested(self, started: list[Future], clean_unit, in_task_folder) -> None:
        from flows.units import clean_units, early_tag

        pending = set(started)
        while pending and not self.stopped.is_set():
            finished, pending = wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
            results = [f.result() for f in finished if not f.cancelled() and f.exception() is None]
            if not results or self.stopped.is_set():
                continue  # a failed unit is the flow's to report (its task runs it again)
            for name, key, params in clean_units(results, self.recipe.clean, self.root, self.hashes):
                if not self._done("clean", name, key):
                    self._submit("clean", early_tag("clean", self.root, key), in_task_folder, None,
                                 [str(self.root / params["shard"])], clean_unit, params["shard"], params["root"],
                                 params["config"], key)

    def settle(self) -> None:
        """Return once every unit this head start will start has been started."""
        if self.thread is not None:
            self.thread.join()

    def abandon(self, keep: set[str]) -> None:
        """Start nothing more; wait for the units begun (they may be writing) and forget them,
        except `keep`, the ones the flow's tasks take."""
        self.stopped.set()
        self.settle()
        pool.drop_early(pool.early_tags() - keep)


def start(recipe_arg: str, output: str | None, workers: int, work_dir: str | None = None, force: bool = False) -> bool:
    """Give `opencorpus run RECIPE --output OUTPUT --workers N` a head start where it can (see
    the module's docstring); True if units were planned. Call after pool.prestart(). Any
    failure here only means no head start: the flow meets the same problem and reports it."""
    global _current
    if _current is not None or workers < 2 or "://" in recipe_arg or os.environ.get(ENV) == "0":
        return False
    try:
        return _start(recipe_arg, output, workers, work_dir, force)
    except Exception:  # noqa: BLE001 - the flow runs every unit itself and reports what is wrong
        return False


def _start(recipe_arg: str, output: str | None, workers: int, work_dir: str | None, force: bool) -> bool:
    global _current
    from flows.state import STATE_DIR, HashCache, claim_output
    from flows.storage import OutputLocation, default_output, stage_remote_sources
    from pipeline.recipe import load_recipe

    recipe = load_recipe(recipe_arg)
    if stage_remote_sources(recipe) is not recipe:  # sources to download: the flow stages them first
        return False
    location = OutputLocation.of(output or str(default_output(recipe)), work_dir)
    if location.remote:
        return False
    root = location.local.resolve()
    claim = contextlib.ExitStack()
    try:
        claim.enter_context(claim_output(root, force, wait_s=0))  # until finish(); the flow's claim is nested in it
    except Exception:
        claim.close()
        return False
    head = _current = HeadStart(recipe, root, HashCache(root / STATE_DIR / "file-hashes.json"), claim)
    atexit.register(finish)  # a flow that never ran
    pool.open_pool(workers, early=True)
    head.start()
    return True


def finish() -> None:
    """After the flow run (or instead of it): wait for the units still running, close the pool
    if no flow took it over, and let go of the output folder."""
    global _current
    head, _current = _current, None
    if head is None:
        return
    head.abandon(keep=set())
    if pool.opened_early():
        pool.close_pool()
    head.claim.close()


def reached(stage: str, tags: set[str]) -> set[str]:
    """The flow reached `stage`, whose units have these tags: the ones started early, which the
    stage's tasks take. Where the head start began a unit of this stage that the flow does not
    plan, it is abandoned: the flow takes none of its units and runs them all itself."""
    head = _current
    if head is None:
        return set()
    if stage in head.planned_later:
        head.settle()
    early = pool.early_tags()
    ours = {t for t in early if t.startswith(f"{stage} ")}
    if ours - tags:
        head.abandon(keep=set())
        return set()
    if ours:
        head.taken[stage] = pool.early_done(ours)
    return ours & tags


def stage_seconds(stage: str, t0: float) -> float:
    """Wall seconds of a stage the flow reached at `t0` (perf_counter) and ends now. Where it took
    units a head start began: from the first one's start, less the time its work lay finished
    waiting for the flow (when every early unit was done before the flow got there)."""
    now, head = time.perf_counter(), _current
    if head is None or stage not in head.taken:
        return now - t0
    start = min(t0, head.first_started.get(stage, t0))
    waited = max(0.0, t0 - head.last_done.get(stage, t0)) if head.taken[stage] else 0.0
    return now - start - waited
