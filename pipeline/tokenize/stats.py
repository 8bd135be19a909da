"""Token statistics for the data card, accumulated batch by batch in fixed-size arrays and dicts."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

MAX_BUCKET = 40  # 2**40 tokens in one document is beyond anything Parquet lists hold


class TokenStats:
    """Tokens per source, bytes per token per language, and a document-length histogram.

    Bytes per token counts the document's text tokens only (its end-of-text token excluded),
    so it measures how well the tokenizer compresses that language. The histogram counts
    documents by n_tokens (end-of-text token included) in power-of-two buckets.
    """

    def __init__(self):
        self.tokens_per_source: dict[str, int] = {}
        self.docs_per_source: dict[str, int] = {}
        self.language: dict[str, list[int]] = {}  # language -> [documents, bytes, text tokens]
        self.length_buckets = np.zeros(MAX_BUCKET + 1, dtype=np.int64)

    def add(self, sources: pa.Array, languages: pa.Array, text_bytes: np.ndarray, n_tokens: np.ndarray) -> None:
        if not len(n_tokens):
            return
        table = pa.table(
            {"source": sources, "language": languages, "bytes": text_bytes, "tokens": n_tokens.astype(np.int64)}
        )
        table = table.append_column("text_tokens", pa.array(n_tokens.astype(np.int64) - 1))
        for row in table.group_by("source").aggregate([("tokens", "sum"), ("tokens", "count")]).to_pylist():
            key = row["source"] if row["source"] is not None else "unknown"
            self.tokens_per_source[key] = self.tokens_per_source.get(key, 0) + row["tokens_sum"]
            self.docs_per_source[key] = self.docs_per_source.get(key, 0) + row["tokens_count"]
        agg = [("tokens", "count"), ("bytes", "sum"), ("text_tokens", "sum")]
        for row in table.group_by("language").aggregate(agg).to_pylist():
            key = row["language"] if row["language"] is not None else "unknown"
            acc = self.language.setdefault(key, [0, 0, 0])
            acc[0] += row["tokens_count"]
            acc[1] += row["bytes_sum"]
            acc[2] += row["text_tokens_sum"]
        buckets = np.minimum(np.floor(np.log2(np.maximum(n_tokens, 1))).astype(np.int64), MAX_BUCKET)
        self.length_buckets += np.bincount(buckets, minlength=MAX_BUCKET + 1)

    def to_dict(self) -> dict:
        last = int(np.nonzero(self.length_buckets)[0].max()) if self.length_buckets.any() else -1
        return {
            "tokens_per_source": dict(sorted(self.tokens_per_source.items())),
            "documents_per_source": dict(sorted(self.docs_per_source.items())),
            "bytes_per_token_per_language": {
                lang: {
                    "documents": d,
                    "bytes": b,
                    "tokens": t,
                    "bytes_per_token": round(b / t, 4) if t else None,
                }
                for lang, (d, b, t) in sorted(self.language.items())
            },
            "length_histogram": [
                {"min_tokens": 2**k, "max_tokens": 2 ** (k + 1) - 1, "documents": int(self.length_buckets[k])}
                for k in range(last + 1)
            ],
        }
