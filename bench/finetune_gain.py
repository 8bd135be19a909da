#!/usr/bin/env python3
"""What pretraining buys on the two shipped tasks, over several seeds and two pretraining corpora.

    .venv/bin/python bench/finetune_gain.py [--seeds 0,1,2] [--setups test,tapt] [--work data/finetune_gain]

tests/test_finetune_gain.py asserts the language-ID gain on two seeds with one small
encoder; this script is the wider measurement behind docs/mlm_finetune.md:

Pretraining setups (masked LM, corpora built by the pipeline's tokenize stage from
../shared/corpora; task sentences held out):
  test   the test's encoder: lingua sentences of 16 Latin-script languages (lines 101..),
         2 layers x 128, learned positions, 1,200 steps.
  tapt   the same lingua documents plus the *unlabelled* sentence pairs of the PAWS-X
         training split, each pair as two adjacent documents (task-adaptive pretraining:
         the validation and test pairs are never seen, labels never used), rotary
         positions, 3,000 steps.

For every setup and seed: language ID (the test's subset) and PAWS-X German (the shipped
task, --paws-epochs), pretrained against the same architecture from scratch, plus the
majority class. Two diagnostics for PAWS-X:
  alignment features  a logistic regression on 7 hand-made word-alignment features (Jaccard,
         longest common subsequence, share of shared words in the same order, ...) trained
         on the same training split: how much signal simple word alignment carries.
  copy probe  masked-token accuracy on the second sentence of the test pairs with the first
         sentence in the context and without it: a model that uses the partner sentence
         (what PAWS needs) scores higher with it.

Prints a table and writes bench/results/finetune_gain.json. About 20 minutes on an idle
2-core machine with the default three seeds.
"""
from __future__ import annotations

import argparse
import difflib
import functools
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
TASKS = REPO / "recipes" / "tasks"

from mlm_corpus import (GAIN_PRETRAIN, GAIN_PRETRAIN_STEPS, LANGUAGES, SKIP_LINES,  # noqa: E402
                        build_lingua_corpus, lid_task)

from model.finetune import finetune, load_pretrained  # noqa: E402
from model.tasks import load_task, load_task_data  # noqa: E402
from model.train import train  # noqa: E402

SETUPS = {
    "test": dict(paws_pairs=False, steps=GAIN_PRETRAIN_STEPS, overrides={}),
    "tapt": dict(paws_pairs=True, steps=3000, overrides={"positions": "rope"}),
}


@functools.cache
def pawsx():
    """The shipped PAWS-X task's data and splits (loaded once; every use reads the same split)."""
    return load_task_data(load_task(TASKS / "pawsx_de.yaml"))


def paws_training_pairs() -> tuple[list[str], list[str]]:
    """(ids, texts) of the PAWS-X training split's sentences, a pair as two adjacent documents."""
    train_split = pawsx().splits["train"]
    ids, texts = [], []
    for k, (a, b) in enumerate(zip(train_split.text_a, train_split.text_b)):
        ids += [f"pawsx-train-{k:05d}-a", f"pawsx-train-{k:05d}-b"]
        texts += [a, b]
    return ids, texts


def pretrain(work: Path, name: str) -> Path:
    setup = SETUPS[name]
    data = work / name / "data"
    if not (data / "tokens" / "index.json").exists():
        build_lingua_corpus(data, LANGUAGES, skip_lines=SKIP_LINES, vocab_size=2048,
                            extra=paws_training_pairs() if setup["paws_pairs"] else None)
    run = work / name / "mlm"
    info = run / "run.json"
    if not (info.exists() and json.loads(info.read_text())["status"] == "finished"):
        train(data, run, max_steps=setup["steps"], **{**GAIN_PRETRAIN, **setup["overrides"]})
    return run


# ---------------------------------------------------------------------------- diagnostics
def _words(s: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", s.lower())


def alignment_features(a: str, b: str) -> list[float]:
    wa, wb = _words(a), _words(b)
    sa, sb = set(wa), set(wb)
    common = sa & sb
    blocks = difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_matching_blocks()
    lcs = sum(m.size for m in blocks)
    shared = sum(min(wa.count(t), wb.count(t)) for t in common)
    return [len(common) / max(1, len(sa | sb)), lcs / max(1, len(wa), len(wb)), lcs / max(1, shared),
            (len(blocks) - 1) / max(1, len(wa)), abs(len(wa) - len(wb)) / max(1, len(wa)), len(wa) / 50,
            float(sorted(wa) == sorted(wb))]


def alignment_baseline(seeds: list[int]) -> dict[int, float]:
    """Test accuracy per seed of a logistic regression on alignment features (PAWS-X, the task's split)."""
    data = pawsx()
    X, y = {}, {}
    for split in ("train", "test"):
        ex = data.splits[split]
        X[split] = torch.tensor([alignment_features(a, b) for a, b in zip(ex.text_a, ex.text_b)])
        y[split] = torch.from_numpy(data.label_ids(split))
    mu, sd = X["train"].mean(0), X["train"].std(0) + 1e-6
    out = {}
    for seed in seeds:
        torch.manual_seed(seed)
        lin = torch.nn.Linear(X["train"].size(1), len(data.label_names))
        opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=1e-3)
        for _ in range(500):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(lin((X["train"] - mu) / sd), y["train"]).backward()
            opt.step()
        with torch.no_grad():
            out[seed] = float((lin((X["test"] - mu) / sd).argmax(1) == y["test"]).float().mean())
    return out


@torch.no_grad()
def copy_probe(run: Path, seed: int = 0) -> dict:
    """Masked-token accuracy on PAWS-X test second sentences, with and without the first in context."""
    from tokenizers import Tokenizer

    from model.encoder import backbone_from_config
    from model.mlm import MASK_TOKEN

    pre = load_pretrained(run)
    model = backbone_from_config(dict(pre.model_config))
    model.load_state_dict(pre.state["model"])
    model.eval()
    tok = Tokenizer.from_file(str(pre.tokenizer_path))
    mask_id = tok.token_to_id(MASK_TOKEN)
    ex = pawsx().splits["test"]
    first = [e.ids for e in tok.encode_batch(ex.text_a, add_special_tokens=False)]
    second = [e.ids for e in tok.encode_batch(ex.text_b, add_special_tokens=False)]
    out = {}
    for context in ("with first sentence", "second sentence alone"):
        rng = np.random.default_rng(seed)  # the same masked positions in both conditions
        hits = n = 0
        for a, b in zip(first, second):
            prefix = [pre.eot_id] + (a + [pre.eot_id] if context.startswith("with") else [])
            picks = rng.choice(len(b), max(1, len(b) // 7), replace=False)
            if len(a) + len(b) + 3 > pre.model_config["block_size"]:
                continue
            ids = prefix + b + [pre.eot_id]
            for p in picks:
                ids[len(prefix) + p] = mask_id
            logits, _ = model(torch.tensor([ids]))
            pred = logits[0, len(prefix):len(prefix) + len(b)].argmax(-1).numpy()
            hits += int((pred[picks] == np.asarray(b)[picks]).sum())
            n += len(picks)
        out[context] = hits / n
    return out


# ---------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--setups", default="test,tapt")
    ap.add_argument("--paws-epochs", type=float, default=10)
    ap.add_argument("--work", type=Path, default=REPO / "data" / "finetune_gain")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, probes = [], {}
    for name in args.setups.split(","):
        t0 = time.perf_counter()
        run = pretrain(args.work, name)
        print(f"[{name}] pretrained in {time.perf_counter() - t0:.0f} s (cached runs: 0 s)", flush=True)
        probes[name] = copy_probe(run)
        tasks = {"language ID": (lid_task(TASKS / "lingua_langid.yaml"), {}),
                 "PAWS-X de": (TASKS / "pawsx_de.yaml", {"epochs": args.paws_epochs})}
        for task_name, (task, settings) in tasks.items():
            for seed in seeds:
                out = args.work / name / f"{task_name.split()[0].lower()}-seed{seed}"
                r = finetune(run, task, out, from_scratch=True, seed=seed, progress=False, **settings)
                rows.append({"setup": name, "task": task_name, "seed": seed, "pretrained": r["accuracy"],
                             "scratch": r["scratch_accuracy"], "gain": r["accuracy_gain"],
                             "majority": r["majority_class_accuracy"], "test_examples": r["splits"]["test"]["examples"]})
                print(f"  {task_name:12s} seed {seed}: pretrained {r['accuracy']:.4f}  scratch "
                      f"{r['scratch_accuracy']:.4f}  gain {r['accuracy_gain']:+.4f}", flush=True)
    align = alignment_baseline(seeds)

    print("\n| setup | task | seed | pretrained | scratch | gain | majority class |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setup']} | {r['task']} | {r['seed']} | {r['pretrained']:.1%} | {r['scratch']:.1%} | "
              f"{100 * r['gain']:+.1f} | {r['majority']:.1%} |")
    print("\n| setup | task | mean gain (points) | seeds with a gain |")
    print("|---|---|---|---|")
    for name in args.setups.split(","):
        for task_name in ("language ID", "PAWS-X de"):
            gains = [r["gain"] for r in rows if r["setup"] == name and r["task"] == task_name]
            print(f"| {name} | {task_name} | {100 * np.mean(gains):+.1f} | {sum(g > 0 for g in gains)}/{len(gains)} |")
    print("\nPAWS-X alignment-feature logistic regression, test accuracy: "
          + ", ".join(f"seed {s} {a:.1%}" for s, a in align.items()))
    print("\nCopy probe: masked-token accuracy on the second sentences of the PAWS-X test pairs")
    print("| setup | first sentence in the context | second sentence alone |")
    print("|---|---|---|")
    for name, p in probes.items():
        print(f"| {name} | {p['with first sentence']:.1%} | {p['second sentence alone']:.1%} |")
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "finetune_gain.json").write_text(json.dumps(
        {"rows": rows, "alignment_baseline": align, "copy_probe": probes, "seeds": seeds,
         "paws_epochs": args.paws_epochs, "setups": {k: SETUPS[k] for k in args.setups.split(",")}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
