"""Clean stage: public API, conservation, each rule set on real text, CJK, PII, bad input."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.clean import CleanConfig, clean_shard, clean_table, merge_stats
from pipeline.schema import CLEAN_SCHEMA, DOC_SCHEMA, REJECTED_SCHEMA
from conftest import require_shared


def docs_table(texts, kind="prose", license=None, paths=None, prefix="d") -> pa.Table:
    n = len(texts)
    return pa.Table.from_pydict(
        {
            "id": [f"{prefix}{i}" for i in range(n)],
            "text": list(texts),
            "source": ["test"] * n,
            "license": [license] * n,
            "kind": [kind] * n if isinstance(kind, str) else list(kind),
            "url": [None] * n,
            "path": list(paths) if paths else [None] * n,
            "meta": [None] * n,
        },
        schema=DOC_SCHEMA,
    )


def wikitext_articles(n: int) -> list[str]:
    text = (require_shared() / "classic" / "wikitext-2_valid.txt").read_text(encoding="utf-8")
    parts = [p for p in text.split("\n = ") if len(p) > 2000]
    return parts[:n]


def test_clean_shard_conserves_and_writes_schemas(tmp_path):
    texts = wikitext_articles(20) + ["", "nul \x00 inside " * 3, "short"]
    src = tmp_path / "documents" / "part-00000.parquet"
    src.parent.mkdir()
    pq.write_table(docs_table(texts), src)
    out, rej = tmp_path / "clean" / "part-00000.parquet", tmp_path / "rejected" / "clean-part-00000.parquet"
    stats = clean_shard(src, out, rej, CleanConfig())
    kept, rejected = pq.read_table(out), pq.read_table(rej)
    assert kept.schema.equals(CLEAN_SCHEMA) and rejected.schema.equals(REJECTED_SCHEMA)
    assert stats["docs_in"] == len(texts) == stats["docs_out"] + stats["docs_rejected"]
    assert stats["docs_out"] == kept.num_rows and stats["docs_rejected"] == rejected.num_rows
    assert set(kept.column("id").to_pylist()).isdisjoint(rejected.column("id").to_pylist())
    assert all(r for r in rejected.column("reason").to_pylist())
    assert set(rejected.column("stage").to_pylist()) == {"clean"}
    assert sum(f["docs"] for f in stats["filters"].values()) == stats["docs_rejected"]
    for key in ("bytes_in", "bytes_out", "seconds", "pii", "languages"):
        assert key in stats
    merged = merge_stats([stats, stats])
    assert merged["docs_in"] == 2 * stats["docs_in"]
    assert list(merged["filters"]) == list(stats["filters"])
