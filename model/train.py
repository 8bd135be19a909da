"""Train a GPT on a corpus folder's token shards; rerunning with the same --out resumes.

    python -m model.train --data DATA --out RUN [--preset cpu-tiny] [--max-steps N] ...
    torchrun --nproc_per_node=8 -m model.train --data DATA --out RUN --preset gpt2-124m

The pieces are separable so other objectives (masked LM, fine-tuning) reuse the loop:
`TrainConfig` + `PRESETS` (settings, model/config.py), `setup_runtime` (device, dtype, DDP), `build_model`,
`TrainSequences` (model/data.py), `make_adamw` / `lr_at` (model/optim.py),
checkpoints (model/checkpoint.py), `MetricsLog` (model/metrics.py), and `fit`, the loop
itself, which takes any model, batch source and loss function.

RUN_DIR layout: run.json (config, corpus provenance, status), metrics.jsonl, loss.png,
checkpoints/step-NNNNNNNN.pt, and after evaluation eval.json and report.md.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from model.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from model.config import IDENTITY_FIELDS, PRESETS, TrainConfig, add_options, given_options, make_config, parse_mix
from model.data import DataError, TrainSequences, check_vocabulary, open_corpus
from model.gpt import GPT, GPTConfig
from model.metrics import MetricsLog, peak_flops_for, plot_loss
from model.optim import lr_at, make_adamw
from pipeline.records import RunRecord


# ---------------------------------------------------------------------------- runtime
@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    ddp: bool = False

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def device_type(self) -> str:
        return self.device.type

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Device, dtype and, under torchrun (RANK set), the DDP process group."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ddp = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
        device = torch.device(f"cuda:{local_rank}" if ddp or want == "cuda" else want)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls outside autocast use TF32
        torch.backends.cudnn.allow_tf32 = True
    else:
        device = torch.device(want)
    if cfg.dtype == "auto":
        bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if bf16_ok else torch.float32
    elif cfg.dtype in ("float32", "fp32"):
        dtype = torch.float32
    elif cfg.dtype in ("bfloat16", "bf16"):
        dtype = torch.bfloat16
    else:
        raise ValueError(f"dtype {cfg.dtype!r} not supported (float32 or bfloat16; float16 needs a loss scaler)")
    if ddp and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(device=device, dtype=dtype, rank=rank, local_rank=local_rank, world_size=world, ddp=ddp)


def model_config(cfg: TrainConfig, corpus_vocab: int, causal: bool = True) -> GPTConfig:
    # Padding the vocabulary to a multiple of 64 keeps the output matmul on fast tile sizes.
    vocab = cfg.vocab_size or 64 * math.ceil(corpus_vocab / 64)
    if vocab < corpus_vocab:
        raise DataError(f"the corpus vocabulary ({corpus_vocab} tokens) is larger than the model's "
                        f"vocab_size={vocab}")
    return GPTConfig(vocab_size=vocab, block_size=cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                     n_embd=cfg.n_embd, dropout=cfg.dropout, bias=cfg.bias, causal=causal)


def build_model(gcfg: GPTConfig, seed: int) -> GPT:
    torch.manual_seed(seed)  # same seed, same initial weights
    return GPT(gcfg)


def lm_loss(model, batch, rt: Runtime):
    """Next-token loss of one (x, y) micro-batch."""
    x, y = batch
    if rt.device_type == "cuda":
        x = x.pin_memory().to(rt.device, non_blocking=True)
        y = y.pin_memory().to(rt.device, non_blocking=True)
    with rt.autocast():
        _, loss = model(x, y)
    return loss


# ---------------------------------------------------------------------------- the loop
def _rng_state(rt: Runtime) -> dict:
    state = {"torch": torch.get_rng_state()}
    if rt.device_type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(rt.device)
    return state


def _set_rng_state(state: dict, rt: Runtime):
    torch.set_rng_state(state["torch"])
    if rt.device_type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], rt.device)


def _gather(obj, rt: Runtime) -> list:
    if not rt.ddp:
        return [obj]
    out = [None] * rt.world_size
    torch.distributed.all_gather_object(out, obj)
    return out


class _Progress:
    """A tqdm bar on a terminal, a log line every 10 steps otherwise."""

    def __init__(self, enabled: bool, total: int, initial: int):
        self.bar = None
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def update(self, rec: dict, total: int):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{rec['loss']:.4f}", tok_s=f"{rec['tokens_per_s']:,.0f}")
        elif rec["step"] % 10 == 0 or rec["step"] == total:
            mfu = f" | mfu {rec['mfu'] * 100:.1f}%" if rec.get("mfu") is not None else ""
            print(f"step {rec['step']}/{total} | loss {rec['loss']:.4f} | lr {rec['lr']:.2e} | "
                  f"{rec['tokens_per_s']:,.0f} tok/s{mfu}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def fit(cfg: TrainConfig, run_dir: Path, model: torch.nn.Module, batches, rt: Runtime,
        compute_loss: Callable = lm_loss, resume: dict | None = None, on_checkpoint: Callable | None = None,
        checkpoint_extra: dict | None = None, save_final: bool = True) -> dict:
    """Optimise `model` on `batches` (an object with next_batch / state_dict / load_state_dict)
    for cfg.max_steps optimizer steps, starting from `resume` (a loaded checkpoint) if given."""
    raw = model.to(rt.device)
    optimizer = make_adamw(raw, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), rt.device_type)
    start_step, tokens_seen = 0, 0
    if resume is not None:
        raw.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        states = resume["data"]
        if len(states) != rt.world_size:
            raise CheckpointError(f"checkpoint was written by {len(states)} ranks, this run has {rt.world_size}")
        batches.load_state_dict(states[rt.rank])
        start_step, tokens_seen = int(resume["step"]), int(resume["tokens_seen"])
        rngs = resume["rng"]
        _set_rng_state(rngs[rt.rank] if rt.rank < len(rngs) else rngs[0], rt)

    net = raw
    if cfg.compile:
        net = torch.compile(raw)
    if rt.ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(net, device_ids=[rt.device.index] if rt.device_type == "cuda" else None)

    if cfg.grad_accum % rt.world_size:
        raise ValueError(f"grad_accum={cfg.grad_accum} must be a multiple of the {rt.world_size} ranks")
    micro_steps = cfg.grad_accum // rt.world_size
    decay_steps = cfg.decay_steps or cfg.max_steps
    flops_per_step = raw.flops_per_token() * cfg.tokens_per_step if hasattr(raw, "flops_per_token") else None
    peak = cfg.peak_flops or (peak_flops_for(torch.cuda.get_device_name(rt.device))
                              if rt.device_type == "cuda" else None)

    log = MetricsLog(run_dir / "metrics.jsonl", resume_step=start_step if resume else None) if rt.master else None
    bar = _Progress(cfg.progress and rt.master, cfg.max_steps, start_step)
    last_ckpt = None
    rates = []

    def checkpoint(step: int):
        nonlocal last_ckpt
        data_states = _gather(batches.state_dict(), rt)
        rng_states = _gather(_rng_state(rt), rt)
        if rt.master:
            state = {
                "step": step, "tokens_seen": tokens_seen,
                "model": raw.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": {"kind": "warmup-cosine", "lr": cfg.lr, "min_lr": cfg.min_lr,
                             "warmup_steps": cfg.warmup_steps, "decay_steps": decay_steps},
                "rng": rng_states, "data": data_states,
                "model_config": raw.config.to_dict(), "train_config": asdict(cfg),
                **(checkpoint_extra or {}),
            }
            last_ckpt = save_checkpoint(state, run_dir, step, keep=cfg.keep_checkpoints)
            if on_checkpoint:
                on_checkpoint(step, last_ckpt)

    raw.train()
    t_start = time.perf_counter()
    # Step time is measured end to end, from the previous logged step to this one, so it
    # includes data loading, logging and any checkpoint in between (as nanoGPT measures).
    t_last, steps_since_log = t_start, 0
    step = start_step
    loss_value = float("nan")
    for step in range(start_step + 1, cfg.max_steps + 1):
        steps_since_log += 1
        lr = lr_at(step - 1, cfg.lr, cfg.min_lr, cfg.warmup_steps, decay_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=rt.device)
        for micro in range(micro_steps):
            batch = batches.next_batch()
            # Under DDP, gradients are all-reduced only on the last micro-batch.
            sync = contextlib.nullcontext() if (not rt.ddp or micro == micro_steps - 1) else net.no_sync()
            with sync:
                loss = compute_loss(net, batch, rt) / micro_steps
                loss.backward()
            loss_sum += loss.detach()
        grad_norm = None
        if cfg.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += cfg.tokens_per_step

        if step % cfg.log_every == 0 or step == cfg.max_steps:
            if rt.ddp:
                torch.distributed.all_reduce(loss_sum, op=torch.distributed.ReduceOp.AVG)
            loss_value = float(loss_sum)  # synchronises the device, once per logged step
            now = time.perf_counter()
            dt = (now - t_last) / steps_since_log
            t_last, steps_since_log = now, 0
            rate = cfg.tokens_per_step / dt
            rates.append(rate)
            rec = {"step": step, "loss": loss_value, "lr": lr, "tokens": tokens_seen, "tokens_per_s": rate,
                   "dt_ms": dt * 1000, "grad_norm": grad_norm}
            if peak and flops_per_step:
                rec["mfu"] = flops_per_step / dt / (peak * rt.world_size)
            if hasattr(batches, "epoch"):
                rec["epoch"] = batches.epoch
            if log:
                log.write(rec)
            bar.update(rec, cfg.max_steps)
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss became {loss_value} at step {step}; lower the learning rate")
        if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or (save_final and step == cfg.max_steps):
            checkpoint(step)
    bar.close()
    if log:
        log.close()
    seconds = time.perf_counter() - t_start
    if resume is not None and start_step >= cfg.max_steps:
        last_ckpt = latest_checkpoint(run_dir)
    rates_sorted = sorted(rates[1:] or rates)  # the first step pays for warm-up (and compilation)
    return {
        "steps": step, "start_step": start_step, "final_loss": loss_value if rates else None,
        "tokens_seen": tokens_seen, "seconds": seconds,
        "median_tokens_per_s": rates_sorted[len(rates_sorted) // 2] if rates_sorted else None,
        "checkpoint": str(last_ckpt) if last_ckpt else None,
    }


# ---------------------------------------------------------------------------- train()
def _check_resume(ckpt: dict, path: Path, cfg: TrainConfig, provenance: dict):
    old = ckpt.get("train_config", {})
    diffs = [f"{k}: checkpoint {old.get(k)!r}, now {getattr(cfg, k)!r}" for k in IDENTITY_FIELDS
             if k in old and old.get(k) != getattr(cfg, k)]
    if diffs:
        raise CheckpointError(f"cannot resume {path}: settings differ ({'; '.join(diffs)}); "
                              f"use the same settings or a new --out folder")
    corpus = ckpt.get("corpus", {})
    if corpus.get("tokenizer_sha256") and corpus["tokenizer_sha256"] != provenance["tokenizer_sha256"]:
        raise DataError(f"tokenizer mismatch: {path} was trained with tokenizer sha256 "
                        f"{corpus['tokenizer_sha256'][:12]}…, {provenance['data_dir']}/tokenizer.json is "
                        f"{provenance['tokenizer_sha256'][:12]}…")


def train(data_dir, out_dir, preset: str = "cpu-tiny", max_steps: int | None = None, **overrides) -> dict:
    """Train (or resume) a run in out_dir on the corpus in data_dir; returns a summary dict.

    Every check (corpus files, tokenizer, vocabulary, checkpoint, settings) happens before
    the first step, so bad input fails in seconds with a message naming the file. One
    trainer at a time per run folder: a second one exits naming the holder.
    """
    cfg = make_config(preset, max_steps=max_steps, **overrides)
    run_dir = Path(out_dir)
    with contextlib.ExitStack() as held:
        if int(os.environ.get("RANK", 0)) == 0:  # the master writes run.json and checkpoints
            held.enter_context(hold_run_folder(run_dir))
        return _train(data_dir, run_dir, preset, cfg)


@contextlib.contextmanager
def hold_run_folder(run_dir: Path):
    """An exclusive lock on RUN_DIR/.lock for this process (released when it ends, even by a kill)."""
    import fcntl
    import socket

    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise CheckpointError(f"{run_dir} is being trained by {lock.read().strip() or 'another process'}; "
                                  "wait for it or use another --out") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        lock.flush()
        yield


def _train(data_dir, run_dir: Path, preset: str, cfg: TrainConfig) -> dict:
    corpus = open_corpus(data_dir)
    provenance = corpus.provenance()
    gcfg = model_config(cfg, corpus.vocab_size)
    check_vocabulary(corpus.train + corpus.val, gcfg.vocab_size)
    if cfg.vocab_size is None:
        cfg = dataclasses.replace(cfg, vocab_size=gcfg.vocab_size)

    resume, ckpt_path = None, latest_checkpoint(run_dir)
    if ckpt_path is not None:
        resume = load_checkpoint(ckpt_path)
        _check_resume(resume, ckpt_path, cfg, provenance)

    rt = setup_runtime(cfg)
    batches = stream = TrainSequences(corpus.train, cfg.block_size, cfg.batch_size, cfg.seed, gcfg.vocab_size,
                                      rank=rt.rank, world_size=rt.world_size, window_tokens=cfg.shuffle_window_tokens,
                                      mix=parse_mix(cfg.mix))
    if cfg.objective == "mlm":  # masked LM: encoder + masked batches (model/mlm.py), same loop
        from model.mlm import mlm_model_and_batches

        gcfg, model, batches = mlm_model_and_batches(cfg, corpus, gcfg, batches)
    else:
        model = build_model(gcfg, cfg.seed)
    run_info = RunRecord(
        status="running", preset=preset, config=asdict(cfg), model=gcfg.to_dict(), n_params=model.num_params(),
        corpus=provenance, world_size=rt.world_size, device=str(rt.device),
        dtype=str(rt.dtype).replace("torch.", ""), torch=torch.__version__, started_at=_now(),
        resumed_from_step=int(resume["step"]) if resume else None,
    )
    if rt.master:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in (run_dir / "checkpoints").glob(".tmp-*"):  # left by a run killed mid-write
            stale.unlink(missing_ok=True)
        run_info.write(run_dir / RunRecord.file_name)
    extra = {"corpus": {k: provenance[k] for k in ("tokenizer_sha256", "manifest_sha256", "recipe_hash")}}
    summary = fit(cfg, run_dir, model, batches, rt, resume=resume, checkpoint_extra=extra)
    if rt.master:
        plot_loss(run_dir / "metrics.jsonl", run_dir / "loss.png")
        run_info = run_info.model_copy(update=dict(
            status="finished", final_step=summary["steps"], tokens_seen=summary["tokens_seen"],
            final_loss=summary["final_loss"], median_tokens_per_s=summary["median_tokens_per_s"],
            checkpoint=summary["checkpoint"], finished_at=_now(),
            mixture={"weights": stream.mix, "tokens": stream.consumed, "ranks": rt.world_size}))
        run_info.write(run_dir / RunRecord.file_name)
    if rt.ddp:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return {"run_dir": str(run_dir), "n_params": run_info.n_params, **summary}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="opencorpus train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="corpus folder (with tokens/ and tokenizer.json)")
    p.add_argument("--out", required=True, help="run folder; an existing one is resumed")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS), help="settings to start from (default cpu-tiny)")
    p.add_argument("--eval", action="store_true", help="evaluate on tokens/val/ after training")
    add_options(p)  # every TrainConfig field, from model/config.py
    return p


def main(argv=None, defaults: dict | None = None) -> int:
    """`defaults`: settings below the command line's (a recipe's `train:` section, preset included)."""
    args = build_parser().parse_args(argv)
    options = {**(defaults or {}), **given_options(args)}
    preset = args.preset or options.pop("preset", None) or "cpu-tiny"
    options.pop("preset", None)
    try:
        summary = train(args.data, args.out, preset=preset, **options)
        if args.eval and int(os.environ.get("RANK", 0)) == 0:
            from model.evaluate import evaluate

            summary["eval"] = {k: v for k, v in evaluate(args.out, args.data).items() if k != "samples"}
    except (DataError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
