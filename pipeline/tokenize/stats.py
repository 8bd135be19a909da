"""Token statistics for the data card, accumulated batch by batch in fixed-size arrays and dicts."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.records import Histogram


class TokenStats:
    """Tokens per source, bytes per token per language, and a document-length histogram.

    Bytes per token counts the document's text tokens only (its end-of-text token excluded),
    so it measures how well the tokenizer compresses that language. The histogram counts
    documents by n_tokens (end-of-text token included) in power-of-two bins, with percentiles
    (the lengths are kept as int32 until then: 4 bytes per document).
    """

    def __init__(self):
        self.tokens_per_source: dict[str, int] = {}
        self.docs_per_source: dict[str, int] = {}
        self.language: dict[str, list[int]] = {}  # language -> [documents, bytes, text tokens]
        self.lengths: list[np.ndarray] = []

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
        self.lengths.append(n_tokens.astype(np.int32))

    def to_dict(self) -> dict:
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
            "length_histogram": Histogram.of(np.concatenate(self.lengths)) if self.lengths else None,
        }

    @classmethod
    def merged(cls, figures: list[dict], lengths: list[np.ndarray]) -> "TokenStats":
        """The stats of several units from their `to_dict()` figures and document lengths."""
        out = cls()
        for f in figures:
            for key, n in f["tokens_per_source"].items():
                out.tokens_per_source[key] = out.tokens_per_source.get(key, 0) + n
            for key, n in f["documents_per_source"].items():
                out.docs_per_source[key] = out.docs_per_source.get(key, 0) + n
            for lang, v in f["bytes_per_token_per_language"].items():
                acc = out.language.setdefault(lang, [0, 0, 0])
                acc[0] += v["documents"]
                acc[1] += v["bytes"]
                acc[2] += v["tokens"]
        out.lengths = [x for x in lengths if len(x)]
        return out
