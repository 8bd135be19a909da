#!/usr/bin/env python3
"""Multiple-choice tasks scored by lm-eval-harness and by our scorer (model.heldout.choice_scores).

    .venv/bin/python bench/lm_eval_parity.py [--work /tmp/lm_eval_parity] [--items 200]
        [--lm-eval-path /tmp/lmeval-env:COMPAT] [--run RUN_DIR] [--task TASK.jsonl ...]

Trains a tiny GPT (2 layers x 64, 200 steps) on a generated play (the tests' fixture corpus),
exports it (model.export.export_hf, what `opencorpus export --hf` writes), builds two tasks
(a cloze task from another generated play, `python -m model.heldout cloze`, and short choices of
unequal length in four languages, see build_tasks), scores them with choice_scores on the run's
checkpoint, then with lm-eval-harness (hf model on the exported folder, one local task YAML per
task) in a second Python process, and prints per task acc and acc_norm of both, the items where
a pick differs and the largest |log-likelihood difference| of a choice. `--run` scores an
existing run instead of training; `--task` (repeatable) existing task files. Exit status 1 when
any pick differs, 2 when lm-eval fails. About 2 minutes on a busy 2-core machine.

lm-eval does not run in the project's venv (lm_eval 0.4.9 needs transformers 4.x; the venv has
5.x), so it runs with the venv's python (torch CPU, numpy) and PYTHONPATH set to a folder of
pure-Python packages installed without their dependencies (pip must never pull torch: it
brings a multi-GB CUDA build), ahead of transformers 4.45.2 / tokenizers 0.20.3 /
huggingface-hub 0.25.2 (the folder $OPENCORPUS_CACHE/compat/... that test_model.py's
other_transformers test fills; COMPAT below):

    .venv/bin/pip install --no-deps --target /tmp/lmeval-env \\
        lm_eval==0.4.9 datasets==3.6.0 fsspec==2025.3.0 dill==0.3.8 multiprocess==0.70.16 \\
        evaluate==0.4.3 accelerate==1.0.1 peft==0.13.2 jsonlines numexpr pytablewriter \\
        DataProperty mbstrdecoder pathvalidate tabledata tcolorpy typepy chardet rouge-score \\
        absl-py nltk joblib sacrebleu portalocker tabulate lxml colorama scikit-learn \\
        threadpoolctl narwhals sqlitedict tqdm-multiprocess word2number more_itertools
    .venv/bin/pip install --no-deps --target COMPAT transformers==4.45.2 tokenizers==0.20.3 huggingface-hub==0.25.2
    # COMPAT = ~/.cache/opencorpus/compat/transformers4.45.2-tokenizers0.20.3-huggingface-hub0.25.2
    # check nothing named torch*, nvidia*, triton* landed in /tmp/lmeval-env

(transformers 4.45 and tokenizers 0.20 need huggingface-hub below 1.0, which the venv's datasets
5.x does not accept; datasets 3.6.0 accepts hub >= 0.24 and needs fsspec <= 2025.3, dill < 0.3.9,
multiprocess < 0.70.17; scikit-learn's current release imports narwhals. lm_eval 0.4.9 itself
fails to import under transformers 5: AutoModelForVision2Seq is gone.) --lm-eval-path (or $LM_EVAL_PATH) is that PYTHONPATH; the default is the two
folders above. Everything runs offline (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE).

How the definitions are matched. lm-eval scores a multiple-choice request as the summed
log-probability of the continuation tokens of tok(context + " " + choice) after those of
tok(context), where the context is doc_to_text and " " the target delimiter; it adds no BOS/EOT
unless the context is empty. Our items are scored after <|endoftext|> + context, so the task's
doc_to_text is "<|endoftext|>{{context}}": the exported tokenizer splits the special token out
and encodes the rest on its own, giving the same ids. Encoding context + " " + choice whole
(lm-eval) or the two parts apart (ours) gives the same tokens while the context does not end in
whitespace: the byte-level pre-tokenizer starts a new piece at the space. Both keep the last block_size + 1 tokens
of a sequence longer than the model's context. acc = argmax of the log-likelihoods, acc_norm =
argmax of log-likelihood / len(choice) (characters of the choice, without the delimiter: lm-eval's
definition, which choice_scores follows).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPAT = "compat/transformers4.45.2-tokenizers0.20.3-huggingface-hub0.25.2"  # under flows.storage.cache_dir()
TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "<|endoftext|>{{{{context}}}}"
doc_to_choice: choices
doc_to_target: label
target_delimiter: " "
num_fewshot: 0
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def lm_eval_worker(export: str, task_dir: str, out: str, batch_size: int) -> None:
    """Runs in the lm-eval environment: the tasks in task_dir through simple_evaluate; per task and
    item the choices' log-likelihoods and acc / acc_norm as lm-eval computed them."""
    import lm_eval
    import transformers
    from lm_eval.tasks import TaskManager

    names = sorted(f.stem for f in Path(task_dir).glob("*.yaml"))
    res = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={export},dtype=float32", tasks=names, num_fewshot=0,
        batch_size=batch_size, device="cpu", log_samples=True, task_manager=TaskManager(include_path=task_dir))
    tasks = {}
    for name in names:
        samples = sorted(res["samples"][name], key=lambda s: s["doc_id"])
        tasks[name] = {
            "results": {k: v for k, v in res["results"][name].items() if isinstance(v, (int, float))},
            "items": [{"doc_id": s["doc_id"], "loglik": [float(r[0]) for r in s["filtered_resps"]],
                       "acc": float(s["acc"]), "acc_norm": float(s["acc_norm"])} for s in samples]}
    Path(out).write_text(json.dumps({
        "versions": {"lm_eval": getattr(lm_eval, "__version__", "?"), "transformers": transformers.__version__},
        "tasks": tasks}))


def build_run(work: Path, steps: int) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from model_fixtures import make_corpus
    from model.train import train

    data, run = work / "data", work / "run"
    if not (data / "manifest.json").exists():
        make_corpus(data)
    if not (run / "checkpoints").exists():
        train(data, run, max_steps=steps, n_layer=2, n_head=2, n_embd=64, block_size=64, batch_size=8)
    return run


def build_tasks(work: Path, items: int) -> list[Path]:
    """cloze.jsonl: `python -m model.heldout cloze` on another generated play than the training one
    (4 choices of about 120 characters, ASCII); short.jsonl: an English context and 2 to 5 short
    choices (1 to 7 words) of unequal length in English, German, French and Russian (non-ASCII, lengths that
    make acc and acc_norm disagree), the label drawn at random: a check of the scoring, not of
    the model."""
    sys.path.insert(0, str(ROOT / "tests"))
    import random

    from fixtures_corpus import play_text
    from fixtures_text import sentence
    from model.heldout import main as heldout_main

    text, cloze, short = work / "heldout.txt", work / "cloze.jsonl", work / "short.jsonl"
    if not text.exists():
        text.write_text(play_text(250_000, seed=7), encoding="utf-8")
    heldout_main(["cloze", str(text), str(cloze), "--items", str(items), "--seed", "1"])
    rng = random.Random(3)
    speeches = [" ".join(x.split()) for x in text.read_text(encoding="utf-8").split("\n\n") if len(x) > 80]
    rows = []
    for _ in range(items):
        n = rng.randint(2, 5)
        langs = [rng.choice(["en", "de", "fr", "ru"]) for _ in range(n)]  # Russian: 2+ tokens a letter, so 1-2 words
        choices = [" ".join(sentence(rng, lang).split()[: rng.randint(1, 2 if lang == "ru" else 7)]) for lang in langs]
        rows.append({"context": rng.choice(speeches)[:rng.randint(40, 300)].rstrip(), "choices": choices, "label": rng.randrange(n)})
    short.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return [cloze, short]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/lm_eval_parity")
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--run", help="score this run instead of training a tiny one")
    p.add_argument("--task", action="append", help="score this task file (repeatable) instead of the two built ones")
    p.add_argument("--lm-eval-path", default=os.environ.get("LM_EVAL_PATH"),
                   help="PYTHONPATH under which lm_eval and transformers 4.x import (default /tmp/lmeval-env:COMPAT)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--worker", nargs=3, metavar=("EXPORT", "TASK_DIR", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        lm_eval_worker(*args.worker, batch_size=args.batch_size)
        return 0

    if not args.lm_eval_path:
        from flows.storage import cache_dir

        args.lm_eval_path = f"/tmp/lmeval-env{os.pathsep}{cache_dir() / COMPAT}"
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    run = Path(args.run) if args.run else build_run(work, args.steps)
    tasks = [Path(t).resolve() for t in args.task] if args.task else build_tasks(work, args.items)

    from model.evaluate import load_run_model
    from model.export import export_hf
    from model.heldout import choice_scores, read_task, summarize_choices
    from tokenizers import Tokenizer

    model, _, info = load_run_model(run)
    tokenizer = Tokenizer.from_file(str(Path(info.corpus.data_dir) / "tokenizer.json"))
    export = export_hf(run, work / "export")
    task_dir = work / "lm_eval_tasks"
    shutil.rmtree(task_dir, ignore_errors=True)
    task_dir.mkdir()
    names = {}
    for k, task in enumerate(tasks):
        names[task] = f"opencorpus_parity_{k}_{''.join(c if c.isalnum() else '_' for c in task.stem)}"
        (task_dir / f"{names[task]}.yaml").write_text(TASK_YAML.format(name=names[task], data=json.dumps(str(task))))
    out = work / "lm_eval_items.json"
    env = {**os.environ, "PYTHONPATH": args.lm_eval_path, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_CACHE": str(work / "hf_datasets_cache"),
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(export), str(task_dir), str(out),
                           "--batch-size", str(args.batch_size)], env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
        print(f"lm-eval failed (exit {proc.returncode}); PYTHONPATH={args.lm_eval_path}", file=sys.stderr)
        return 2
    theirs = json.loads(out.read_text())
    v = theirs["versions"]
    step = json.loads((export / "opencorpus_run.json").read_text())["step"]
    print(f"run {run} ({info.corpus.data_dir}, step {step}); lm_eval {v['lm_eval']} with transformers {v['transformers']}")
    print("| task | items | chance | ours acc | ours acc_norm | lm-eval acc | lm-eval acc_norm | items whose picks differ "
          "| max abs loglik difference |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    report, any_differ = {}, False
    for task in tasks:
        ours = choice_scores(model, tokenizer, read_task(task), model.config.block_size)
        mine = summarize_choices(ours)
        rows = theirs["tasks"][names[task]]["items"]
        if len(rows) != len(ours):
            print(f"{task}: lm-eval scored {len(rows)} items, ours {len(ours)}", file=sys.stderr)
            return 2
        differ = [k for k, (a, b) in enumerate(zip(ours, rows)) if a["acc"] != b["acc"] or a["acc_norm"] != b["acc_norm"]]
        max_diff = max(abs(x - y) for a, b in zip(ours, rows) for x, y in zip(a["loglik"], b["loglik"]))
        n = len(rows)
        lm_acc, lm_norm = sum(r["acc"] for r in rows) / n, sum(r["acc_norm"] for r in rows) / n
        print(f"| {task.name} | {n} | {mine['chance']:.3f} | {mine['acc']:.3f} | {mine['acc_norm']:.3f} | "
              f"{lm_acc:.3f} | {lm_norm:.3f} | {len(differ)} | {max_diff:.1e} |")
        any_differ |= bool(differ)
        report[task.name] = {"task": str(task), "items": n, "ours": mine, "differ": differ, "max_abs_loglik_diff": max_diff,
                             "lm_eval": {"acc": lm_acc, "acc_norm": lm_norm,
                                         "acc_above_chance": lm_acc - mine["chance"],
                                         **theirs["tasks"][names[task]]["results"]}}
    print(f"{time.time() - t0:.0f} s; per-item results in {work / 'parity.json'}")
    (work / "parity.json").write_text(json.dumps({"run": str(run), "versions": v, "tasks": report}, indent=2))
    return 1 if any_differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
