"""What the Prefect orchestration costs: the corpus flow against the same pipeline functions
called directly, on the same ~50 MB corpus, in the same process, alternating.

    .venv/bin/python bench/flow_overhead.py [--corpus FILE.jsonl] [--workers 2] [--repeats 3]

The corpus (default data/bench/flow_overhead/corpus.jsonl, ~56 MB of text) is built once
with the shared benchmark-corpus builder, `../shared/anchors/make_bench_corpus.py --scale 2`
(WikiText, Dolma CC, Shakespeare, multilingual sentences and poetry, with injected near
duplicates). Both sides run ingest, clean (shards on `workers` processes), dedup, tokenizer
training, encoding, the manifest and the data card, each into a fresh folder:

    direct   pipeline functions; clean shards on a concurrent.futures process pool
    flow     flows.corpus.run_corpus (Prefect tasks, process-pool task runner, done records,
             progress log, artifact), the Prefect API server already running
    rerun    the flow again on the finished folder: every unit reused (resume cost)

The Prefect temporary server's start (once per `opencorpus run` without a configured
server) is reported on its own line. Prints medians and the flow/direct ratio.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ANCHORS = REPO.parent / "shared" / "anchors"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def ensure_corpus(path: Path) -> Path:
    if path.is_file():
        return path
    print(f"building the benchmark corpus in {path.parent} (make_bench_corpus.py --scale 2) ...", flush=True)
    subprocess.run([sys.executable, str(ANCHORS / "make_bench_corpus.py"), "--scale", "2", "--out", str(path.parent)],
                   check=True)
    return path


def write_recipe(folder: Path, corpus: Path, shard_docs: int) -> Path:
    import yaml

    recipe = {
        "name": "flow-overhead",
        "sources": [{"name": "bench", "type": "jsonl", "license": "mixed", "paths": [str(corpus)]}],
        "ingest": {"shard_docs": shard_docs},
        "tokenize": {"vocab_size": 8192, "val_fraction": 0.05, "seed": 1234},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _clean_one(args):
    from pipeline.clean import clean_shard

    shard, out_dir, config = args
    name = Path(shard).name
    return clean_shard(shard, out_dir / "clean" / name, out_dir / "rejected" / f"clean-{name}", config)


def run_direct(recipe_path: Path, out: Path, workers: int) -> dict:
    """The same stages as the flow, without Prefect: plain calls and a process pool."""
    from pipeline import card
    from pipeline.dedup import run_dedup
    from pipeline.ingest import ingest_source
    from pipeline.manifest import build_manifest
    from pipeline.recipe import load_recipe
    from pipeline.records import CleanStats, IngestStats, Manifest, Stages
    from pipeline.tokenize import tokenize_corpus, train_tokenizer

    recipe = load_recipe(recipe_path)
    stages = Stages()
    t0 = time.perf_counter()
    per_source = [ingest_source(s, out, recipe.ingest.shard_docs) for s in recipe.source_objects(out)]
    stages.ingest = IngestStats.summed(per_source, time.perf_counter() - t0,
                                       sources={s.name: r for s, r in zip(recipe.sources, per_source)})
    shards = [out / s for r in per_source for s in r.shards]
    with ProcessPoolExecutor(workers) as pool:
        stages.clean = CleanStats.merged(list(pool.map(_clean_one, [(s, out, recipe.clean) for s in shards])))
    clean = sorted(out / "clean" / Path(s).name for s in shards)
    stages.dedup = run_dedup(clean, out, recipe.dedup, workers=workers)
    dedup = sorted(out / "dedup" / p.name for p in clean)
    train_tokenizer(dedup, out / "tokenizer.json", recipe.tokenize)
    stages.tokenize = tokenize_corpus(dedup, out / "tokenizer.json", out / "tokens", recipe.tokenize, workers=workers)
    manifest = build_manifest(recipe, str(recipe_path), stages, "bench")
    manifest.write(out / Manifest.file_name)
    card.write_card(out, manifest)
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=REPO / "data" / "bench" / "flow_overhead" / "corpus.jsonl")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shard-docs", type=int, default=1000, help="documents per shard (so, clean tasks)")
    args = ap.parse_args(argv)

    corpus = ensure_corpus(args.corpus)
    work = Path(tempfile.mkdtemp(prefix="flow-overhead-"))
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect-home"))  # this run's own server database
    recipe = write_recipe(work, corpus, args.shard_docs)

    from flows.corpus import run_corpus
    from flows.storage import prefect_api

    t = time.perf_counter()
    with prefect_api():
        server_s = time.perf_counter() - t
        times: dict[str, list[float]] = {"direct": [], "flow": [], "rerun": []}
        docs = None
        for i in range(args.repeats):
            for mode in ("direct", "flow") if i % 2 == 0 else ("flow", "direct"):
                out = work / f"{mode}-{i}"
                t = time.perf_counter()
                if mode == "direct":
                    m = run_direct(recipe, out, args.workers)
                else:
                    m = run_corpus(str(recipe), str(out), args.workers, cards_dir=None)
                times[mode].append(time.perf_counter() - t)
                docs = m.stages.ingest.docs_out
                print(f"  {mode:>6} #{i}: {times[mode][-1]:7.1f} s", flush=True)
            t = time.perf_counter()
            run_corpus(str(recipe), str(work / f"flow-{i}"), args.workers, cards_dir=None)
            times["rerun"].append(time.perf_counter() - t)
            print(f"  {'rerun':>6} #{i}: {times['rerun'][-1]:7.1f} s", flush=True)
            for mode in ("direct", "flow"):
                shutil.rmtree(work / f"{mode}-{i}", ignore_errors=True)

    mb = corpus.stat().st_size / 1e6
    direct, flow, rerun = (statistics.median(times[k]) for k in ("direct", "flow", "rerun"))
    print()
    print(f"corpus {corpus} ({mb:.1f} MB JSONL, {docs:,} documents, {args.shard_docs} per shard), "
          f"workers {args.workers}, {args.repeats} repeats, medians")
    print()
    print("| run | median s | vs direct |")
    print("|---|---:|---:|")
    print(f"| direct pipeline calls | {direct:.1f} | 1.00 |")
    print(f"| corpus flow (Prefect) | {flow:.1f} | {flow / direct:.2f} |")
    print(f"| flow rerun, all units reused | {rerun:.1f} | {rerun / direct:.2f} |")
    print(f"| Prefect temporary server start (once per run without a server) | {server_s:.1f} | |")
    print()
    print(f"orchestration overhead: {100 * (flow / direct - 1):+.1f}% (target < 10%)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
