#!/usr/bin/env python3
"""CPU training throughput: opencorpus's trainer against nanoGPT's train.py, same run.

Both train the same model (4 layers, 4 heads, width 256, context 256, batch 16, float32,
no compile, GPT-2 block without biases) on the same tokens with the same thread count,
one after the other, `--repeats` times alternating. Reported: median ms per iteration
(iterations with an evaluation or a checkpoint left out), tokens/s, the ratio, and the
validation loss of both final models measured by the same code on the same tokens.

Setup (once; everything outside the repository):

    mkdir -p ../benchenv-train/nanoGPT
    # karpathy/nanoGPT at 3adf61e154c3fe3fca428ad6bc3818b27a3b8291, e.g. from a clone:
    git -C NANOGPT_CLONE archive 3adf61e154c3fe3fca428ad6bc3818b27a3b8291 | tar -x -C ../benchenv-train/nanoGPT

nanoGPT's train.py needs only torch and numpy, so it runs by default under this same
interpreter (the same torch build: the fairest comparison); `--nanogpt-python` picks another.

    .venv/bin/python bench/train.py [--steps 200] [--repeats 1] [--threads 2]

Data (cached in --work): the anchors' bench corpus (../shared/anchors/make_bench_corpus.py),
a byte-level BPE of 8,192 tokens (../shared/anchors/bench_tokenizers.py), nanoGPT's
train.bin/val.bin (../shared/anchors/prepare_nanogpt_data.py), and the same token stream
rewritten as opencorpus token shards (documents split at <|endoftext|>).
"""
from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds scripts named like standard modules (tokenize.py): keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import time

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ANCHORS = REPO.parent / "shared" / "anchors"
sys.path.insert(0, str(REPO))

MODEL_FLAGS = dict(n_layer=4, n_head=4, n_embd=256, block_size=256, batch_size=16)


def child_cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def sh(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


# ---------------------------------------------------------------------------- data
def prepare(work: Path, nanogpt: Path) -> tuple[Path, Path]:
    """(nanoGPT dataset folder, opencorpus corpus folder), built once."""
    corpus = work / "corpus"
    if not (corpus / "corpus.jsonl").exists():
        sh([sys.executable, ANCHORS / "make_bench_corpus.py", "--out", corpus])
    tok_dir = work / "tok"
    if not (tok_dir / "tokenizer.json").exists():
        sh([sys.executable, ANCHORS / "bench_tokenizers.py", "--corpus", corpus / "corpus.jsonl", "--out", tok_dir,
            "--repeats", "1"], env=dict(os.environ, RAYON_NUM_THREADS="2"))
    ng_data = nanogpt / "data" / "benchcorpus"
    if not (ng_data / "meta.pkl").exists():
        sh([sys.executable, ANCHORS / "prepare_nanogpt_data.py", "--corpus", corpus / "corpus.jsonl",
            "--truth", corpus / "ground_truth.jsonl", "--tokenizer", tok_dir / "tokenizer.json", "--out", ng_data])
    ours = work / "opencorpus_data"
    if not (ours / "tokens" / "index.json").exists():
        write_token_shards(ng_data, tok_dir / "tokenizer.json", ours)
    return ng_data, ours


def write_token_shards(ng_data: Path, tokenizer: Path, out: Path, train_shards: int = 4):
    """The nanoGPT token stream as opencorpus shards: a document ends at each <|endoftext|>."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer

    from model.data import sha256_file

    tok = Tokenizer.from_file(str(tokenizer))
    eot = tok.token_to_id("<|endoftext|>")
    vocab = pickle.load(open(ng_data / "meta.pkl", "rb"))["vocab_size"]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    entries = []
    schema = pa.schema([pa.field("id", pa.string(), nullable=False),
                        pa.field("input_ids", pa.list_(pa.uint16()), nullable=False),
                        pa.field("n_tokens", pa.int32(), nullable=False)])
    totals = {}
    for split, n_shards in (("train", train_shards), ("val", 1)):
        stream = np.fromfile(ng_data / f"{split}.bin", dtype=np.uint16)
        ends = np.flatnonzero(stream == eot) + 1
        docs = np.split(stream, ends[:-1] if ends.size and ends[-1] == stream.size else ends)
        folder = tmp / "tokens" / split
        folder.mkdir(parents=True)
        per = -(-len(docs) // n_shards)
        for k in range(n_shards):
            chunk = docs[k * per: (k + 1) * per]
            offsets = np.concatenate([[0], np.cumsum([d.size for d in chunk])]).astype(np.int32)
            values = pa.array(np.concatenate(chunk), pa.uint16())
            table = pa.table({
                "id": [f"{split}-{k * per + i:06d}" for i in range(len(chunk))],
                "input_ids": pa.ListArray.from_arrays(pa.array(offsets), values),
                "n_tokens": pa.array([d.size for d in chunk], pa.int32()),
            }, schema=schema)
            path = folder / f"part-{k:05d}.parquet"
            pq.write_table(table, path, compression="zstd")
            entries.append({"split": split, "file": f"{split}/{path.name}", "tokens": int(sum(d.size for d in chunk)),
                            "documents": len(chunk), "bytes": path.stat().st_size, "sha256": sha256_file(path)})
        totals[split] = {"documents": len(docs), "tokens": int(stream.size), "shards": n_shards}
    shutil.copyfile(tokenizer, tmp / "tokenizer.json")
    from pipeline.records import TokenIndex

    index = TokenIndex.model_validate({
        "schema": {"id": "string", "input_ids": "list<uint16>", "n_tokens": "int32"}, "dtype": "uint16",
        "vocab_size": vocab, "eot_id": eot, "pad_id": None, "special_tokens": {"eot": "<|endoftext|>"},
        "tokenizer_sha256": sha256_file(tmp / "tokenizer.json"), "val_fraction": 0.0, "seed": 0,
        "shard_tokens": 0, "totals": totals, "shards": entries})
    (tmp / "tokens" / "index.json").write_text(index.model_dump_json(by_alias=True, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


# ---------------------------------------------------------------------------- runs
def run_nanogpt(nanogpt: Path, python: str, out: Path, steps: int, env: dict) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [python, "train.py", "--dataset=benchcorpus", "--device=cpu", "--compile=False", "--dtype=float32",
           f"--n_layer={MODEL_FLAGS['n_layer']}", f"--n_head={MODEL_FLAGS['n_head']}",
           f"--n_embd={MODEL_FLAGS['n_embd']}", f"--block_size={MODEL_FLAGS['block_size']}",
           f"--batch_size={MODEL_FLAGS['batch_size']}", "--gradient_accumulation_steps=1",
           f"--max_iters={steps}", f"--lr_decay_iters={steps}", "--warmup_iters=20", "--learning_rate=1e-3",
           "--min_lr=1e-4", f"--eval_interval={steps}", "--eval_iters=20", "--log_interval=1", "--dropout=0.0",
           "--bias=False", f"--out_dir={out}"]
    t0, c0 = time.perf_counter(), child_cpu_s()
    res = subprocess.run(cmd, cwd=nanogpt, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, child_cpu_s() - c0
    if res.returncode:
        raise RuntimeError(f"nanoGPT failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    iters = {int(m[1]): (float(m[2]), float(m[3])) for m in
             re.finditer(r"^iter (\d+): loss ([\d.]+), time ([\d.]+)ms", res.stdout, re.M)}
    evals = {int(m[1]): float(m[2]) for m in re.finditer(r"^step (\d+): train loss [\d.]+, val loss ([\d.]+)",
                                                         res.stdout, re.M)}
    # Iterations that ran an evaluation (0, steps) pay for it: leave them out.
    ms = [t for i, (_, t) in iters.items() if i not in evals and i <= steps - 1]
    # nanoGPT's "iter k" is its (k+1)-th optimizer step.
    losses = {i + 1: l for i, (l, _) in iters.items() if i < steps}
    return {"ms": ms, "losses": losses, "wall_s": wall, "cpu_s": cpu, "own_val_loss": evals.get(steps),
            "ckpt": out / "ckpt.pt"}


def run_ours(data: Path, out: Path, steps: int, env: dict) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "model.train", "--data", data, "--out", out, "--preset", "cpu-tiny",
           "--max-steps", steps, "--checkpoint-every", steps, "--lr", "1e-3", "--min-lr", "1e-4",
           "--warmup-steps", "20", "--dtype", "float32", "--no-compile", "--no-progress"]
    for k, v in MODEL_FLAGS.items():
        cmd += [f"--{k.replace('_', '-')}", v]
    t0, c0 = time.perf_counter(), child_cpu_s()
    res = subprocess.run([str(c) for c in cmd], cwd=REPO, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, child_cpu_s() - c0
    if res.returncode:
        raise RuntimeError(f"opencorpus train failed:\n{res.stderr[-3000:]}")
    from model.metrics import read_metrics

    m = read_metrics(out / "metrics.jsonl")
    # Step 1 pays for warm-up; the last step writes the checkpoint (outside dt, but left out alike).
    ms = [r["dt_ms"] for r in m if 1 < r["step"] < steps]
    return {"ms": ms, "losses": {r["step"]: r["loss"] for r in m}, "wall_s": wall, "cpu_s": cpu, "run": out}


def val_loss_of(state_dict: dict, data: Path, max_tokens: int) -> float:
    """Validation loss of a GPT-2-named state dict, by our evaluator, on the first max_tokens targets."""
    import torch

    from model.data import ValSequences, open_corpus
    from model.evaluate import val_loss_sum
    from model.gpt import GPT, GPTConfig

    corpus = open_corpus(data, need_val=True)
    model = GPT(GPTConfig(vocab_size=state_dict["transformer.wte.weight"].shape[0], **{
        k: MODEL_FLAGS[k] for k in ("n_layer", "n_head", "n_embd", "block_size")}))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in state_dict.items()})
    model.eval()
    val = ValSequences(corpus.val, MODEL_FLAGS["block_size"], model.config.vocab_size, max_tokens)
    with torch.no_grad():
        total, n = val_loss_sum(model, val, 16, "cpu")
    return total / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=REPO.parent / "benchenv-train" / "work")
    ap.add_argument("--nanogpt", type=Path, default=Path(os.environ.get("NANOGPT_DIR", REPO.parent / "benchenv-train" / "nanoGPT")))
    ap.add_argument("--nanogpt-python", default=os.environ.get("NANOGPT_PYTHON", sys.executable))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--val-tokens", type=int, default=262_144)
    ap.add_argument("--json-out", type=Path, default=REPO / "bench" / "results" / "train.json")
    a = ap.parse_args()
    if not (a.nanogpt / "train.py").exists():
        sys.exit(f"nanoGPT not found in {a.nanogpt}: see the setup in this script's docstring")
    a.work.mkdir(parents=True, exist_ok=True)
    _, data = prepare(a.work, a.nanogpt)

    import torch

    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               PYTHONPATH=str(REPO))
    tokens_per_iter = MODEL_FLAGS["batch_size"] * MODEL_FLAGS["block_size"]
    rows = []
    for r in range(a.repeats):
        # The machine may be shared: the 1-minute load average before each run says how much.
        # The order alternates run by run, so that neither side always runs second.
        load = {}
        for who in ("nanogpt", "opencorpus") if r % 2 == 0 else ("opencorpus", "nanogpt"):
            load[who] = os.getloadavg()[0]
            if who == "nanogpt":
                ng = run_nanogpt(a.nanogpt, a.nanogpt_python, a.work / f"nanogpt-out-{r}", a.steps, env)
            else:
                oc = run_ours(data, a.work / f"ours-run-{r}", a.steps, env)
        ng_sd = torch.load(ng["ckpt"], map_location="cpu", weights_only=True)["model"]
        from model.checkpoint import latest_checkpoint, load_checkpoint

        oc_sd = load_checkpoint(latest_checkpoint(oc["run"]))["model"]
        row = {"repeat": r}
        for name, res, sd in (("nanogpt", ng, ng_sd), ("opencorpus", oc, oc_sd)):
            med = statistics.median(res["ms"])
            last = [res["losses"][s] for s in range(max(1, a.steps - 9), a.steps + 1)]
            row[name] = {"ms_per_iter": med, "tokens_per_s": tokens_per_iter / (med / 1000),
                         "p10_ms": float(np.percentile(res["ms"], 10)), "p90_ms": float(np.percentile(res["ms"], 90)),
                         "wall_s": res["wall_s"], "cpu_s": res["cpu_s"], "train_loss_last10": statistics.mean(last),
                         "val_loss": val_loss_of(sd, data, a.val_tokens), "load_avg_before": load[name]}
        row["nanogpt"]["own_val_loss"] = ng["own_val_loss"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    def med(who, key):
        return statistics.median(r[who][key] for r in rows)

    summary = {
        "steps": a.steps, "repeats": a.repeats, "threads": a.threads, "torch": torch.__version__,
        "tokens_per_iter": tokens_per_iter, "rows": rows,
        "ratio_tokens_per_s": med("opencorpus", "tokens_per_s") / med("nanogpt", "tokens_per_s"),
        "val_loss_diff": med("opencorpus", "val_loss") - med("nanogpt", "val_loss"),
        # Per-repeat pairs in the form bench/all.py reads (the same in every bench script's --json-out).
        "claims": [
            {"claim": "trainer tokens/s vs nanoGPT train.py (CPU)", "baseline": "nanoGPT train.py",
             "unit": "tokens/s", "better": "higher",
             "ours": [r["opencorpus"]["tokens_per_s"] for r in rows], "base": [r["nanogpt"]["tokens_per_s"] for r in rows]},
            {"claim": f"validation loss after {a.steps} steps vs nanoGPT", "baseline": "nanoGPT train.py",
             "unit": "loss", "better": "lower", "compare": "difference",
             "ours": [r["opencorpus"]["val_loss"] for r in rows], "base": [r["nanogpt"]["val_loss"] for r in rows]},
        ],
    }
    a.json_out.parent.mkdir(parents=True, exist_ok=True)
    a.json_out.write_text(json.dumps(summary, indent=2))
    print(f"\nCPU training, {MODEL_FLAGS['n_layer']}L/{MODEL_FLAGS['n_head']}H/{MODEL_FLAGS['n_embd']}d, context "
          f"{MODEL_FLAGS['block_size']}, batch {MODEL_FLAGS['batch_size']}, fp32, no compile, {a.threads} threads, "
          f"{a.steps} steps, {a.repeats} repeat(s), torch {torch.__version__}\n")
    print("| Trainer | ms/iter (median) | p10-p90 ms | tokens/s | wall s / CPU s (incl. start-up, evals) "
          "| train loss (last 10 steps) | val loss (same evaluator, same tokens) | load avg before |")
    print("|---|---|---|---|---|---|---|---|")
    for who in ("nanogpt", "opencorpus"):
        print(f"| {who} | {med(who, 'ms_per_iter'):.1f} | {med(who, 'p10_ms'):.0f}-{med(who, 'p90_ms'):.0f} | "
              f"{med(who, 'tokens_per_s'):,.0f} | {med(who, 'wall_s'):.0f} / {med(who, 'cpu_s'):.0f} | "
              f"{med(who, 'train_loss_last10'):.4f} | "
              f"{med(who, 'val_loss'):.4f} | {med(who, 'load_avg_before'):.1f} |")
    print(f"\nratio (opencorpus / nanoGPT tokens/s): {summary['ratio_tokens_per_s']:.3f}x; "
          f"val loss difference (opencorpus - nanoGPT): {summary['val_loss_diff']:+.4f}")


if __name__ == "__main__":
    main()
