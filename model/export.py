"""Export a run as a Hugging Face `transformers` folder (GPT2LMHeadModel + tokenizer).

    python -m model.export RUN_DIR --hf OUT_DIR

Our block is GPT-2's, so the export is a renaming plus one transpose: GPT-2's `Conv1D`
stores weights as (in, out) where `nn.Linear` stores (out, in). Without biases (our
default) GPT-2's bias vectors are written as zeros, which computes the same function.
The folder loads with `GPT2LMHeadModel.from_pretrained(OUT_DIR)` and `lm_eval --model hf`.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
import yaml

from model.evaluate import load_run_model
from model.gpt import GPT
from pipeline.io import write_json, write_text, write_tokenizer_config
from pipeline.records import EvalRecord, Manifest, RunRecord, TokenIndex

_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def gpt2_state_dict(model) -> dict[str, torch.Tensor]:
    """Our parameters under GPT2LMHeadModel's names and layouts."""
    cfg = model.config
    ours = model.state_dict()
    out = {}
    for name, t in ours.items():
        t = t.detach().float().cpu()
        out[name] = t.t().contiguous() if name.endswith(_CONV1D) else t.clone()
    if not cfg.bias:
        E = cfg.n_embd
        for i in range(cfg.n_layer):
            p = f"transformer.h.{i}."
            out[p + "ln_1.bias"] = torch.zeros(E)
            out[p + "ln_2.bias"] = torch.zeros(E)
            out[p + "attn.c_attn.bias"] = torch.zeros(3 * E)
            out[p + "attn.c_proj.bias"] = torch.zeros(E)
            out[p + "mlp.c_fc.bias"] = torch.zeros(4 * E)
            out[p + "mlp.c_proj.bias"] = torch.zeros(E)
        out["transformer.ln_f.bias"] = torch.zeros(E)
    return out


def export_hf(run_dir, out_dir) -> Path:
    """Write config.json, model weights and the tokenizer of the run's latest checkpoint to out_dir."""
    from transformers import GPT2Config, GPT2LMHeadModel

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model, ckpt, info = load_run_model(run_dir, "cpu")
    cfg = model.config
    data_dir = Path(info.corpus.data_dir or "")
    tok_file = data_dir / "tokenizer.json"
    if not tok_file.exists():
        raise FileNotFoundError(f"{tok_file} (the run's tokenizer) is missing; export needs it")
    index = TokenIndex.load(data_dir / TokenIndex.file_name)
    eot = "<|endoftext|>"
    if not isinstance(model, GPT) or not cfg.causal:
        raise ValueError(f"{run_dir} holds a bidirectional encoder (masked LM); only causal GPT runs export "
                         f"to GPT2LMHeadModel")
    hf_cfg = GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_inner=4 * cfg.n_embd, activation_function="gelu",  # exact erf GELU, as nn.GELU()
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
        tie_word_embeddings=True, bos_token_id=index.eot_id, eos_token_id=index.eot_id,
    )
    hf = GPT2LMHeadModel(hf_cfg)
    missing, unexpected = hf.load_state_dict(gpt2_state_dict(model), strict=False)
    # Only non-parameter buffers (causal-mask caches in some transformers versions) may be missing.
    missing = [k for k in missing if not k.endswith(("attn.bias", "attn.masked_bias"))]
    if missing or unexpected:
        raise RuntimeError(f"export mapping incomplete: missing {missing}, unexpected {unexpected}")
    hf.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out_dir)
    pad = None
    if index.pad_id is not None:
        from tokenizers import Tokenizer

        pad = Tokenizer.from_file(str(tok_file)).id_to_token(index.pad_id)
    shutil.copyfile(tok_file, out_dir / "tokenizer.json")
    # Not save_pretrained: transformers 5 writes "tokenizer_class": "TokenizersBackend", which 4.x cannot load.
    write_tokenizer_config(out_dir, eos_token=eot, pad_token=pad or eot, model_max_length=cfg.block_size)
    write_json({"run_dir": str(run_dir.resolve()), "checkpoint": ckpt["path"], "step": ckpt["step"],
                "corpus": info.corpus.manifest_sha256, "recipe_hash": info.corpus.recipe_hash},
               out_dir / "opencorpus_run.json")
    write_text(model_card(run_dir, data_dir, n_params=sum(p.numel() for p in model.parameters()),
                          block_size=cfg.block_size, step=ckpt["step"]), out_dir / "README.md")
    return out_dir


def _corpus_card_metadata(data_dir: Path) -> dict:
    """The metadata of the corpus's data card (README.md front matter: license as Hub ids,
    name, languages); the manifest's name without a card; {} without either."""
    card = data_dir / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8")
        if text.startswith("---\n") and "\n---" in text[4:]:
            try:
                meta = yaml.safe_load(text[4:text.index("\n---", 4)])
            except yaml.YAMLError as e:
                raise ValueError(f"{card}: the data card's metadata is not YAML: {e}") from None
            if isinstance(meta, dict):
                return meta
    if (data_dir / Manifest.file_name).is_file():
        return {"pretty_name": Manifest.load(data_dir / Manifest.file_name).name}
    return {}


def model_card(run_dir: Path, data_dir: Path, n_params: int, block_size: int, step: int) -> str:
    """README.md of the export: Hub metadata (license of the corpus, datasets, model-index with
    the run's eval.json figures) and what trained it, how long, how well, and its limits."""
    run = RunRecord.load(run_dir / RunRecord.file_name)
    ev = EvalRecord.load(run_dir / EvalRecord.file_name) if (run_dir / EvalRecord.file_name).is_file() else None
    corpus = _corpus_card_metadata(data_dir)
    name = corpus.get("pretty_name") or data_dir.name
    meta = {"library_name": "transformers", "pipeline_tag": "text-generation",
            **{k: corpus[k] for k in ("license", "license_name", "license_link") if k in corpus},
            **({} if "license" in corpus else {"license": "unknown"}),
            "datasets": [name], "tags": ["opencorpus", "gpt2"]}
    if "language" in corpus:
        meta["language"] = corpus["language"]
    metrics = []
    if ev is not None and ev.step == step:  # figures of the exported checkpoint only
        metrics = [{"type": "loss", "name": "Validation loss (nats per token)", "value": round(ev.val_loss, 4)},
                   {"type": "perplexity", "name": "Validation perplexity", "value": round(ev.val_perplexity, 3)}]
        if ev.val_bits_per_byte is not None:
            metrics.append({"type": "bits_per_byte", "name": "Validation bits per byte", "value": round(ev.val_bits_per_byte, 4)})
        meta["model-index"] = [{"name": run_dir.name, "results": [{
            "task": {"type": "text-generation", "name": "Text generation"},
            "dataset": {"type": name, "name": f"{name} (validation split)", "split": "validation"},
            "metrics": metrics}]}]
    tokens = f"{run.tokens_seen:,}" if run.tokens_seen is not None else "not recorded"
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(), "---", "",
             f"# {run_dir.name}", "",
             f"A GPT-2-architecture language model of {n_params:,} parameters trained from scratch by "
             f"`opencorpus` on the corpus `{name}` (recipe hash `{run.corpus.recipe_hash or 'not recorded'}`); "
             "the corpus's data card (its README.md) tells what it holds, where it comes from and what was removed.", "",
             "## Training", "",
             f"- Preset `{run.preset}`, {step:,} steps, {tokens} tokens seen, context {block_size} tokens",
             f"- Device {run.device} ({run.dtype}), torch {run.torch}",
             f"- Final training loss: {run.final_loss:.4f}" if run.final_loss is not None else "- Final training loss: not recorded",
             "", "## Evaluation", ""]
    if metrics:
        lines += [f"On {ev.val_tokens or ev.val_tokens_available:,} validation tokens of the corpus (documents never trained on):", "",
                  "| Metric | Value |", "| --- | ---: |"] + [f"| {m['name']} | {m['value']} |" for m in metrics]
    else:
        lines.append("Not evaluated at this checkpoint: `opencorpus eval RUN_DIR` before the export adds the figures.")
    lines += ["", "## Limits", "",
              f"A model of {n_params:,} parameters trained on {tokens} tokens continues text in the style of its corpus "
              "at best: it states no reliable fact, follows no instruction and has no safety tuning. It repeats the "
              "corpus's biases, and it sees at most "
              f"{block_size} tokens of context. Use it to test a data pipeline, not to answer questions.", "",
              "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
              'tok = AutoTokenizer.from_pretrained("THIS_FOLDER")',
              'model = AutoModelForCausalLM.from_pretrained("THIS_FOLDER")',
              'out = model.generate(**tok("Once upon a time", return_tensors="pt"), max_new_tokens=40, do_sample=True)',
              "print(tok.decode(out[0]))", "```", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="opencorpus export", description="Export a run to a HF transformers folder.")
    p.add_argument("run_dir")
    p.add_argument("--hf", required=True, dest="out_dir", help="output folder")
    a = p.parse_args(argv)
    print(export_hf(a.run_dir, a.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
