#!/usr/bin/env python3
"""The learned quality scorer and decontamination: accuracy and speed against the stages they join.

    flock /tmp/cpu.lock .venv/bin/python bench/quality.py [--repeats 5] [--copies 3]

Needs ../shared/corpora and the example scorer (`make quality-model`). One process, one core,
the same run for every row (medians over --repeats, after one warm-up):

1. Scorer accuracy: the model's held-out figures, recomputed here from
   data/quality/examples/heldout_{pos,neg}.jsonl (whole documents never trained on): ROC AUC,
   accuracy and the kept shares of positives and negatives at the recipe's threshold.
2. Throughput on the Common Crawl pages of ../shared/corpora/web (697 dolma pages, repeated
   --copies times as one table; MB = UTF-8 text):
   - clean chain: `clean_table` with recipes/web_quality's rule sets (Gopher, C4, FineWeb, PII),
     no scorer, no decontamination: the clean stage as it runs today on web text;
   - scorer: `QualityModel.score` on the same texts;
   - clean + scorer: `clean_table` with `clean.quality` (what the stage costs with the scorer);
   - decontamination: `Index.check` on the same texts (13-grams; index of WikiText-103 test +
     PAWS-X task, built once, build time reported);
   - dedup signing: the dedup stage's per-batch work in `sign_shard` (normalize + MinHash
     signature and exact key, default DedupConfig: 128 permutations, 5-gram words) on the same texts.
"""
from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "corpora"
MODEL = REPO / "data" / "quality" / "wiki_books_vs_cc.npz"
RECIPE = REPO / "recipes" / "web_quality" / "recipe.yaml"


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (caches, lazy imports)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--copies", type=int, default=3, help="the 697 pages repeated this many times")
    ap.add_argument("--model", default=str(MODEL))
    args = ap.parse_args(argv)
    if not Path(args.model).is_file():
        print(f"error: no model at {args.model}: run `make quality-model` first", file=sys.stderr)
        return 2

    import numpy as np
    import pyarrow as pa

    from pipeline.clean import CleanConfig, clean_table
    from pipeline.clean.decontam import build_index
    from pipeline.clean.quality import QualityModel, evaluate
    from pipeline.dedup.config import DedupConfig
    from pipeline.dedup.exact import normalize
    from pipeline.dedup.params import Params
    from pipeline.recipe import load_recipe
    from pipeline.schema import DOC_SCHEMA

    recipe = load_recipe(RECIPE)
    model = QualityModel.load(args.model)
    threshold = recipe.clean.quality.threshold

    # 1. accuracy on the held-out documents
    ex = Path(args.model).parent / "examples"
    from pipeline.clean.quality import read_examples  # as `opencorpus quality train` reads them

    pos = read_examples([str(ex / "heldout_pos.jsonl")], ["text"], "held-out positives")
    neg = read_examples([str(ex / "heldout_neg.jsonl")], ["text"], "held-out negatives")
    scores = model.score(pos + neg)
    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))].astype(bool)
    acc = evaluate(scores, labels, threshold)
    print(f"## Scorer {Path(args.model).name}: held-out documents (never trained on)\n")
    print("| held out | positives | negatives | ROC AUC | accuracy | threshold | kept positives | kept negatives |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| whole documents | {acc['positives']} | {acc['negatives']} | {acc['roc_auc']:.4f} | {acc['accuracy']:.4f} | "
          f"{threshold:g} | {acc['kept_positive']:.1%} | {acc['kept_negative']:.1%} |")
    from pipeline.clean.quality import chunk_words

    cp, cn = chunk_words(pos, 200), chunk_words(neg, 200)
    cs = model.score(cp + cn)
    acc_c = evaluate(cs, np.r_[np.ones(len(cp)), np.zeros(len(cn))].astype(bool), threshold)
    print(f"| the same, in 200-word pieces | {acc_c['positives']} | {acc_c['negatives']} | {acc_c['roc_auc']:.4f} | "
          f"{acc_c['accuracy']:.4f} | {threshold:g} | {acc_c['kept_positive']:.1%} | {acc_c['kept_negative']:.1%} |\n")

    # 2. throughput
    with gzip.open(SHARED / "web" / "dolma_CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz", "rt") as f:
        pages = [json.loads(line)["text"] for line in f if line.strip()]
    texts = pages * args.copies
    n = len(texts)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    table = pa.Table.from_pydict({"id": [f"d{i}" for i in range(n)], "text": texts, "source": ["web"] * n,
                                  "license": [None] * n, "kind": ["prose"] * n, "url": [None] * n,
                                  "path": [None] * n, "meta": [None] * n}, schema=DOC_SCHEMA)
    web = recipe.clean.model_dump()
    chain_cfg = CleanConfig.model_validate({**web, "quality": None, "decontaminate": None,
                                            "urls": {}})
    with_q_cfg = CleanConfig.model_validate({**web, "decontaminate": None, "urls": {}})
    t0 = time.perf_counter()
    d = recipe.clean.decontaminate
    index = build_index(d.entries(), d.ngram)
    build_s = time.perf_counter() - t0
    dcfg = DedupConfig()
    params = Params.from_config(dcfg)
    signer = params.signer()
    arr = table.column("text").combine_chunks()

    rows = [
        ("clean chain (Gopher, C4, FineWeb, PII; today's stage)", lambda: clean_table(table, chain_cfg)),
        ("quality scorer alone", lambda: model.score(arr)),
        ("clean chain + quality scorer", lambda: clean_table(table, with_q_cfg)),
        ("decontamination alone (13-gram index lookup)", lambda: index.check(arr)),
        ("dedup signing (normalize + MinHash 128 perm + exact key)",
         lambda: signer.process(normalize(arr, dcfg.normalize), signatures=params.minhash)),
    ]
    secs = {}
    for name, fn in rows:
        secs[name] = timed(fn, args.repeats)
    chain = secs[rows[0][0]]
    sign = secs[rows[4][0]]
    print(f"## Throughput: {n:,} web pages, {mb:.1f} MB, one core, median of {args.repeats}\n")
    print("| work | seconds | docs/s | MB/s | vs clean chain | vs dedup signing |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, _ in rows:
        s = secs[name]
        print(f"| {name} | {s:.2f} | {n / s:,.0f} | {mb / s:.2f} | {s / chain:.3f}x the time | {s / sign:.3f}x the time |")
    print(f"\nDecontamination index: {len(index.hashes):,} distinct 13-grams of {len(index.sets)} sets, built in {build_s:.2f} s "
          f"(once per process).")
    print(f"Adding the scorer costs {secs[rows[2][0]] / chain:.3f}x the clean chain's time "
          f"(scorer alone: {secs[rows[1][0]] / chain:.1%} of it); decontamination runs "
          f"{sign / secs[rows[3][0]]:.1f}x as fast as dedup signing.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
