"""The corpus flow: a recipe in, a corpus folder out (documents, clean, dedup, tokens, card).

Stages are Prefect tasks; per-shard work (ingest per source, clean per shard) is mapped
over shards with at most `workers` in flight. All the work is done by plain functions in
`pipeline/`; this module only wires them, so the same stages run without Prefect.
"""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from pipeline import card as card_mod
from pipeline.clean import clean_shard, merge_stats as merge_clean_stats
from pipeline.dedup import run_dedup
from pipeline.ingest import ingest_source
from pipeline.io import list_shards, write_json
from pipeline.manifest import build_manifest, check_conservation
from pipeline.recipe import Recipe, load_recipe
from pipeline.tokenize import tokenize_corpus, train_tokenizer


def default_output(recipe: Recipe) -> Path:
    return Path("data") / recipe.name


@task(name="ingest-source", retries=2, retry_delay_seconds=[2, 10])
def ingest_task(recipe: Recipe, index: int, out_dir: Path) -> dict:
    source = recipe.source_objects(out_dir)[index]
    return ingest_source(source, out_dir, recipe.ingest.shard_docs)


@task(name="clean-shard")
def clean_task(shard: str, out_dir: Path, recipe: Recipe) -> dict:
    name = Path(shard).name
    return clean_shard(shard, out_dir / "clean" / name, out_dir / "rejected" / f"clean-{name}", recipe.clean)


@task(name="dedup")
def dedup_task(out_dir: Path, recipe: Recipe, workers: int) -> dict:
    return run_dedup(list_shards(out_dir / "clean"), out_dir, recipe.dedup, workers=workers)


@task(name="tokenize")
def tokenize_task(out_dir: Path, recipe: Recipe, workers: int) -> dict:
    t0 = time.perf_counter()
    shards = list_shards(out_dir / "dedup")
    train_tokenizer(shards, out_dir / "tokenizer.json", recipe.tokenize)
    trained = time.perf_counter() - t0
    stats = tokenize_corpus(shards, out_dir / "tokenizer.json", out_dir / "tokens", recipe.tokenize, workers=workers)
    stats["tokenizer_seconds"] = round(trained, 3)
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    return stats


@task(name="card")
def card_task(out_dir: Path, manifest: dict, cards_dir: str | None) -> str:
    return str(card_mod.write_card(out_dir, manifest, data_cards_dir=Path(cards_dir) if cards_dir else None))


@flow(name="corpus", log_prints=True)
def corpus_flow(recipe_path: str, output: str | None = None, workers: int = 2, cards_dir: str | None = "data_cards") -> dict:
    """Build the corpus a recipe describes; returns the manifest.

    The data card is written to the output folder as README.md and copied to
    `cards_dir/<name>.md` (None: no copy)."""
    log = get_run_logger()
    recipe = load_recipe(recipe_path)
    out_dir = Path(output) if output else default_output(recipe)
    out_dir.mkdir(parents=True, exist_ok=True)
    stages: dict[str, dict] = {}

    t0 = time.perf_counter()
    per_source = ingest_task.map(recipe, range(len(recipe.sources)), out_dir).result()
    stages["ingest"] = _sum_stats(per_source, time.perf_counter() - t0)
    stages["ingest"]["sources"] = {s.name: r for s, r in zip(recipe.sources, per_source)}
    log.info("ingest: %s", _funnel_line(stages["ingest"]))

    t0 = time.perf_counter()
    shards = [s for r in per_source for s in r["shards"]]
    per_shard = clean_task.map(shards, out_dir, recipe).result()
    stages["clean"] = merge_clean_stats(per_shard)
    stages["clean"]["seconds"] = round(time.perf_counter() - t0, 3)
    log.info("clean: %s", _funnel_line(stages["clean"]))

    stages["dedup"] = dedup_task(out_dir, recipe, workers)
    log.info("dedup: %s", _funnel_line(stages["dedup"]))
    stages["tokenize"] = tokenize_task(out_dir, recipe, workers)
    log.info("tokenize: %s train / %s val tokens", stages["tokenize"].get("tokens_train"), stages["tokenize"].get("tokens_val"))

    command = "opencorpus run " + shlex.quote(str(recipe_path)) + (f" --output {shlex.quote(str(output))}" if output else "")
    manifest = build_manifest(recipe, str(recipe_path), stages, command)
    broken = check_conservation(manifest)
    if broken:
        raise RuntimeError("documents unaccounted for: " + "; ".join(broken))
    write_json(manifest, out_dir / "manifest.json")
    card_path = card_task(out_dir, manifest, cards_dir)
    create_markdown_artifact(key=f"funnel-{_artifact_key(recipe.name)}", markdown=card_mod.funnel_markdown(manifest),
                             description=f"Funnel of corpus {recipe.name}")
    log.info("corpus written to %s (card %s)", out_dir, card_path)
    return manifest


def _sum_stats(parts: list[dict], seconds: float) -> dict:
    keys = ("docs_in", "docs_out", "docs_rejected", "bytes_in", "bytes_out")
    out = {k: sum(p[k] for p in parts) for k in keys}
    out["seconds"] = round(seconds, 3)
    return out


def _funnel_line(s: dict) -> str:
    return f"{s['docs_in']} in, {s['docs_out']} out, {s['docs_rejected']} rejected ({s['seconds']:.1f} s)"


def _artifact_key(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower())


def run_corpus(recipe_path: str, output: str | None = None, workers: int = 2, cards_dir: str | None = "data_cards") -> dict:
    """Run the corpus flow with a task runner sized to `workers`."""
    runner = ProcessPoolTaskRunner(max_workers=workers) if workers > 1 else ThreadPoolTaskRunner(max_workers=1)
    return corpus_flow.with_options(task_runner=runner)(recipe_path, output, workers, cards_dir)
