"""A small corpus for the data-card tests, built from the generated corpora of
tests/fixtures_corpus.py by calling the stage functions directly (no Prefect: the card
tests need the outputs, not the orchestration)."""
from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import yaml

from fixtures_text import sentences
from pipeline.clean import clean_shard
from pipeline.dedup import run_dedup
from pipeline.ingest import ingest_source
from pipeline.io import list_shards
from pipeline.manifest import build_manifest
from pipeline.recipe import load_recipe
from pipeline.records import CleanStats, IngestStats, Manifest, Stages
from pipeline.tokenize import tokenize_corpus, train_tokenizer


WEB = "web/pages.jsonl.gz"


def mirrored_pages(corpora: Path, out_path: Path, n: int = 8, every: int = 40) -> Path:
    """JSONL of copies of real web pages, as a mirror site would serve them: the first n/2
    long pages verbatim (exact duplicates) and n pages with every `every`-th word replaced
    (near duplicates, Jaccard ~0.8 on word 5-grams). Page 0 has both, a cluster of 3."""
    pages = []
    with gzip.open(corpora / WEB, "rt", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            if len(text.split()) >= 400:
                pages.append(text)
            if len(pages) == n:
                break
    with open(out_path, "w", encoding="utf-8") as f:
        for i, text in enumerate(pages):
            if i < n // 2:
                f.write(json.dumps({"id": f"mirror-copy-{i}", "text": text}) + "\n")
            words = text.split(" ")
            for j in range(every // 2, len(words), every):
                words[j] = "EDITED"
            f.write(json.dumps({"id": f"mirror-edit-{i}", "text": " ".join(words)}) + "\n")
    return out_path


def sentence_pages(out_dir: Path, langs=("de", "fr", "ru", "es"), n: int = 40) -> list[str]:
    """One page of n generated sentences per language, LANG.txt in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for lang in langs:
        (out_dir / f"{lang}.txt").write_text("\n".join(sentences(lang, n, seed=7)) + "\n", encoding="utf-8")
        paths.append(str(out_dir / f"{lang}.txt"))
    return paths


def card_recipe(corpora: Path, work: Path, name: str = "card-test") -> dict:
    """Web pages, a mirror of some of them (exact and near duplicates), a play's speeches
    (many too short: the quality filters) and one page of sentences per language (the
    language charts)."""
    return {
        "name": name,
        "description": "Small corpus built by the data-card tests.",
        "sources": [
            {"name": "web", "type": "jsonl", "license": "Common Crawl terms of use",
             "paths": [str(corpora / WEB)], "max_docs": 50},
            {"name": "mirror", "type": "jsonl", "paths": [str(mirrored_pages(corpora, work / "mirror.jsonl"))]},
            {"name": "play", "type": "text", "license": "MIT",
             "paths": [str(corpora / "classic" / "play.txt")], "separator": "\n\n", "max_docs": 150},
            {"name": "sentences", "type": "text", "license": "Apache-2.0", "paths": sentence_pages(work / "sentences")},
        ],
        "ingest": {"shard_docs": 200},
        "tokenize": {"vocab_size": 1024, "val_fraction": 0.1, "seed": 7},
    }


def build_corpus(out_dir: Path, data_cards_dir: Path | None, recipe_data: dict,
                 recipe_dir: Path | None = None) -> Manifest:
    """Run ingest, clean, dedup, tokenize into out_dir, write manifest.json and the card.
    The recipe is written to recipe_dir (default: out_dir's parent)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe_path = Path(recipe_dir or out_dir.parent) / f"{recipe_data['name']}.yaml"
    recipe_path.parent.mkdir(parents=True, exist_ok=True)
    recipe_path.write_text(yaml.safe_dump(recipe_data, sort_keys=False), encoding="utf-8")
    recipe = load_recipe(recipe_path)
    stages = Stages()

    t0 = time.perf_counter()
    per_source = [ingest_source(src, out_dir, recipe.ingest.shard_docs) for src in recipe.source_objects(out_dir)]
    stages.ingest = IngestStats.summed(per_source, time.perf_counter() - t0,
                                       sources={s.name: r for s, r in zip(recipe.sources, per_source)})

    shards = [out_dir / s for r in per_source for s in r.shards]
    stages.clean = CleanStats.merged([clean_shard(s, out_dir / "clean" / s.name, out_dir / "rejected" / f"clean-{s.name}",
                                                  recipe.clean) for s in shards])
    stages.dedup = run_dedup(list_shards(out_dir / "clean"), out_dir, recipe.dedup, workers=1)
    t0 = time.perf_counter()
    final = list_shards(out_dir / "dedup")
    train_tokenizer(final, out_dir / "tokenizer.json", recipe.tokenize)
    stages.tokenize = tokenize_corpus(final, out_dir / "tokenizer.json", out_dir / "tokens", recipe.tokenize, workers=1)
    stages.tokenize.seconds = round(time.perf_counter() - t0, 3)

    manifest = build_manifest(recipe, str(recipe_path), stages, f"opencorpus run {recipe_path} --output {out_dir}")
    broken = manifest.conservation_errors()
    if broken:
        raise RuntimeError("; ".join(broken))
    manifest.write(out_dir / Manifest.file_name)
    from pipeline.card import write_card

    write_card(out_dir, manifest, data_cards_dir)
    return manifest
