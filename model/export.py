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

from model.evaluate import load_run_model
from model.gpt import GPT
from pipeline.io import write_json
from pipeline.records import TokenIndex

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
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

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
    tok = PreTrainedTokenizerFast(tokenizer_file=str(tok_file), bos_token=eot, eos_token=eot, unk_token=eot,
                                  pad_token=pad or eot, model_max_length=cfg.block_size)
    tok.save_pretrained(out_dir)
    shutil.copyfile(tok_file, out_dir / "tokenizer.json")
    write_json({"run_dir": str(run_dir.resolve()), "checkpoint": ckpt["path"], "step": ckpt["step"],
                "corpus": info.corpus.manifest_sha256, "recipe_hash": info.corpus.recipe_hash},
               out_dir / "opencorpus_run.json")
    return out_dir


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="opencorpus export", description="Export a run to a HF transformers folder.")
    p.add_argument("run_dir")
    p.add_argument("--hf", required=True, dest="out_dir", help="output folder")
    a = p.parse_args(argv)
    print(export_hf(a.run_dir, a.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
