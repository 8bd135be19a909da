"""Tokenize stage: train (or load) a byte-level BPE, then write train/val token shards.

    train_tokenizer(input_paths, out_path, config) -> tokenizers.Tokenizer
    tokenize_corpus(input_paths, tokenizer_path, out_dir, config, workers=1) -> stats dict
"""
from pipeline.tokenize.config import TokenizeConfig
from pipeline.tokenize.stage import tokenize_corpus
from pipeline.tokenize.tokenizer import (
    EOT,
    MASK,
    PAD,
    SPECIAL_TOKENS,
    hf_tokenizer,
    load_tokenizer,
    special_ids,
    train_tokenizer,
    val_mask,
)

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
