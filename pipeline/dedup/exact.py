"""Exact-duplicate inputs: the normalization applied before hashing, and URL keys.

The exact key itself is xxh3-128 of the normalized word sequence (`minhash.sequence_keys`), so
whitespace differences never matter.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from pipeline.dedup.config import NormalizeConfig


def normalize(texts: pa.Array, cfg: NormalizeConfig) -> pa.Array:
    """Apply the configured normalization to a batch of texts, in Arrow (no per-document Python)."""
    texts = pc.fill_null(texts, "")
    if cfg.unicode_nfkc:
        texts = pc.utf8_normalize(texts, "NFKC")
    if cfg.lowercase:
        texts = pc.utf8_lower(texts)
    if cfg.strip_punctuation:
        texts = pc.replace_substring_regex(texts, r"[\p{P}\p{S}]+", "")
    if cfg.strip_digits:
        texts = pc.replace_substring_regex(texts, r"\p{N}+", "")
    return texts


def url_hashes(urls: pa.Array) -> pa.Array:
    """uint64 hash of each non-empty URL (null where there is none: documents without URL never match)."""
    out = []
    for u in urls.to_pylist():
        out.append(xxhash.xxh3_64_intdigest(u.strip().encode("utf-8")) if u and u.strip() else None)
    return pa.array(out, type=pa.uint64())
