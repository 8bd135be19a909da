"""Tokenize stage: train (or load) a byte-level BPE, then write train/val token shards.

    train_tokenizer(input_paths, out_path, config) -> tokenizers.Tokenizer
    tokenize_corpus(input_paths, tokenizer_path, out_dir, config, workers=1) -> stats dict
"""
from pipeline.tokenize.config import TokenizeConfig

_TOKENIZER = ("EOT", "MASK", "PAD", "SPECIAL_TOKENS", "hf_tokenizer", "load_tokenizer", "special_ids",
              "train_tokenizer", "val_mask")


def __getattr__(name):
    # The stage and the tokenizer (tokenizers, pyarrow.compute) load on first use, not when a recipe is read.
    if name == "tokenize_corpus":
        from pipeline.tokenize import stage

        return stage.tokenize_corpus
    if name in _TOKENIZER:
        from pipeline.tokenize import tokenizer

        return getattr(tokenizer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EOT",
    "MASK",
    "PAD",
    "SPECIAL_TOKENS",
    "TokenizeConfig",
    "hf_tokenizer",
    "load_tokenizer",
    "special_ids",
    "tokenize_corpus",
    "train_tokenizer",
    "val_mask",
]
