"""Training settings: the one place where every option, its default, its help and the presets live.

`TrainConfig` is a plain dataclass (no torch import, so the command line starts fast).
Everything else derives from it, as nanoGPT's single override mechanism does:

    opencorpus train --FLAG VALUE        flags generated from the fields (`add_options`)
    recipe `train:` section              the same names, checked by `make_config`
    opencorpus finetune / task files     the trainer options they share take their help
                                         and checks from here (model/tasks.py)

A new option is one line in `TrainConfig`; it is then a flag, a recipe key and a field of
run.json. Precedence: preset, then the recipe's `train:`, then the command line.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field


def option(default, help: str, choices: tuple | None = None):
    """A TrainConfig field: its default, the help its flag shows, and the values it takes."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    # model
    n_layer: int = option(4, "transformer blocks")
    n_head: int = option(4, "attention heads per block")
    n_embd: int = option(256, "model width")
    block_size: int = option(256, "context length in tokens")
    dropout: float = option(0.0, "dropout in the blocks")
    bias: bool = option(False, "biases in linear layers and layer norms")
    vocab_size: int | None = option(None, "model vocabulary (default: the corpus's, rounded up to a multiple of 64)")
    # data
    batch_size: int = option(16, "sequences per micro-batch per rank")
    grad_accum: int = option(1, "micro-batches per optimizer step, over all ranks (divided among them)")
    seed: int = option(1337, "initial weights and data order")
    shuffle_window_tokens: int = option(1 << 27, "shards are shuffled together in windows of this many tokens")
    mix: str | None = option(None, "source weights, 'wiki=2,web=0.5': above 1 repeats a source's training documents, "
                                   "below 1 samples them, per epoch, seeded (a recipe's mix: section)")
    # optimisation
    max_steps: int = option(250, "optimizer steps")
    lr: float = option(1e-3, "peak learning rate (warmup, then cosine to min_lr)")
    min_lr: float = option(1e-4, "final learning rate")
    warmup_steps: int = option(20, "linear warmup steps")
    decay_steps: int | None = option(None, "step where the cosine reaches min_lr (default: max_steps)")
    weight_decay: float = option(0.1, "AdamW weight decay on matrices")
    beta1: float = option(0.9, "AdamW beta1")
    beta2: float = option(0.95, "AdamW beta2")
    grad_clip: float = option(1.0, "gradient norm clip (0 disables)")
    # runtime
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    dtype: str = option("auto", "auto: bf16 on a GPU that has it, else fp32", ("auto", "float32", "bfloat16"))
    compile: bool = option(False, "torch.compile the model")
    threads: int | None = option(None, "torch CPU threads (default: torch's)")
    # bookkeeping
    checkpoint_every: int = option(100, "steps between checkpoints (and one at the end)")
    keep_checkpoints: int = option(2, "checkpoints kept on disk")
    log_every: int = option(1, "steps between metrics lines")
    progress: bool = option(True, "a progress line on the terminal")
    peak_flops: float | None = option(None, "peak FLOP/s per device, for MFU (default: looked up from the GPU name)")
    eval_tokens: int | None = option(262_144, "validation tokens `opencorpus eval` reads (None: all)")
    eval_batch_size: int = option(16, "sequences per evaluation batch")
    # objective (masked LM lives in model/mlm.py and model/encoder.py)
    objective: str = option("clm", "clm: next-token decoder; mlm: masked-LM encoder (needs <|mask|>)", ("clm", "mlm"))
    positions: str = option("learned", "mlm encoder positions", ("learned", "rope"))

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.block_size * self.grad_accum


# Presets: the CPU one is sized so `make train` on the default corpus (train + eval) ends
# in a few minutes on 2 cores; gpt2-124m is GPT-2 small with a 0.5M-token batch.
PRESETS: dict[str, dict] = {
    "cpu-tiny": dict(n_layer=4, n_head=4, n_embd=256, block_size=256, batch_size=16, grad_accum=1,
                     max_steps=250, lr=1e-3, min_lr=1e-4, warmup_steps=20, checkpoint_every=100),
    "gpu-small": dict(n_layer=6, n_head=6, n_embd=384, block_size=512, batch_size=64, grad_accum=1,
                      max_steps=2000, lr=1e-3, min_lr=1e-4, warmup_steps=100, checkpoint_every=500,
                      compile=True, eval_tokens=2_097_152, eval_batch_size=64),
    "gpt2-124m": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, batch_size=16, grad_accum=32,
                      max_steps=5000, lr=6e-4, min_lr=6e-5, warmup_steps=700, checkpoint_every=500,
                      compile=True, eval_tokens=10_485_760, eval_batch_size=32),
}

# Settings that change what a checkpoint means: a resumed run must keep them.
IDENTITY_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size", "batch_size",
                   "grad_accum", "seed", "shuffle_window_tokens", "mix", "objective", "positions")
FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def make_config(preset: str = "cpu-tiny", **overrides) -> TrainConfig:
    """The preset's values, then `overrides` (None means: keep the preset's); unknown names,
    and values outside an option's choices, are errors naming them."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown training settings {unknown}; known: {sorted(FIELDS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    if values.get("mix") is not None:
        values["mix"] = format_mix(parse_mix(values["mix"]))  # checked, and one spelling per mixture
    for name, value in values.items():
        choices = FIELDS[name].metadata.get("choices")
        if choices and value not in choices:
            raise ValueError(f"training setting {name}={value!r}: choose one of {list(choices)}")
    return TrainConfig(**values)


def parse_mix(text: str | dict | None) -> dict[str, float]:
    """Source weights from 'name=w,name=w' (or a dict): every weight a number >= 0."""
    if not text:
        return {}
    pairs = text.items() if isinstance(text, dict) else (
        item.split("=", 1) if "=" in item else (item, None) for item in str(text).split(",") if item.strip())
    out = {}
    for name, weight in pairs:
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"mix: {name.strip()!r} needs a weight, as in 'name=2' (got {weight!r})") from None
        if not w >= 0:
            raise ValueError(f"mix: the weight of {name.strip()!r} must be >= 0, got {weight!r}")
        out[name.strip()] = w
    return out


def format_mix(weights: dict[str, float]) -> str | None:
    """The TrainConfig string of a recipe's `mix:` section (sorted, so equal mixes are equal strings)."""
    return ",".join(f"{k}={v:g}" for k, v in sorted(weights.items())) or None


def help_of(name: str) -> str:
    return FIELDS[name].metadata["help"]


# ---------------------------------------------------------------- command-line flags


def _value_type(name: str) -> type:
    """int for `int | None`, and so on."""
    annotation = typing.get_type_hints(TrainConfig)[name]
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if isinstance(annotation, types.UnionType) else []
    return args[0] if args else annotation


def add_options(parser: argparse.ArgumentParser, names=None, defaults: dict | None = None) -> None:
    """Add `--kebab-name` flags for TrainConfig fields (all of them, or `names`). Flags default
    to None, meaning "not given", so a preset or recipe value is not overridden by accident;
    `defaults` shows another default in the help (fine-tuning's own)."""
    for name in names or FIELDS:
        f = FIELDS[name]
        kind = _value_type(name)
        default = (defaults or {}).get(name, f.default)
        help_text = f"{f.metadata['help']} (default {default})"
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, type=kind, default=None, choices=f.metadata.get("choices"),
                                help=help_text)


def given_options(args: argparse.Namespace, names=None) -> dict:
    """The TrainConfig values (of `names`, default all) a command line set; flags left out are not in the dict."""
    names = set(names or FIELDS)
    return {k: v for k, v in vars(args).items() if k in names and v is not None}
