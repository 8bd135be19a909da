"""Fine-tune a pretrained run for text classification; optionally the same model from scratch.

    opencorpus finetune RUN_DIR --task TASK.yaml --out FT_DIR [--from-scratch] [--seed N]
    python -m model.finetune RUN_DIR --task TASK.yaml --out FT_DIR ...

A linear head reads one vector per example from the pretrained network: for an encoder
(masked-LM run) the mean of the hidden states over the real tokens (or the first token),
for a decoder the hidden state of the last real token, the only one that has seen the
whole text. Inputs are `<eot> text <eot>`, pairs `<eot> a <eot> b <eot>` (end-of-text
is what separates documents in pretraining), cut to `max_len` by trimming the longer text.

Training is the trainer's own loop (`model.train.fit`: same logging, metrics.jsonl,
checkpoints, exact resume when the same command is run again, bf16 on GPU). The head and
the whole network are trained; the schedule is warmup then cosine.

`--from-scratch` also trains the same architecture from random weights with the same
seed, data order and settings into FT_DIR/scratch/, and FT_DIR/eval.json and report.md
give both and their difference: what the pretraining corpus bought on this task.

FT_DIR: eval.json, report.md, confusion_test.png / .json, metrics.jsonl, loss.png,
finetune.json (settings and provenance), checkpoints/; and scratch/ with the same files.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from model.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from model.config import given_options, make_config
from model.data import DataError
from model.encoder import backbone_from_config, is_encoder_config
from model.tasks import TRAINER_FLAGS, TaskData, TaskError, add_finetune_arguments, load_task, load_task_data
from pipeline.io import atomic_path, sha256_file, write_json, write_text
from pipeline.records import FinetuneRecord, RecordError, RunRecord, TokenIndex


# ---------------------------------------------------------------------------- the model
@dataclass
class ClassifierConfig:
    backbone: dict  # the pretrained run's model_config (GPTConfig or EncoderConfig fields)
    n_classes: int
    pooling: str  # first | mean | last
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


def pool(h: torch.Tensor, lengths: torch.Tensor, how: str) -> torch.Tensor:
    """(B, T, C) hidden states of right-padded rows -> (B, C)."""
    if how == "first":
        return h[:, 0]
    if how == "last":
        return h[torch.arange(h.size(0), device=h.device), lengths - 1]
    if how == "mean":
        real = (torch.arange(h.size(1), device=h.device)[None, :] < lengths[:, None]).to(h.dtype)
        return (h * real[..., None]).sum(1) / lengths[:, None].to(h.dtype)
    raise ValueError(f"unknown pooling {how!r}")


class Classifier(nn.Module):
    """A pretrained (or freshly initialised) backbone plus dropout and a linear head."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.config = cfg
        self.backbone = backbone_from_config(cfg.backbone)
        self.encoder = is_encoder_config(cfg.backbone)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.backbone["n_embd"], cfg.n_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx, lengths, labels=None):
        attn_mask = None
        if self.encoder:
            # Padding keys are hidden from every query; a decoder needs no mask with right padding.
            real = torch.arange(idx.size(1), device=idx.device)[None, :] < lengths[:, None]
            attn_mask = None if bool(real.all()) else real[:, None, None, :]
        h = self.backbone.hidden_states(idx, attn_mask)
        logits = self.head(self.drop(pool(h, lengths, self.config.pooling)))
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return logits, loss


def classification_loss(model, batch, rt):
    """The loss `model.train.fit` minimises for fine-tuning: one (ids, lengths, labels) batch."""
    idx, lengths, labels = (t.to(rt.device, non_blocking=True) for t in batch)
    with rt.autocast():
        _, loss = model(idx, lengths, labels)
    return loss


# ---------------------------------------------------------------------------- encoding
def encode_examples(tokenizer, ex, eot_id: int, max_len: int) -> list[np.ndarray]:
    """Token ids per example: <eot> a <eot> [b <eot>], the longer text trimmed to fit max_len."""
    tokenizer.encode_special_tokens = True  # a literal "<|endoftext|>" in a text is text
    a = [e.ids for e in tokenizer.encode_batch(ex.text_a, add_special_tokens=False)]
    b = ([e.ids for e in tokenizer.encode_batch(ex.text_b, add_special_tokens=False)]
         if ex.text_b is not None else None)
    out = []
    for i, ta in enumerate(a):
        if b is None:
            ids = [eot_id] + ta[: max_len - 2] + [eot_id]
        else:
            tb, budget = b[i], max_len - 3
            while len(ta) + len(tb) > budget:  # longest-first truncation
                if len(ta) >= len(tb):
                    ta = ta[:-1]
                else:
                    tb = tb[:-1]
            ids = [eot_id] + ta + [eot_id] + tb + [eot_id]
        out.append(np.asarray(ids, dtype=np.int64))
    return out


def collate(seqs: list[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, L) ids and their lengths; L is rounded up to a multiple of 8."""
    lengths = np.array([s.size for s in seqs], dtype=np.int64)
    L = int(-(-lengths.max() // 8) * 8)
    ids = np.full((len(seqs), L), pad_id, dtype=np.int64)
    for r, s in enumerate(seqs):
        ids[r, : s.size] = s
    return torch.from_numpy(ids), torch.from_numpy(lengths)


class ClassificationBatches:
    """Endless, seeded, resumable batches of (ids, lengths, labels) over the training split."""

    def __init__(self, seqs: list[np.ndarray], labels: np.ndarray, batch_size: int, seed: int, pad_id: int,
                 max_len: int):
        self.seqs, self.labels, self.B, self.seed, self.pad_id = seqs, labels, batch_size, seed, pad_id
        self.max_len = max_len
        self.epoch, self.cursor = 0, 0
        self._order: tuple[int, np.ndarray] | None = None

    def _perm(self) -> np.ndarray:
        if self._order is None or self._order[0] != self.epoch:
            self._order = (self.epoch, np.random.default_rng([self.seed, 0x6674, self.epoch]).permutation(len(self.seqs)))
        return self._order[1]

    def next_batch(self):
        picks = []
        while len(picks) < self.B:
            order = self._perm()
            take = order[self.cursor: self.cursor + self.B - len(picks)]
            picks.extend(take.tolist())
            self.cursor += take.size
            if self.cursor >= order.size:
                self.epoch, self.cursor = self.epoch + 1, 0
        ids, lengths = collate([self.seqs[i] for i in picks], self.pad_id)
        return ids, lengths, torch.from_numpy(self.labels[picks])

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed, "n": len(self.seqs)}

    def load_state_dict(self, s: dict):
        if s["seed"] != self.seed or s["n"] != len(self.seqs):
            raise CheckpointError(f"data position was saved for seed={s['seed']} over {s['n']} examples; "
                                  f"this run has seed={self.seed} over {len(self.seqs)}")
        self.epoch, self.cursor, self._order = s["epoch"], s["cursor"], None


# ---------------------------------------------------------------------------- metrics
def confusion_matrix(gold: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """counts[i, j] = examples of true class i predicted as j."""
    return np.bincount(gold * n + pred, minlength=n * n).reshape(n, n)


def classification_metrics(gold: np.ndarray, pred: np.ndarray, label_names: list[str]) -> dict:
    n = len(label_names)
    cm = confusion_matrix(gold, pred, n)
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1).astype(float), cm.sum(0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0)
    present = support > 0  # macro-F1 over the classes the split contains
    majority = float(support.max() / support.sum()) if support.sum() else 0.0
    return {
        "examples": int(cm.sum()),
        "accuracy": float(tp.sum() / max(1, cm.sum())),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "majority_class_accuracy": majority,
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(support[i])} for i, name in enumerate(label_names)},
        "confusion_matrix": cm.tolist(),
        "labels": list(label_names),
    }


def plot_confusion(cm: list[list[int]], labels: list[str], png_path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    n = len(labels)
    size = min(16, 3 + 0.25 * n)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    rows = cm.sum(1, keepdims=True)
    ax.imshow(np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90 if n > 8 else 0, fontsize=8 if n > 20 else 10)
    ax.set_yticks(range(n), labels, fontsize=8 if n > 20 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 20:  # counts are readable only on small matrices
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if rows[i, 0] and cm[i, j] / rows[i, 0] > 0.5 else "black")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return png_path


@torch.no_grad()
def predict(model: Classifier, seqs: list[np.ndarray], pad_id: int, batch_size: int, rt) -> np.ndarray:
    model.eval()
    # Sorting by length keeps padding (and wasted compute) small; predictions go back in order.
    order = np.argsort([s.size for s in seqs], kind="stable")
    pred = np.empty(len(seqs), dtype=np.int64)
    for s in range(0, len(seqs), batch_size):
        idx = order[s: s + batch_size]
        ids, lengths = collate([seqs[i] for i in idx], pad_id)
        with rt.autocast():
            logits, _ = model(ids.to(rt.device), lengths.to(rt.device))
        pred[idx] = logits.argmax(-1).cpu().numpy()
    model.train()
    return pred


# ---------------------------------------------------------------------------- the run
@dataclass
class Pretrained:
    run_dir: Path
    checkpoint: Path
    state: dict
    run_info: RunRecord
    tokenizer_path: Path
    pad_id: int
    eot_id: int

    @property
    def model_config(self) -> dict:
        return self.state["model_config"]

    @property
    def objective(self) -> str:
        return "mlm" if is_encoder_config(self.model_config) else "clm"


def load_pretrained(run_dir, data_dir=None) -> Pretrained:
    """The run's latest checkpoint and the tokenizer of the corpus it was trained on."""
    run_dir = Path(run_dir)
    path = latest_checkpoint(run_dir)
    if path is None:
        raise CheckpointError(f"no checkpoint in {run_dir / 'checkpoints'}: train the run first")
    state = load_checkpoint(path)
    if "n_classes" in state["model_config"]:
        raise CheckpointError(f"{run_dir} is a fine-tuned classifier; fine-tune from a pretrained run")
    try:
        info = RunRecord.load(run_dir / RunRecord.file_name)
    except RecordError as e:
        raise CheckpointError(str(e)) from None
    data_dir = Path(data_dir or info.corpus.data_dir or "")
    tok_path = data_dir / "tokenizer.json"
    if not tok_path.is_file():
        raise DataError(f"the tokenizer of {run_dir}'s corpus is not at {tok_path}; pass the corpus folder (--data)")
    want = (state.get("corpus") or {}).get("tokenizer_sha256")
    if want and want != sha256_file(tok_path):
        raise DataError(f"tokenizer mismatch: {run_dir} was trained with tokenizer sha256 {want[:12]}…, "
                        f"{tok_path} differs")
    try:
        index = TokenIndex.load(data_dir / TokenIndex.file_name)
    except RecordError as e:
        raise DataError(str(e)) from None
    eot_id, pad_id = index.eot_id, index.pad_id
    if eot_id is None:
        raise DataError(f"{tok_path} has no <|endoftext|> token")
    return Pretrained(run_dir, path, state, info, tok_path, eot_id if pad_id is None else pad_id, eot_id)


def _trainer_config(task, model_cfg: dict, n_train: int, seed: int, device, progress: bool):
    s = task.finetune
    steps = s.max_steps or max(1, math.ceil(s.epochs * n_train / s.batch_size))
    return make_config(
        "cpu-tiny", n_layer=model_cfg["n_layer"], n_head=model_cfg["n_head"], n_embd=model_cfg["n_embd"],
        block_size=min(s.max_len, model_cfg["block_size"]), vocab_size=model_cfg["vocab_size"],
        batch_size=s.batch_size, grad_accum=1, seed=seed, max_steps=steps, lr=s.lr,
        min_lr=s.lr / 10 if s.min_lr is None else s.min_lr, warmup_steps=max(1, int(s.warmup_fraction * steps)),
        weight_decay=s.weight_decay, checkpoint_every=s.checkpoint_every, keep_checkpoints=2,
        device=device or "auto", progress=progress, log_every=1,
    )


def _train_one(init: str, pre: Pretrained, data: TaskData, encoded: dict, out: Path, seed: int, device,
               progress: bool) -> dict:
    """Fine-tune one initialisation into `out`; resumes from out/checkpoints when present."""
    from model.train import fit, setup_runtime

    task, s = data.task, data.task.finetune
    pooling = s.pooling if s.pooling != "auto" else ("mean" if pre.objective == "mlm" else "last")
    ccfg = ClassifierConfig(backbone=dict(pre.model_config), n_classes=len(data.label_names), pooling=pooling,
                            dropout=s.dropout)
    cfg = _trainer_config(task, pre.model_config, len(encoded["train"]), seed, device, progress)
    identity = {"task": task.name, "task_fingerprint": task.fingerprint(), "init": init, "seed": seed,
                "pretrained_checkpoint_sha256": sha256_file(pre.checkpoint), "labels": data.label_names,
                "pooling": pooling}

    resume, ckpt_path = None, latest_checkpoint(out)
    if ckpt_path is not None:
        resume = load_checkpoint(ckpt_path)
        old = resume.get("finetune") or {}
        diffs = [f"{k}: checkpoint {old.get(k)!r}, now {v!r}" for k, v in identity.items() if old.get(k) != v]
        if diffs:
            raise CheckpointError(f"cannot resume {ckpt_path}: {'; '.join(diffs)}; use a new --out folder")

    torch.manual_seed(seed)  # the head (and, from scratch, the whole network) starts from this seed
    model = Classifier(ccfg)
    if init == "pretrained":
        model.backbone.load_state_dict(pre.state["model"])
    rt = setup_runtime(cfg)
    labels_train = data.label_ids("train")
    batches = ClassificationBatches(encoded["train"], labels_train, s.batch_size, seed, pre.pad_id, cfg.block_size)

    out.mkdir(parents=True, exist_ok=True)
    info = {"status": "running", "init": init, **identity, "pretrained_run": str(pre.run_dir),
            "pretrained_checkpoint": str(pre.checkpoint), "objective": pre.objective,
            "corpus": pre.run_info.corpus.data_dir, "settings": s.model_dump(),
            "trainer": asdict(cfg), "splits": data.summary(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(info, out / "finetune.json")
    summary = fit(cfg, out, model, batches, rt, compute_loss=classification_loss, resume=resume,
                  checkpoint_extra={"finetune": identity})

    from model.metrics import plot_loss

    plot_loss(out / "metrics.jsonl", out / "loss.png")
    result = {"init": init, "seed": seed, "pooling": pooling, "steps": summary["steps"],
              "train_seconds": summary["seconds"],
              "final_train_loss": summary["final_loss"], "checkpoint": summary["checkpoint"]}
    for split in ("validation", "test"):
        pred = predict(model, encoded[split], pre.pad_id, s.eval_batch_size, rt)
        m = classification_metrics(data.label_ids(split), pred, data.label_names)
        result[split] = m
    write_json({"labels": data.label_names, "matrix": result["test"]["confusion_matrix"],
                "rows": "true class", "columns": "predicted class"}, out / "confusion_test.json")
    plot_confusion(result["test"]["confusion_matrix"], data.label_names, out / "confusion_test.png",
                   f"{task.name} test ({init}, seed {seed})")
    info.update(status="finished", finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    write_json(info, out / "finetune.json")
    return result


def finetune(run_dir, task, out_dir, from_scratch: bool = False, seed: int = 0, data_dir=None,
             device: str | None = None, progress: bool = True, **settings) -> dict:
    """Fine-tune `run_dir` on a task (path of a task YAML, or a TaskConfig) into out_dir.

    `settings` override the task file's `finetune:` section (epochs, lr, batch_size, ...).
    Every check (task file, data, labels, run, tokenizer) happens before the first step.
    Returns what FT_DIR/eval.json holds.
    """
    from model.tasks import TaskConfig

    settings = {k: v for k, v in settings.items() if v is not None}
    if isinstance(task, TaskConfig):
        task = task.model_copy(update={"finetune": task.finetune.model_copy(update=settings)}) if settings else task
        task_file = None
    else:
        task_file = str(task)
        task = load_task(task, **settings)
    data = load_task_data(task)
    pre = load_pretrained(run_dir, data_dir)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(pre.tokenizer_path))
    max_len = min(task.finetune.max_len, pre.model_config["block_size"])
    encoded = {name: encode_examples(tok, ex, pre.eot_id, max_len) for name, ex in data.splits.items()}

    out = Path(out_dir)
    inits = ["pretrained"] + (["scratch"] if from_scratch else [])
    results = {init: _train_one(init, pre, data, encoded, out if init == "pretrained" else out / "scratch", seed,
                                device, progress) for init in inits}

    main = results["pretrained"]
    record = FinetuneRecord(
        task=task.name, task_file=task_file, task_fingerprint=task.fingerprint(), pretrained_run=str(pre.run_dir),
        pretrained_checkpoint=str(pre.checkpoint), objective=pre.objective,
        corpus=pre.run_info.corpus.model_dump(include={"data_dir", "manifest_sha256", "recipe_hash", "tokenizer_sha256"}),
        base_model=pre.run_dir.name, seeds={"finetune": seed, "split": task.split.seed}, labels=data.label_names,
        pairs=data.pairs, splits=data.summary(), settings=task.finetune.model_dump(),
        accuracy=main["test"]["accuracy"], macro_f1=main["test"]["macro_f1"],
        validation_accuracy=main["validation"]["accuracy"],
        majority_class_accuracy=main["test"]["majority_class_accuracy"], pretrained=main,
    )
    if from_scratch:
        sc = results["scratch"]
        record.scratch_accuracy = sc["test"]["accuracy"]
        record.accuracy_gain = main["test"]["accuracy"] - sc["test"]["accuracy"]
        record.scratch = sc
        record.pretraining_gain = {
            "accuracy": main["test"]["accuracy"] - sc["test"]["accuracy"],
            "macro_f1": main["test"]["macro_f1"] - sc["test"]["macro_f1"],
            "validation_accuracy": main["validation"]["accuracy"] - sc["validation"]["accuracy"],
            "seed": seed,
        }
    record.write(out / FinetuneRecord.file_name)
    report = record.model_dump(mode="json", exclude_none=True)  # what the CLI prints and the report shows
    write_text(render_report(report), out / "report.md")
    return report


# ---------------------------------------------------------------------------- report
def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_report(r: dict) -> str:
    corpus = r.get("corpus") or {}
    lines = [
        f"# Fine-tuning report: {r['task']}",
        "",
        f"Pretrained run `{r['pretrained_run']}` ({'masked-LM encoder' if r['objective'] == 'mlm' else 'decoder'}), "
        f"corpus `{corpus.get('data_dir')}` (manifest sha256 `{corpus.get('manifest_sha256')}`).",
        f"{len(r['labels'])} classes, {'text pairs' if r['pairs'] else 'single texts'}; "
        f"seed {r['seeds']['finetune']} (head init, data order, dropout), split seed {r['seeds']['split']}.",
        "",
        "| Split | Examples | Origin |",
        "|---|---|---|",
    ]
    for name, s in r["splits"].items():
        lines.append(f"| {name} | {s['examples']:,} | {s['origin']} |")
    lines += ["", "| Model | Val accuracy | Test accuracy | Test macro-F1 | Steps |", "|---|---|---|---|---|"]
    rows = [("pretrained", r["pretrained"])] + ([("from scratch", r["scratch"])] if "scratch" in r else [])
    for name, m in rows:
        lines.append(f"| {name} | {_pct(m['validation']['accuracy'])} | {_pct(m['test']['accuracy'])} | "
                     f"{_pct(m['test']['macro_f1'])} | {m['steps']} |")
    lines.append(f"| majority class | | {_pct(r['majority_class_accuracy'])} | | |")
    if "pretraining_gain" in r:
        g = r["pretraining_gain"]
        lines += ["", f"**What pretraining bought** (seed {g['seed']}): test accuracy "
                      f"{100 * g['accuracy']:+.1f} points, macro-F1 {100 * g['macro_f1']:+.1f} points "
                      f"(validation accuracy {100 * g['validation_accuracy']:+.1f}). One seed is one draw: "
                      f"run other seeds before trusting a gap of a few points."]
    s = r["settings"]
    lines += ["", "## Settings", "",
              f"epochs {s['epochs']}, max_steps {s['max_steps']}, batch {s['batch_size']}, lr {s['lr']} "
              f"(warmup {s['warmup_fraction']:.0%}, cosine), weight decay {s['weight_decay']}, dropout {s['dropout']}, "
              f"max_len {s['max_len']}, pooling {r['pretrained'].get('pooling', s['pooling'])}.",
              "", "## Confusion matrix (test, pretrained)", "", "![confusion](confusion_test.png)", ""]
    if "scratch" in r:
        lines += ["From scratch: ![confusion](scratch/confusion_test.png)", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="opencorpus finetune", description=__doc__.split("\n\n")[0])
    add_finetune_arguments(p)
    return p


def run_cli(args: argparse.Namespace) -> int:
    try:
        settings = given_options(args, TRAINER_FLAGS)  # flags given; the task file's finetune: below them
        device, progress = settings.pop("device", None), settings.pop("progress", True)
        r = finetune(args.run_dir, args.task, args.out, from_scratch=args.from_scratch, seed=args.seed,
                     data_dir=args.data, device=device, progress=progress, epochs=args.epochs, **settings)
    except (TaskError, DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shown = {k: r[k] for k in ("task", "accuracy", "macro_f1", "validation_accuracy", "majority_class_accuracy")}
    if "pretraining_gain" in r:
        shown["scratch_accuracy"] = r["scratch"]["test"]["accuracy"]
        shown["pretraining_gain"] = r["pretraining_gain"]
    print(json.dumps(shown, indent=2))
    return 0


def main(argv=None) -> int:
    return run_cli(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
