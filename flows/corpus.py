"""The corpus flow: a recipe in, a corpus folder out (documents, clean, dedup, tokens, card).

Stages are Prefect tasks. Per-source ingest and per-shard cleaning are mapped over their
units with at most `workers` in flight (a process pool, or a Dask cluster with `dask=`);
dedup, tokenizer training and encoding are global (they need every shard) and run in the
flow process with `workers` processes of their own. All the work is done by plain
functions in `pipeline/`; this module only wires them, so the same stages run without
Prefect (bench/flow_overhead.py measures what the wiring costs).

Resume and change detection (flows/state.py): every unit is keyed on its input files'
hashes, its stage's config and its code; a finished unit leaves a done record next to
its outputs, and a rerun skips the units whose key and outputs are unchanged. Killing a
run at any point and running it again gives byte-identical outputs.

Object storage (flows/storage.py): `output` may be an fsspec URL; the flow works in a
local staging folder, pulls what an earlier run left there, and pushes what it writes itself.
Its tasks never touch that folder: each works in a folder of its own, fetching its inputs
from the store and putting its outputs there (TaskStore), so workers need no filesystem
shared with the flow.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.tasks import exponential_backoff

from flows import head_start, pool, storage
from flows.storage import default_output
from flows.progress import ProgressLog
from flows.state import HashCache, StateStore, claim_output, unit_key
from flows.units import (UnitResult, clean_unit, clean_units, early_tag, in_task_folder, ingest_unit, ingest_units,
                         unit_in_folder, unit_result)
from pipeline.io import TOKENIZER_CONFIG_FILES, list_shards, remove_written, written_files
from pipeline.manifest import build_manifest
from pipeline.recipe import Recipe, load_recipe
from pipeline.records import CleanStats, IngestStats, Manifest, StageStats, Stages, TokenizerStats

class _NoTraceback(logging.Filter):
    """Prefect logs a failing task or flow with its traceback; the CLI prints the error in one
    line instead (tracebacks with --debug). Installed in every process that runs tasks."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True


def quiet_tracebacks():
    os.environ["OPENCORPUS_QUIET_TRACEBACKS"] = "1"  # pool and Dask worker processes inherit it
    for logger in [logging.getLogger()] + [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)
                                          if n.startswith("prefect")]:
        for handler in logger.handlers:
            if not any(isinstance(f, _NoTraceback) for f in handler.filters):
                handler.addFilter(_NoTraceback())


if os.environ.get("OPENCORPUS_QUIET_TRACEBACKS") == "1":
    quiet_tracebacks()

# Tokenize options that change how tokens are written, not which tokenizer is trained.
ENCODE_ONLY_FIELDS = {"shard_tokens", "row_group_tokens", "batch_docs", "batch_bytes", "zstd_level", "pack_length"}


def _is_transient(task, task_run, state) -> bool:
    """Retry only failures that a second try can fix: not a download error (the downloader
    has its own bounded retries), a missing file or a bad recipe/record."""
    from pipeline.download import DownloadError

    try:
        state.result()
    except (DownloadError, FileNotFoundError, IsADirectoryError, ValueError, UnicodeError):
        return False
    except Exception:
        return True
    return True


# I/O can fail for passing reasons (network sources, object storage): retry with backoff.
IO_RETRIES = dict(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_jitter_factor=0.5,
                  retry_condition_fn=_is_transient)


# --------------------------------------------------------------------------- tasks
# Each task runs one unit: it first removes what an interrupted attempt may have left,
# runs the pipeline function, then writes the unit's done record (hashing its outputs
# where they were written, in parallel across workers). It returns a UnitResult.


# Task retries only for what no retry loop below has seen (a Hugging Face Hub hiccup):
# _is_transient refuses every DownloadError, since the downloader (pipeline/download.py)
# has already retried what can pass, and what is left (HTTP 404, checksum, size, a
# redirect loop, a refused address) fails the same way again.
@task(name="ingest-source", **IO_RETRIES)
def ingest_task(recipe: Recipe, index: int, root: str, key: str, store=None) -> UnitResult:
    return pool.run(in_task_folder, store, (), ingest_unit, recipe, index, root, key, early=early_tag("ingest", root, key))


@task(name="clean-shard")
def clean_task(shard: str, root: str, config, key: str, store=None) -> UnitResult:
    return pool.run(in_task_folder, store, [str(Path(root) / shard)], clean_unit, shard, root, config, key,
                    early=early_tag("clean", root, key))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


@task(name="unit", cache_policy=NO_CACHE)
def unit_task(fn, args: tuple, store=None, reads: tuple = ()):
    """One unit of a global stage's phase (pipeline/units.py run_unit and its arguments); with a
    remote output, (its result, what it put into the store)."""
    return pool.run(unit_in_folder, fn, args, store, reads)


class TaskMapper:
    """The pipeline's Mapper on the flow's task runner: each unit of a phase is one task run,
    on the process pool or the Dask cluster like the mapped stages; the stage itself keeps no
    pool. Named `<stage>-<phase>` in the Prefect UI. With a remote output, the files the driver
    wrote since the last phase are pushed first (units may read them), and what each unit put
    into the store is copied into the staging folder (the driver's next steps read it)."""

    def __init__(self, runner, stage: str, progress: ProgressLog, location: "storage.OutputLocation | None" = None):
        self.runner, self.stage, self.progress = runner, stage, progress
        self.location = location if location is not None and location.remote else None

    def __call__(self, phase: str, fn, arg_lists: list[tuple]) -> list:
        from pipeline.units import run_unit

        task_fn = unit_task.with_options(name=f"{self.stage}-{phase}")
        store = self.location.task_store() if self.location else None
        if store is not None:
            self.location.push()
        futures = [self.runner.submit(task_fn, parameters={"fn": fn, "args": args, "store": store,
                                                           "reads": args[-1] if fn is run_unit else ()})
                   for args in arg_lists]
        results = []
        for f in futures:
            r = f.result()
            if store is not None:
                r, transfer = r
                self.location.receive(transfer)
            results.append(r)
        self.progress.event("units_done", stage=self.stage, phase=phase, units=len(results))
        return results


@task(name="train-tokenizer")
def tokenizer_task(shards: list[str], root: str, config, docs: int, key: str) -> UnitResult:
    from pipeline.tokenize import train_tokenizer

    root = Path(root)
    t0 = time.perf_counter()
    sample: dict = {}
    train_tokenizer([root / s for s in shards], root / "tokenizer.json", config, sample)
    stats = TokenizerStats(docs_in=docs, docs_out=docs, seconds=round(time.perf_counter() - t0, 3),
                           sample_docs=sample.get("docs"), sample_bytes=sample.get("bytes"))
    outputs = [root / "tokenizer.json", *(root / f for f in TOKENIZER_CONFIG_FILES)]
    return unit_result(StateStore(root).write("tokenizer", "all", key, outputs, stats), stats)


def _token_outputs(root: Path) -> list[Path]:
    return _files(root / "tokens") + _ours(root, list_shards(root / "rejected", "tokenize-*.parquet"))


def _ours(root: Path, paths: list[Path]) -> list[Path]:
    written = written_files(root)
    return [p for p in paths if p.resolve().relative_to(root.resolve()).as_posix() in written]


@task(name="sync-output", **IO_RETRIES)
def push_task(location: "storage.OutputLocation") -> int:
    return location.push()


@task(name="card")
def card_task(out_dir: Path, manifest: Manifest, cards_dir: str | None) -> str:
    from pipeline import card as card_mod  # matplotlib and polars: ~1 s of imports the pool's workers never need

    return str(card_mod.write_card(out_dir, manifest, data_cards_dir=Path(cards_dir) if cards_dir else None))


# --------------------------------------------------------------------------- the build


class CorpusBuild:
    """One run over one output folder: decides per unit whether to reuse or run it."""

    def __init__(self, recipe: Recipe, root: Path, workers: int, runner, progress: ProgressLog, log,
                 location: "storage.OutputLocation | None" = None, task_recipe: Recipe | None = None):
        self.recipe, self.root, self.workers, self.runner = recipe, root, workers, runner
        # A remote output: tasks work in folders of their own (flows/storage.py TaskStore), and
        # ingest tasks download their remote inputs themselves (task_recipe: the recipe as written).
        self.location = location if location is not None and location.remote else None
        self.store = self.location.task_store() if self.location else None
        self.task_recipe = task_recipe if self.store is not None and task_recipe is not None else recipe
        self.state = StateStore(root)
        self.hashes = HashCache(self.state.dir / "file-hashes.json")
        self.progress, self.log = progress, log
        self.reused: dict[str, tuple[int, int]] = {}  # stage -> (units reused, units)

    def _reuse(self, stage: str, unit: str, key: str) -> UnitResult | None:
        rec = self.state.valid(stage, unit, key)
        if rec is None:
            return None
        return UnitResult(unit, key, rec.output_hashes(), self.state.stats(rec), reused=True)

    def _mapped(self, stage: str, task_fn, units: list[tuple[str, str, dict]], total_docs=None) -> list[UnitResult]:
        """Run the units (name, key, task parameters) not already done, at most `workers` at a time."""
        def docs_of(r: UnitResult) -> int:
            return r.stats.docs_in

        results: dict[str, UnitResult] = {}
        todo = []
        # Units a head start began before the flow run (flows/head_start.py) run as tasks that
        # take their result: run, not reused, although their done records may be there by now.
        early = head_start.reached(stage, {early_tag(stage, self.root, key) for _, key, _ in units})
        for name, key, params in units:
            if early_tag(stage, self.root, key) in early:
                todo.append((name, params))
                continue
            hit = self._reuse(stage, name, key)
            if hit is not None:
                results[name] = hit
            else:
                todo.append((name, params))
        if early:
            self.progress.event("head_start", stage=stage, units=len(early))
            self.log.info("%s: %d of %d units began before the flow run (head start)", stage, len(early), len(units))
        self.reused[stage] = (len(results), len(units))
        self.progress.stage_start(stage, len(units), total_docs, len(results), sum(docs_of(r) for r in results.values()))
        if todo:
            keys = todo[0][1].keys()
            futures = self.runner.map(task_fn, parameters={k: [p[k] for _, p in todo] for k in keys})
            by_future = {id(f): name for f, (name, _) in zip(futures, todo)}
            for fut in as_completed(list(futures)):
                name = by_future[id(fut)]
                results[name] = fut.result()
                if self.location is not None:
                    self.location.receive(results[name].transfer)
                self.progress.unit_done(stage, name, docs_of(results[name]))
        self._forget_stale(stage, {name for name, _, _ in units})
        return [results[name] for name, _, _ in units]

    def _global(self, stage: str, task_fn, key: str, total_docs: int | None, **params) -> UnitResult:
        hit = self._reuse(stage, "all", key)
        self.reused[stage] = (int(hit is not None), 1)
        docs = total_docs or 0
        self.progress.stage_start(stage, 1, total_docs, int(hit is not None), docs if hit else 0)
        if hit is not None:
            return hit
        result = task_fn(**params, key=key)
        self.progress.unit_done(stage, "all", docs)
        return result

    def _forget_stale(self, stage: str, current: set[str]):
        for unit in self.state.units(stage):
            if unit not in current:
                self.state.forget(stage, unit)

    # ---- stages

    def ingest(self) -> list[UnitResult]:
        root = self.root
        units = ingest_units(self.recipe, root, self.hashes, self.task_recipe, self.store)
        self.hashes.save()
        results = self._mapped("ingest", ingest_task, units)
        for (name, _, _), r in zip(units, results):
            if r.stats.docs_out == 0:  # reported when read, not only when the corpus ends empty
                self.log.warning("source %s holds no document (%d records read, %d rejected)", name, r.stats.docs_in,
                                 r.stats.docs_rejected)
        keep = {o for r in results for o in r.outputs}
        _prune(root, keep, [("documents", "part-*.parquet"), ("rejected", "ingest-*.parquet")])
        return results

    def clean(self, ingested: list[UnitResult]) -> list[UnitResult]:
        units = clean_units(ingested, self.recipe.clean, self.root, self.hashes, self.store)
        total = sum(r.stats.docs_out for r in ingested)
        results = self._mapped("clean", clean_task, units, total_docs=total)
        keep = {o for r in results for o in r.outputs}
        _prune(self.root, keep, [("clean", "part-*.parquet"), ("rejected", "clean-*.parquet")])
        return results

    def dedup(self, cleaned: list[UnitResult]) -> UnitResult:
        shards = sorted(o for r in cleaned for o in r.outputs if o.startswith("clean/"))
        inputs = {s: h for r in cleaned for s, h in r.outputs.items() if s.startswith("clean/")}
        cfg = self.recipe.dedup.model_dump(mode="json")
        if self.recipe.dedup.incremental_index:  # deduplicating against an earlier index: its files are inputs too
            index = Path(self.recipe.dedup.incremental_index)  # absolute: resolved when the recipe was parsed
            if not (index / "index.json").is_file():
                raise FileNotFoundError(f"dedup.incremental_index: {index} is not a dedup_index/ folder (no index.json)")
            cfg["incremental_index_files"] = {p.relative_to(index).as_posix(): self.hashes.sha256(p) for p in _files(index)}
        key = unit_key("dedup", inputs, cfg)
        total = sum(r.stats.docs_out for r in cleaned)
        hit = self._reuse("dedup", "all", key)
        self.reused["dedup"] = (int(hit is not None), 1)
        self.progress.stage_start("dedup", 1, total, int(hit is not None), total if hit else 0)
        if hit is not None:
            return hit
        from pipeline.dedup import run_dedup

        # The driver runs here; its units run on the task runner. A killed dedup resumes from
        # the units it finished (scratch state keyed on this unit's key).
        root = self.root
        stats = run_dedup([root / s for s in shards], root, self.recipe.dedup, workers=self.workers,
                          mapper=TaskMapper(self.runner, "dedup", self.progress, self.location), key=key)
        written = {f"{folder}/{prefix}{Path(s).name}" for s in shards
                   for folder, prefix in (("dedup", ""), ("clusters", ""), ("rejected", "dedup-"))}
        _prune(root, written, [("dedup", "part-*.parquet"), ("clusters", "part-*.parquet"), ("rejected", "dedup-*.parquet")])
        outputs = [root / o for o in sorted(written) if (root / o).exists()] + _files(root / "dedup_index")
        rec = self.state.write("dedup", "all", key, outputs, stats)
        self.progress.unit_done("dedup", "all", total)
        return unit_result(rec, stats)

    def tokenize(self, deduped: UnitResult) -> tuple[UnitResult, UnitResult]:
        config = self.recipe.tokenize
        inputs = {s: h for s, h in deduped.outputs.items() if s.startswith("dedup/")}
        shards = sorted(inputs)
        cfg = config.model_dump(mode="json")
        train_cfg = {k: v for k, v in cfg.items() if k not in ENCODE_ONLY_FIELDS}
        if config.tokenizer:
            train_cfg["tokenizer_sha256"] = self.hashes.sha256(Path(config.tokenizer))
        docs = deduped.stats.docs_out
        trained = self._global("tokenizer", tokenizer_task, unit_key("tokenizer", inputs, train_cfg), docs,
                               shards=shards, root=str(self.root), config=config, docs=docs)
        self.progress.stage_end("tokenizer", docs)
        key = unit_key("tokenize", {**inputs, **trained.outputs}, cfg)
        hit = self._reuse("tokenize", "all", key)
        self.reused["tokenize"] = (int(hit is not None), 1)
        self.progress.stage_start("tokenize", 1, docs, int(hit is not None), docs if hit else 0)
        if hit is not None:
            return trained, hit
        from pipeline.tokenize import tokenize_corpus

        root = self.root  # the driver runs here, one encode unit per dedup shard on the task runner
        stats = tokenize_corpus([root / s for s in shards], root / "tokenizer.json", root / "tokens", config,
                                workers=self.workers, mapper=TaskMapper(self.runner, "tokenize", self.progress, self.location), key=key)
        _prune(root, set(stats.rejected_files), [("rejected", "tokenize-*.parquet")])
        rec = self.state.write("tokenize", "all", key, _token_outputs(root), stats)
        self.progress.unit_done("tokenize", "all", docs)
        return trained, unit_result(rec, stats)


def _prune(root: Path, keep: set[str], patterns: list[tuple[str, str]]):
    """Remove files a stage owns that the current run did not produce (an older recipe's shards);
    only files opencorpus wrote, never a file of the user's with a name like ours."""
    for folder, pattern in patterns:
        remove_written(root, [p for p in list_shards(root / folder, pattern) if p.relative_to(root).as_posix() not in keep])


# --------------------------------------------------------------------------- the flow


def _quiet_distributed():
    """distributed logs every start, connection and close at INFO (some 30 lines a run, through
    Prefect's console handler); keep its warnings only, unless the user configured its logging.
    Through the environment too: the cluster's worker processes read it when they start."""
    if not any(k.startswith("DASK_LOGGING") for k in os.environ):
        os.environ["DASK_LOGGING__DISTRIBUTED"] = "warning"
        logging.getLogger("distributed").setLevel(logging.WARNING)  # already imported (tests, a user's Client)


def _drain_prefect_services():
    """On a Dask worker: send the task logs and events it still holds to the API now. Left to
    the worker's exit, the sending can outlast the nanny's 4 s close timeout on a busy machine:
    the nanny then kills the worker and the scheduler logs closed comms."""
    import threading

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    def drain():
        for service in (APILogWorker, EventsWorker):
            service.drain_all(timeout=30)

    # client.run calls this in the worker's event loop, where drain_all would only return a coroutine
    thread = threading.Thread(target=drain, name="opencorpus-drain")
    thread.start()
    thread.join(timeout=60)


async def _stop_heartbeats(dask_worker):
    """On a worker of a cluster this run started, before the cluster closes: its heartbeat could
    otherwise reach the scheduler while it closes, and the worker logs a CommClosedError. One
    already on its way completes against the still open scheduler in the half second waited."""
    import asyncio

    for name in ("heartbeat", "keep-alive"):
        callback = dask_worker.periodic_callbacks.get(name)
        if callback is not None:
            callback.stop()
    await asyncio.sleep(0.5)


def _dask_runner_class():
    from prefect_dask import DaskTaskRunner

    class CleanDaskTaskRunner(DaskTaskRunner):
        """prefect-dask's runner, whose workers have nothing left to send when the cluster closes
        (and, on a cluster of its own, no heartbeat left to send either)."""

        def __exit__(self, *args):
            if self._client is not None:
                steps = [_drain_prefect_services]
                if self.address is None and self.cluster_kwargs:  # `local:N`: never a user's shared cluster
                    steps.append(_stop_heartbeats)
                for step in steps:
                    try:
                        self._client.run(step)
                    except Exception as e:  # noqa: BLE001 - the run's result does not depend on it
                        get_run_logger().debug("%s on the Dask workers failed: %s", step.__name__, e)
            super().__exit__(*args)

    return CleanDaskTaskRunner


def make_task_runner(workers: int, dask: str | None = None):
    """The task runner for mapped stages: a Dask cluster (`ADDRESS` or `local:N`), task runs on
    threads handing their work to a pool of `workers` processes, or one thread when workers == 1."""
    if dask:
        _quiet_distributed()
        DaskTaskRunner = _dask_runner_class()
        if dask.startswith("local:"):
            n = int(dask.split(":", 1)[1])
            # Dashboard on a free port: on 8787 a second cluster on the machine warns that the port is taken.
            return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                                  cluster_kwargs={"n_workers": n, "threads_per_worker": 1, "processes": True,
                                                  "dashboard_address": ":0"})
        return DaskTaskRunner(address=dask)
    from prefect.task_runners import ThreadPoolTaskRunner

    if workers > 1:
        return _pool_runner_class()(workers)
    return ThreadPoolTaskRunner(max_workers=1)


def _pool_runner_class():
    """Task runs on `workers` threads of the flow process, their work on flows/pool.py's process
    pool of as many workers (opened with the runner, closed with it). Each unit is still one
    Prefect task run, with its retries, states and logs, and its work still runs in parallel
    processes; only the task engine's bookkeeping stays in this process (see flows/pool.py)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    class ProcessPoolThreadTaskRunner(ThreadPoolTaskRunner):
        def __init__(self, workers: int):
            super().__init__(max_workers=workers)
            self.workers = workers

        def duplicate(self):
            return type(self)(self.workers)

        def __enter__(self):
            super().__enter__()
            try:
                pool.open_pool(self.workers)
            except BaseException:
                super().__exit__(None, None, None)
                raise
            return self

        def __exit__(self, *exc):
            try:
                super().__exit__(*exc)  # waits for the task threads, which wait for their units
            finally:
                pool.close_pool()

    return ProcessPoolThreadTaskRunner


@flow(name="corpus", log_prints=True)
def corpus_flow(recipe_path: str, output: str | None = None, workers: int = 2, cards_dir: str | None = "data_cards",
                dask: str | None = None, work_dir: str | None = None, force: bool = False) -> Manifest:
    """Build the corpus a recipe describes; returns the manifest.

    `output` is a folder or an fsspec URL (s3://, gs://, file://); a remote output is
    built in `work_dir` (default: a cache folder named after the URL) and synced. The
    data card is written to the output folder as README.md and copied to
    `cards_dir/<name>.md` (None: no copy). `dask`: run mapped tasks on a dask.distributed
    cluster at this address, or on a local one of N worker processes (`local:N`). The
    output folder is held for the run (flows/state.py claim_output): a folder that is not
    empty and is not a corpus of ours is refused unless `force`."""
    log = get_run_logger()
    recipe = load_recipe(recipe_path)
    location = storage.OutputLocation.of(output or str(default_output(recipe)), work_dir)
    location.check_writable()  # a missing bucket fails now, not after ingest at the first push
    if location.remote:
        log.info("output %s staged in %s: %d files pulled", location.url, location.local, location.pull())
    root = location.local.resolve()  # workers (Dask ones included) may run in another folder
    with contextlib.ExitStack() as stack:
        stack.callback(head_start.finish)  # after the claim below: a head start's claim holds the folder for it
        stack.enter_context(claim_output(root, force))
        task_recipe, recipe = recipe, storage.stage_remote_sources(recipe)
        progress = ProgressLog(root)
        progress.run_start(recipe.name)
        status = "failed"
        try:
            with make_task_runner(workers, dask) as runner:
                build = CorpusBuild(recipe, root, workers, runner, progress, log, location, task_recipe)
                manifest = _build(build, recipe, recipe_path, output, location, cards_dir, log)
            status = "completed"
            return manifest
        finally:
            progress.run_end(status)


class EmptyCorpusError(RuntimeError):
    """A stage left no document; the manifest and card of what happened were still written."""


def _build(build: CorpusBuild, recipe: Recipe, recipe_path, output, location, cards_dir, log) -> Manifest:
    stages, progress = Stages(), build.progress
    command = "opencorpus run " + shlex.quote(str(recipe_path)) + (f" --output {shlex.quote(str(output))}" if output else "")

    def finish(stage: str, stats: StageStats):
        setattr(stages, stage, stats)
        progress.stage_end(stage, stats.docs_out)
        reused, units = build.reused.get(stage, (0, 0))
        log.info("%s: %s%s", stage, stats.funnel_line(), f" [{reused}/{units} units reused]" if reused else "")
        if location.remote:
            push_task(location)
        if stats.docs_out == 0:  # nothing left for the next stage: say where everything went
            _write_manifest(build, recipe, recipe_path, stages, command, cards_dir, location)
            raise EmptyCorpusError(f"{stage} left no document: {_removed_by(stage, stats)} "
                                   f"(manifest and card written to {location.url})")

    # A stage's seconds run from when its work began: with a head start, before the flow reached it.
    t0 = time.perf_counter()
    ingested = build.ingest()
    finish("ingest", IngestStats.summed([r.stats for r in ingested], head_start.stage_seconds("ingest", t0),
                                        sources={s.name: r.stats for s, r in zip(recipe.sources, ingested)}))

    t0 = time.perf_counter()
    cleaned = build.clean(ingested)
    finish("clean", CleanStats.merged([r.stats for r in cleaned], head_start.stage_seconds("clean", t0)))

    deduped = build.dedup(cleaned)
    finish("dedup", deduped.stats)

    trained, encoded = build.tokenize(deduped)
    tokenizer_seconds = trained.stats.seconds
    finish("tokenize", encoded.stats.model_copy(update={
        "tokenizer_seconds": tokenizer_seconds, "seconds": round(encoded.stats.seconds + tokenizer_seconds, 3),
        "tokenizer_sample_docs": trained.stats.sample_docs, "tokenizer_sample_bytes": trained.stats.sample_bytes}))

    manifest = _write_manifest(build, recipe, recipe_path, stages, command, cards_dir, location)
    log.info("corpus written to %s", location.url)
    return manifest


def _write_manifest(build: CorpusBuild, recipe: Recipe, recipe_path, stages: Stages, command: str, cards_dir,
                    location) -> Manifest:
    """manifest.json and the card of the stages run so far (all of them, or up to an empty one)."""
    manifest = build_manifest(recipe, str(recipe_path), stages, command,
                              resume={stage: {"units": n, "reused": r} for stage, (r, n) in build.reused.items()})
    broken = manifest.conservation_errors()
    if broken:
        raise RuntimeError("documents unaccounted for: " + "; ".join(broken))
    manifest.write(build.root / Manifest.file_name)
    build.hashes.save()
    card_task(build.root, manifest, cards_dir)
    create_markdown_artifact(key=f"funnel-{_artifact_key(recipe.name)}", markdown=_artifact_markdown(manifest, location),
                             description=f"Funnel of corpus {recipe.name}")
    if location.remote:
        push_task(location)
    return manifest


def _removed_by(stage: str, stats: StageStats) -> str:
    if stats.docs_in == 0:
        return "it received none" if stage != "ingest" else "the sources hold no document"
    top = sorted(stats.rejected_by_filter.items(), key=lambda kv: -kv[1])[:3]
    return f"{stats.docs_in:,} in, all rejected (" + ", ".join(f"{name} {n:,}" for name, n in top) + ")"


def _artifact_markdown(manifest: Manifest, location) -> str:
    from pipeline import card as card_mod

    lines = [f"# Corpus {manifest.name}", "", f"Output: `{location.url}`", "", card_mod.funnel_markdown(manifest), ""]
    reused = {k: v for k, v in manifest.resume.items() if v.reused}
    if reused:
        lines.append("Reused from an earlier run: " + ", ".join(f"{k} {v.reused}/{v.units} units" for k, v in reused.items()))
    return "\n".join(lines)


def _artifact_key(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower())


def run_corpus(recipe_path: str, output: str | None = None, workers: int = 2, cards_dir: str | None = "data_cards",
               dask: str | None = None, work_dir: str | None = None, force: bool = False) -> Manifest:
    """Run the corpus flow (its mapped stages on `workers` processes, or on Dask with `dask`)."""
    from flows.server import prefect_api

    with prefect_api():
        return corpus_flow(recipe_path, output, workers, cards_dir, dask, work_dir, force)
