"""Units of work of the global stages (dedup, tokenize): a scratch folder, a mapper that runs
units, resume per unit.

Every phase of such a stage is a list of units (dedup: a shard to sign, a hash partition to
group, a band to pair, a partition of pairs to verify, a shard to write; tokenize: a shard to
encode). A unit is a plain module-level
function and its arguments: it reads and writes files of the scratch folder and the output
folder only, returns a small JSON-able dict, and knows nothing of who runs it. Who runs it is a
`Mapper`: `mapper(phase, fn, arg_lists) -> results in order`. The library's own is `LocalMapper`
(inline, threads or processes); the Prefect flow passes one that submits each unit as a task to
its task runner (a process pool or a Dask cluster), so the stage has no pool of its own there.

Where units run without the flow's folder (an object-store output, workers with no shared
filesystem): a unit may name the files it reads, as paths or glob patterns under the corpus
folder (`reads`). The library ignores them (it runs units where the files are); the flow's
task wrapper (flows/storage.py TaskStore) fetches them from the store into the task's own
folder first, and sends back what the unit wrote.

Resume: after a unit's outputs are written (each atomically), `run_unit` writes its marker,
`done/<phase>/<unit>.json` with the unit's result. A rerun with the same key (inputs, config,
code) skips every unit that has a marker and uses the recorded result; another key starts
from an empty folder. So a killed dedup resumes from its finished units.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pyarrow as pa

from pipeline.io import STATE_DIR, atomic_path, write_json, write_parquet_file


class Mapper(Protocol):
    def __call__(self, phase: str, fn: Callable, arg_lists: list[tuple]) -> list: ...


class LocalMapper:
    """Run units inline (workers=1), in threads (numpy and Arrow release the GIL in their loops;
    one process, so the libraries' memory counts once) or in spawned processes (no fork: it
    would copy polars' and Arrow's thread pools)."""

    def __init__(self, workers: int = 1, kind: str = "threads"):
        self.workers = workers
        if workers <= 1:
            self.ex = None
        elif kind == "threads":
            self.ex = ThreadPoolExecutor(workers)
        else:
            self.ex = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))

    def __call__(self, phase: str, fn: Callable, arg_lists: list[tuple]) -> list:
        if self.ex is None:
            return [fn(*a) for a in arg_lists]
        futs = [self.ex.submit(fn, *a) for a in arg_lists]
        return [f.result() for f in futs]

    def close(self):
        if self.ex is not None:
            self.ex.shutdown()


def run_unit(work: str, phase: str, unit: str, fn: Callable, args: tuple, reads: tuple = ()) -> dict:
    """Run one unit and record it done (the function every mapper is handed). `reads`: the files
    the unit reads (paths or globs), for a mapper whose workers must fetch them first."""
    result = fn(*args)
    write_json(result, Path(work) / "done" / phase / f"{unit}.json")
    return result


def scratch_dir(root: Path, stage: str) -> Path:
    """A stage's scratch folder: in the corpus folder's own state directory, removed when the stage ends."""
    return Path(root) / STATE_DIR / "scratch" / stage


def default_key(paths: list[Path], config, *extra: str) -> str:
    """Key of a run's scratch state when the caller gives none: the config, the inputs' names,
    sizes and modification times, and `extra` (files the config points at)."""
    h = hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode())
    for p in paths:
        st = Path(p).stat()
        h.update(f"{Path(p).name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    for e in extra:
        h.update(str(e).encode())
    return h.hexdigest()


class Work:
    """The scratch folder of one dedup run, keyed: a folder left by another key is emptied."""

    def __init__(self, folder: Path, key: str):
        self.dir = Path(folder)
        marker = self.dir / "key.json"
        if not (marker.is_file() and json.loads(marker.read_text()).get("key") == key):
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True)
            write_json({"key": key}, marker)

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def done(self, phase: str, unit: str) -> dict | None:
        p = self.dir / "done" / phase / f"{unit}.json"
        return json.loads(p.read_text()) if p.is_file() else None

    def run(self, mapper: Mapper, phase: str, units: list[tuple]) -> list[dict]:
        """Results of every unit (name, fn, args[, reads]), running only those not already done."""
        results: dict[str, dict] = {}
        todo = []
        for name, fn, args, *reads in units:
            hit = self.done(phase, name)
            if hit is not None:
                results[name] = hit
            else:
                todo.append((str(self.dir), phase, name, fn, args, tuple(str(r) for r in (reads[0] if reads else ()))))
        if todo:
            for unit_args, r in zip(todo, mapper(phase, run_unit, todo)):
                results[unit_args[2]] = r
        return [results[u[0]] for u in units]

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# Scratch files: written atomically, so a marker never vouches for a half-written file.

def save_npy(arr: np.ndarray, path: Path):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)


def save_parquet(table: pa.Table, path: Path, row_group_size: int | None = None):
    with atomic_path(path) as tmp:
        write_parquet_file(table, tmp, row_group_size, compression="zstd")
