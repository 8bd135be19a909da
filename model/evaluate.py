"""Evaluate a run on its corpus's validation split; write RUN_DIR/eval.json and report.md.

    python -m model.evaluate RUN_DIR [--data DATA] [--max-tokens N]

Metrics, all over the same targets (every validation token after the first, or the first
`max_tokens` of them):
- val_loss: mean cross-entropy in nats per token;
- val_perplexity: exp(val_loss);
- val_bits_per_byte: total loss in bits divided by the UTF-8 bytes of the target text
  (the targets decoded with the corpus tokenizer), so corpora with different
  tokenizers compare. Special tokens decode to no bytes; their loss still counts.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from model.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from model.data import DataError, ValSequences, open_corpus
from model.encoder import backbone_from_config, is_encoder_config
from model.gpt import GPT
from model.metrics import plot_loss, read_metrics
from pipeline.io import write_text
from pipeline.records import CorpusRef, EvalRecord, RecordError, RunRecord

PROMPTS = ["The", "Once upon a time", "In the beginning", "def main():"]


def load_run_model(run_dir, device: str = "cpu") -> tuple[GPT, dict, RunRecord]:
    """(model in eval mode, checkpoint, run.json) of a run's latest checkpoint."""
    run_dir = Path(run_dir)
    ckpt_path = latest_checkpoint(run_dir)
    if ckpt_path is None:
        raise CheckpointError(f"no checkpoint in {run_dir / 'checkpoints'}: train first")
    ckpt = load_checkpoint(ckpt_path)
    model = backbone_from_config(ckpt["model_config"])  # a GPT, or an Encoder for masked-LM runs
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    try:
        info = RunRecord.load(run_dir / RunRecord.file_name)
    except RecordError as e:
        raise CheckpointError(str(e)) from None
    ckpt["path"] = str(ckpt_path)
    return model, ckpt, info


@torch.no_grad()
def val_loss_sum(model: GPT, val: ValSequences, batch_size: int, device) -> tuple[float, int]:
    """(summed loss in nats, number of targets) over the validation stream."""
    total, count = 0.0, 0
    autocast = (torch.autocast(device_type="cuda", dtype=torch.bfloat16)
                if torch.device(device).type == "cuda" else torch.autocast("cpu", enabled=False))
    for x, y in val.batches(batch_size):
        x, y = x.to(device), y.to(device)
        with autocast:
            logits, _ = model(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1), ignore_index=-100,
                               reduction="sum")
        total += float(loss)
        count += int((y != -100).sum())
    return total, count


def target_bytes(tokenizer, target_ids) -> int:
    """UTF-8 bytes of the target tokens' text, decoded in chunks (the stream is contiguous)."""
    ids = [int(i) for i in target_ids]
    n, chunk = 0, 65536
    for s in range(0, len(ids), chunk):
        n += len(tokenizer.decode(ids[s: s + chunk], skip_special_tokens=True).encode("utf-8"))
    return n


def sample_texts(model: GPT, tokenizer, eot_id: int, device, prompts=PROMPTS, max_new_tokens: int = 48,
                 seed: int = 1234) -> list[dict]:
    """Top-k samples from fixed prompts with a fixed seed: the same run gives the same text."""
    gen = torch.Generator(device=device).manual_seed(seed)
    # One-token steps of batch 1 are far too small to split across CPU threads: with two
    # threads each op waits for the other (15 ms instead of 0.04 ms per op when a core is busy).
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    try:
        return _samples(model, tokenizer, eot_id, device, prompts, max_new_tokens, gen)
    finally:
        torch.set_num_threads(threads)


def _samples(model, tokenizer, eot_id, device, prompts, max_new_tokens, gen) -> list[dict]:
    out = []
    for prompt in prompts:
        ids = tokenizer.encode(prompt).ids or [eot_id]
        idx = torch.tensor([ids], dtype=torch.long, device=device)
        res = model.generate(idx, max_new_tokens, temperature=0.8, top_k=40, stop_token=eot_id, generator=gen)
        new = res[0, len(ids):].tolist()
        if eot_id in new:
            new = new[: new.index(eot_id)]
        out.append({"prompt": prompt, "completion": tokenizer.decode(new)})
    return out


def corpus_section(corpus: CorpusRef) -> list[str]:
    """Report lines naming the corpus a run trained on (folder and hashes)."""
    return [
        "## Corpus",
        "",
        f"- folder: `{corpus.data_dir}`",
        f"- manifest sha256: `{corpus.manifest_sha256}`",
        f"- recipe hash: `{corpus.recipe_hash}`",
        f"- tokenizer sha256: `{corpus.tokenizer_sha256}`",
        "",
    ]


def training_section(info: RunRecord) -> list[str]:
    """Report lines with the run's optimisation settings (from run.json)."""
    c = info.config
    return ["## Training settings", "",
            f"batch {c['batch_size']} x grad_accum {c['grad_accum']} x context {c['block_size']}, "
            f"lr {c['lr']} -> {c['min_lr']} (warmup {c['warmup_steps']}, cosine), weight decay "
            f"{c['weight_decay']}, clip {c['grad_clip']}, seed {c['seed']}, device {info.device}, "
            f"dtype {info.dtype}.", ""]


def evaluate(run_dir, data_dir=None, max_tokens: int | None = -1, batch_size: int | None = None,
             device: str | None = None, samples: bool = True) -> dict:
    """Validation loss, perplexity and bits per byte of a run's latest checkpoint, plus samples.

    max_tokens=-1 uses the run's eval_tokens setting; None evaluates every validation token.
    """
    run_dir = Path(run_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, ckpt, info = load_run_model(run_dir, device)
    cfg = ckpt.get("train_config", {})
    data_dir = data_dir or info.corpus.data_dir
    if not data_dir:
        raise DataError(f"{run_dir} does not record its corpus folder; pass data_dir")
    corpus = open_corpus(data_dir, need_val=True)
    prov = corpus.provenance()
    trained_tok = (ckpt.get("corpus") or {}).get("tokenizer_sha256")
    if trained_tok and trained_tok != prov["tokenizer_sha256"]:
        raise DataError(f"tokenizer mismatch: {run_dir} was trained with tokenizer sha256 {trained_tok[:12]}…, "
                        f"{corpus.tokenizer_path} is {prov['tokenizer_sha256'][:12]}…")
    if corpus.vocab_size > model.config.vocab_size:
        raise DataError(f"the corpus vocabulary ({corpus.vocab_size}) is larger than the model's "
                        f"({model.config.vocab_size})")
    if max_tokens == -1:
        max_tokens = cfg.get("eval_tokens")
    batch_size = batch_size or cfg.get("eval_batch_size", 16)
    if is_encoder_config(ckpt["model_config"]):  # masked LM: masked-token loss and accuracy (model/mlm.py)
        from model.mlm import evaluate_mlm_run

        return evaluate_mlm_run(run_dir, model, ckpt, info, corpus, max_tokens, batch_size, device)

    t0 = time.perf_counter()
    val = ValSequences(corpus.val, model.config.block_size, model.config.vocab_size, max_tokens)
    loss_sum, n = val_loss_sum(model, val, batch_size, device)
    tok = corpus.tokenizer()
    n_bytes = target_bytes(tok, val.target_ids())
    val_loss = loss_sum / n
    record = EvalRecord(
        val_loss=val_loss, val_perplexity=math.exp(val_loss), val_bits_per_byte=loss_sum / math.log(2) / max(1, n_bytes),
        tokens_seen=int(ckpt.get("tokens_seen", 0)), step=int(ckpt["step"]), val_tokens=n, val_bytes=n_bytes,
        val_tokens_available=sum(s.n_tokens for s in corpus.val), checkpoint=ckpt["path"], n_params=model.num_params(),
        model=model.config.to_dict(), corpus=eval_corpus(prov),
        samples=sample_texts(model, tok, corpus.eot_id, device) if samples else None,
    )
    record.eval_seconds = time.perf_counter() - t0
    record.write(run_dir / EvalRecord.file_name)
    plot = plot_loss(run_dir / "metrics.jsonl", run_dir / "loss.png", [(record.step, val_loss)])
    result = record.dump()
    write_text(render_report(run_dir, result, info, plot is not None), run_dir / "report.md")
    return result


def eval_corpus(provenance: dict) -> CorpusRef:
    """The corpus an evaluation read, pinned by its hashes."""
    return CorpusRef(**{k: provenance[k] for k in ("data_dir", "manifest_sha256", "recipe_hash", "tokenizer_sha256")})


def render_report(run_dir: Path, r: dict, info: dict, has_plot: bool) -> str:
    metrics = read_metrics(run_dir / "metrics.jsonl")
    rates = sorted(m["tokens_per_s"] for m in metrics[1:] if "tokens_per_s" in m)
    m = r["model"]
    corpus = r["corpus"]
    lines = [
        f"# Run report: {run_dir.name}",
        "",
        f"GPT ({m['n_layer']} layers, {m['n_head']} heads, width {m['n_embd']}, context {m['block_size']}, "
        f"vocabulary {m['vocab_size']}; {r['n_params']:,} parameters), step {r['step']}, "
        f"{r['tokens_seen']:,} tokens seen.",
        "",
        "| Metric | Value |",
        "|---|---|",
        f"| validation loss (nats/token) | {r['val_loss']:.4f} |",
        f"| validation perplexity | {r['val_perplexity']:.2f} |",
        f"| validation bits per byte | {r['val_bits_per_byte']:.4f} |",
        f"| validation targets | {r['val_tokens']:,} tokens, {r['val_bytes']:,} bytes "
        f"(of {r['val_tokens_available']:,} tokens) |",
    ]
    if rates:
        lines.append(f"| training throughput (median) | {rates[len(rates) // 2]:,.0f} tokens/s |")
    mfus = sorted(x["mfu"] for x in metrics[1:] if x.get("mfu") is not None)
    if mfus:
        lines.append(f"| MFU (median) | {mfus[len(mfus) // 2] * 100:.1f}% |")
    lines += [
        "",
        *corpus_section(CorpusRef(**corpus)),
    ]
    if has_plot:
        lines += ["## Loss", "", "![loss](loss.png)", ""]
    if r.get("samples"):
        lines += ["## Samples (top-k 40, temperature 0.8, seed 1234)", ""]
        for s in r["samples"]:
            text = (s["prompt"] + s["completion"]).replace("```", "'''")
            lines += [f"**{s['prompt']!r}**", "", "```text", text, "```", ""]
    lines += training_section(info)
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="opencorpus eval", description="Evaluate a run on tokens/val/.")
    p.add_argument("run_dir")
    p.add_argument("--data", help="corpus folder (default: the one the run was trained on)")
    p.add_argument("--max-tokens", type=int, default=-1, help="validation tokens to read (0: all)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device")
    p.add_argument("--no-samples", dest="samples", action="store_false")
    a = p.parse_args(argv)
    try:
        r = evaluate(a.run_dir, a.data, None if a.max_tokens == 0 else a.max_tokens, a.batch_size, a.device,
                     a.samples)
    except (DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in r.items() if k not in ("samples", "model")}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
