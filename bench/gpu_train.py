#!/usr/bin/env python3
"""GPU training throughput and MFU of the bundled trainer: GPT-2 124M, T=1024, bf16, compiled.

    .venv/bin/python bench/gpu_train.py                       # one GPU (H100/H200): the issue's target
    .venv/bin/python bench/gpu_train.py --data DATA           # real token shards instead of random tokens
    .venv/bin/python bench/gpu_train.py --device cpu --tiny   # smoke test of this script without a GPU

It runs the trainer's own loop (`model.train.fit`: fused AdamW, bf16 autocast, torch.compile,
gradient clipping, the warmup/cosine schedule, metrics.jsonl) for --steps optimizer steps
and reports the median tokens/s and MFU over the steps after --skip (compilation and
warm-up). MFU = 6N + attention FLOPs per token (PaLM appendix B) x tokens/s / peak bf16
FLOP/s of the device (989 TFLOP/s for H100 SXM and H200; `--peak-flops` overrides).
The vocabulary is GPT-2's padded to 50,304 (a multiple of 64) with random tokens, so the
figure does not depend on a corpus; --data uses a corpus folder's shards.
"""
from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds scripts named like standard modules (tokenize.py): keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import statistics
import tempfile
import time

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.data import TrainSequences, open_corpus  # noqa: E402
from model.gpt import GPT  # noqa: E402
from model.metrics import peak_flops_for, read_metrics  # noqa: E402
from model.train import fit, make_config, model_config, setup_runtime  # noqa: E402


class RandomBatches:
    """Uniform random tokens: the same shapes and work as real data, no corpus needed."""

    def __init__(self, vocab: int, batch: int, T: int, seed: int = 0):
        self.g = torch.Generator().manual_seed(seed)
        self.vocab, self.B, self.T, self.n = vocab, batch, T, 0

    def next_batch(self):
        self.n += 1
        x = torch.randint(0, self.vocab, (self.B, self.T + 1), generator=self.g)
        return x[:, :-1], x[:, 1:]

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, s):
        self.n = s["n"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="corpus folder (default: random tokens)")
    ap.add_argument("--batch-size", type=int, default=32, help="micro-batch per step (32 x 1024 fits 80 GB)")
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--skip", type=int, default=10, help="steps left out of the medians (compilation, warm-up)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--peak-flops", type=float)
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model at T=128 (to smoke-test on CPU)")
    ap.add_argument("--json-out", type=Path, default=REPO / "bench" / "results" / "gpu_train.json")
    a = ap.parse_args()

    shape = dict(n_layer=2, n_head=2, n_embd=128, block_size=128) if a.tiny else {}
    cfg = make_config("gpt2-124m", batch_size=a.batch_size, grad_accum=a.grad_accum, max_steps=a.steps,
                      warmup_steps=min(10, a.steps), checkpoint_every=10**9, device=a.device,
                      compile=a.compile, peak_flops=a.peak_flops, progress=False, **shape)
    rt = setup_runtime(cfg)
    if a.data:
        corpus = open_corpus(a.data)
        gcfg = model_config(cfg, corpus.vocab_size)
        batches = TrainSequences(corpus.train, cfg.block_size, cfg.batch_size, cfg.seed, gcfg.vocab_size)
    else:
        gcfg = model_config(cfg, 50257)  # GPT-2's vocabulary -> 50,304
        batches = RandomBatches(gcfg.vocab_size, cfg.batch_size, cfg.block_size)
    torch.manual_seed(cfg.seed)
    model = GPT(gcfg)
    name = torch.cuda.get_device_name(rt.device) if rt.device_type == "cuda" else "cpu"
    peak = a.peak_flops or peak_flops_for(name)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fit(cfg, Path(tmp), model, batches, rt, save_final=False)
        wall = time.perf_counter() - t0
        m = read_metrics(Path(tmp) / "metrics.jsonl")
    kept = [r for r in m if r["step"] > a.skip] or m
    tok_s = statistics.median(r["tokens_per_s"] for r in kept)
    fpt = model.flops_per_token()
    result = {
        "device": name, "torch": torch.__version__, "dtype": str(rt.dtype), "compile": cfg.compile,
        "params": model.num_params(), "T": cfg.block_size, "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum,
        "tokens_per_step": cfg.tokens_per_step, "steps": a.steps, "median_over_steps": len(kept),
        "median_tokens_per_s": tok_s, "median_ms_per_step": statistics.median(r["dt_ms"] for r in kept),
        "flops_per_token": fpt, "peak_flops": peak,
        "mfu": fpt * tok_s / peak if peak else None, "wall_s_incl_compile": wall,
        "max_memory_gb": torch.cuda.max_memory_allocated(rt.device) / 1e9 if rt.device_type == "cuda" else None,
        "final_loss": m[-1]["loss"] if m else None,
    }
    a.json_out.parent.mkdir(parents=True, exist_ok=True)
    a.json_out.write_text(json.dumps(result, indent=2))
    print("| Device | Model | T | tokens/step | dtype | compile | tokens/s (median) | ms/step | MFU |")
    print("|---|---|---|---|---|---|---|---|---|")
    mfu = f"{result['mfu'] * 100:.1f}%" if result["mfu"] else "n/a (peak unknown)"
    print(f"| {name} | {result['params'] / 1e6:.0f}M | {cfg.block_size} | {cfg.tokens_per_step:,} | "
          f"{str(rt.dtype).replace('torch.', '')} | {cfg.compile} | {tok_s:,.0f} | "
          f"{result['median_ms_per_step']:.1f} | {mfu} |")


if __name__ == "__main__":
    main()
