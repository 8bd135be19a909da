"""Byte-exact round trip decode(encode(text)) == text on every file under
../shared/corpora/classic/ and ../shared/corpora/multilingual/ (23 MB: English with a BOM
and CRLF line ends, Chinese, Japanese, Russian, Arabic, Thai, Sinhala and 60 more).

The tokenizer is trained by the stage on a small sample of the same files, so the test
exercises both well-merged text and text that falls back to single bytes.
"""
from __future__ import annotations

import pyarrow as pa
import pytest
from tokenizers import Tokenizer

from conftest import require_shared
from pipeline.io import write_parquet
from pipeline.schema import CLEAN_SCHEMA, conform
from pipeline.tokenize import TokenizeConfig, train_tokenizer


@pytest.fixture(scope="module")
def files_and_tokenizer(tmp_path_factory):
    root = require_shared()
    files = sorted(p for d in ("classic", "multilingual") for p in (root / d).rglob("*") if p.is_file())
    raw = [p.read_bytes() for p in files]
    texts = [b.decode("utf-8") for b in raw]
    # Train on the first 20 kB of every file: every script is seen, none is merged much.
    sample = [t[:20_000] for t in texts]
    table = pa.table({"id": [str(p.relative_to(root)) for p in files], "text": sample, "source": ["shared"] * len(files)})
    shard = write_parquet(conform(table, CLEAN_SCHEMA), tmp_path_factory.mktemp("rt") / "part-00000.parquet")
    out = shard.parent / "tokenizer.json"
    train_tokenizer([shard], out, TokenizeConfig(vocab_size=2048, val_fraction=0))
    return files, raw, texts, Tokenizer.from_file(str(out))


def test_round_trip_every_shared_file_byte_exact(files_and_tokenizer):
    files, raw, texts, tok = files_and_tokenizer
    assert len(files) > 100
    tok.encode_special_tokens = True  # as the stage encodes: a literal "<|endoftext|>" is text
    encodings = tok.encode_batch_fast(texts, add_special_tokens=False)
    decoded = tok.decode_batch([e.ids for e in encodings], skip_special_tokens=False)
    bad = [str(p) for p, b, d in zip(files, raw, decoded) if d.encode("utf-8") != b]
    assert not bad, f"round trip failed for {len(bad)} file(s): {bad[:5]}"
    assert sum(len(e.ids) for e in encodings) < sum(map(len, raw))  # merges happened


def test_literal_special_token_text_round_trips_either_way(files_and_tokenizer):
    """tinystories_sample.txt separates stories with a literal <|endoftext|>."""
    files, raw, texts, tok = files_and_tokenizer
    marked = [(p, b, t) for p, b, t in zip(files, raw, texts) if "<|endoftext|>" in t]
    assert marked
    eot = tok.token_to_id("<|endoftext|>")
    for split, expect_control in ((True, False), (False, True)):
        tok.encode_special_tokens = split
        for path, b, text in marked:
            ids = tok.encode(text, add_special_tokens=False).ids
            assert (eot in ids) == expect_control, path
            assert tok.decode(ids, skip_special_tokens=False).encode("utf-8") == b, path
