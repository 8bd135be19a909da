"""Exact-duplicate keys: a 128-bit hash of each document's normalized text (and of its URL)."""
from __future__ import annotations

import numpy as np
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


def text_hashes(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) 64-bit halves of xxh3_128 of each text's UTF-8 bytes."""
    hi = np.empty(len(texts), dtype=np.uint64)
    lo = np.empty(len(texts), dtype=np.uint64)
    for i, t in enumerate(texts.to_pylist()):
        d = xxhash.xxh3_128_intdigest(t.encode("utf-8") if t is not None else b"")
        hi[i], lo[i] = d >> 64, d & 0xFFFFFFFFFFFFFFFF
    return hi, lo


def url_hashes(urls: pa.Array) -> pa.Array:
    """uint64 hash of each non-empty URL (null where there is none: documents without URL never match)."""
    out = []
    for u in urls.to_pylist():
        out.append(xxhash.xxh3_64_intdigest(u.strip().encode("utf-8")) if u and u.strip() else None)
    return pa.array(out, type=pa.uint64())
