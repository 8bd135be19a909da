"""What a unit of the corpus flow runs where its work is done (a process-pool worker, a Dask
worker, or the flow's own thread with one worker): the stage function, the unit's done
record, and, with a remote output, the task's own folder. No Prefect here: the pool's fork
server preloads this module, and its workers never import Prefect (flows/pool.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flows import storage
from flows.state import StateStore, sha256_json, source_fingerprint, source_module, unit_key
from pipeline.io import list_shards, remove_written
from pipeline.recipe import Recipe
from pipeline.records import StageStats


@dataclass
class UnitResult:
    """One finished unit: its done record's key and output hashes, and the stage's stats record."""

    unit: str
    key: str
    outputs: dict[str, str]  # relative path -> sha256
    stats: StageStats
    reused: bool = False
    transfer: dict | None = None  # a task on a remote output: the files it put into the store (TaskStore)


def unit_result(rec, stats: StageStats) -> UnitResult:
    return UnitResult(rec.unit, rec.key, rec.output_hashes(), stats)


# --------------------------------------------------------------------------- planning
# The units of a mapped stage, as (name, key, task parameters): what the flow runs, and what a
# head start (flows/head_start.py) may begin before the flow run exists. One place, so both
# compute the same keys.


def ingest_units(recipe: Recipe, root: Path, hashes, task_recipe: Recipe | None = None, store=None
                 ) -> list[tuple[str, str, dict]]:
    units = []
    for i, source in enumerate(recipe.source_objects(root)):
        config = {"source": source.config.model_dump(mode="json"), "shard_docs": recipe.ingest.shard_docs}
        key = unit_key("ingest", {"source": sha256_json(source_fingerprint(source, hashes))}, config,
                       code_module=source_module(source))
        units.append((source.config.name, key, {"recipe": task_recipe or recipe, "index": i, "root": str(root),
                                                "key": key, "store": store}))
    return units


def clean_units(ingested: list[UnitResult], config, root: Path, hashes, store=None) -> list[tuple[str, str, dict]]:
    """One unit per `documents/` shard the ingest units wrote."""
    inputs = {}
    for r in ingested:
        inputs.update({rel: h for rel, h in r.outputs.items() if rel.startswith("documents/")})
    cfg = config.model_dump(mode="json")
    if config.c4.bad_words_path:  # a file the config points at is part of the config
        cfg["bad_words_sha256"] = hashes.sha256(Path(config.c4.bad_words_path))
    units = []
    for shard in sorted(inputs):
        key = unit_key("clean", {Path(shard).name: inputs[shard]}, cfg)
        units.append((Path(shard).name, key, {"shard": shard, "root": str(root), "config": config, "key": key,
                                              "store": store}))
    return units


def early_tag(stage: str, root, key: str) -> str:
    """The name a unit started early goes by (flows/pool.py submit_early): its stage, folder and key."""
    return f"{stage} {Path(root)} {key}"


# --------------------------------------------------------------------------- running


def _unlink(root: Path, paths):
    """Remove earlier outputs before a unit reruns: only files opencorpus wrote (pipeline.io ledger)."""
    remove_written(root, paths)


def _source_outputs(root: Path, name: str) -> list[Path]:
    import re

    own = re.compile(rf"part-{re.escape(name)}-\d+\.parquet")
    shards = [p for p in list_shards(root / "documents") if own.fullmatch(p.name)]
    return shards + [root / "rejected" / f"ingest-{name}.parquet"]


def in_task_folder(store: "storage.TaskStore | None", reads, fn, *args) -> UnitResult:
    """fn(*args) where the output folder is: in place, or with a remote output in a folder of the
    task's own, its `reads` fetched from the store and what it wrote put back (flows/storage.py)."""
    if store is None:
        return fn(*args)
    with store.task_folder(reads) as folder:
        result = fn(*folder.local(args))
    result.transfer = folder.transfer
    return result


def ingest_unit(recipe: Recipe, index: int, root: str, key: str) -> UnitResult:
    from pipeline.ingest import ingest_source

    root = Path(root)
    recipe = storage.stage_remote_sources(recipe)  # a no-op where the flow has staged them (its own machine)
    source = recipe.source_objects(root)[index]
    name = source.config.name
    _unlink(root, _source_outputs(root, name))  # shards of a killed attempt, or of an older config
    stats = ingest_source(source, root, recipe.ingest.shard_docs, recipe.ingest.rejected_text,
                          recipe.ingest.rejected_excerpt_chars)  # shards relative to root: the folder may move
    outputs = [root / s for s in stats.shards] + [root / "rejected" / f"ingest-{name}.parquet"]
    return unit_result(StateStore(root).write("ingest", name, key, outputs, stats), stats)


def clean_unit(shard: str, root: str, config, key: str) -> UnitResult:
    from pipeline.clean import clean_shard

    root = Path(root)
    name = Path(shard).name
    out, rejected = root / "clean" / name, root / "rejected" / f"clean-{name}"
    _unlink(root, [out, rejected])
    stats = clean_shard(root / shard, out, rejected, config)
    return unit_result(StateStore(root).write("clean", name, key, [p for p in (out, rejected) if p.exists()], stats), stats)


def unit_in_folder(fn, args: tuple, store, reads: tuple):
    if store is None:
        return fn(*args)
    with store.task_folder(reads) as folder:
        result = fn(*folder.local(args))
    return result, folder.transfer
