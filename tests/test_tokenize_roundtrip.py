"""Byte-exact round trip decode(encode(text)) == text on every file of a corpus tree's
classic/ and multilingual/ folders: the generated tree of tests/fixtures_corpus.py (19
languages, poems, plus files with a BOM and CRLF line ends, a literal <|endoftext|>, emoji,
combining marks and bidi controls) and, marked `shared`, ../shared/corpora (23 MB: English
with a BOM and CRLF line ends, Chinese, Japanese, Russian, Arabic, Thai, Sinhala and 60 more).

The tokenizer is trained by the stage on a small sample of the same files, so the test
exercises both well-merged text and text that falls back to single bytes.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from tokenizers import Tokenizer

from conftest import require_shared
from pipeline.io import write_parquet
from pipeline.schema import CLEAN_SCHEMA, conform
from pipeline.tokenize import TokenizeConfig, train_tokenizer


def generated_root(corpora: Path, tmp: Path) -> Path:
    root = tmp / "generated"
    shutil.copytree(corpora, root)
    wiki = (corpora / "classic" / "wiki.txt").read_text(encoding="utf-8")
    (root / "classic" / "bom_crlf.txt").write_bytes(("\ufeff" + wiki[:30_000]).replace("\n", "\r\n").encode("utf-8"))
    stories = (corpora / "classic" / "stories.txt").read_text(encoding="utf-8").split("\n\n")
    (root / "classic" / "stories_eot.txt").write_text("\n<|endoftext|>\n".join(stories), encoding="utf-8")
    odd = ["café", "cafe\u0301", "👩\u200d👩\u200d👧", "🇺🇳", "\u202eabc\u202c", "ﬁ ligature", "\u00a0nbsp", "tab\tend",
           "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\U0001f600" * 3, "e\u0308\u0332", "क्षि", "한국어", "\x7f\x01", "<|pad|> <|mask|>"]
    (root / "multilingual" / "odd.txt").write_text("\n".join(odd * 20), encoding="utf-8")
    return root


@pytest.fixture(scope="module", params=["generated", pytest.param("shared", marks=pytest.mark.shared)])
def files_and_tokenizer(request, tmp_path_factory):
    if request.param == "shared":
        root = require_shared()
    else:
        root = generated_root(request.getfixturevalue("corpora"), tmp_path_factory.mktemp("gen"))
    files = sorted(p for d in ("classic", "multilingual") for p in (root / d).rglob("*") if p.is_file())
    raw = [p.read_bytes() for p in files]
    texts = [b.decode("utf-8") for b in raw]
    # Train on the first 20 kB of every file: every script is seen, none is merged much.
    sample = [t[:20_000] for t in texts]
    table = pa.table({"id": [str(p.relative_to(root)) for p in files], "text": sample, "source": ["shared"] * len(files)})
    shard = write_parquet(conform(table, CLEAN_SCHEMA), tmp_path_factory.mktemp("rt") / "part-00000.parquet")
    out = shard.parent / "tokenizer.json"
    train_tokenizer([shard], out, TokenizeConfig(vocab_size=2048, val_fraction=0))
    return request.param, files, raw, texts, Tokenizer.from_file(str(out))


def test_round_trip_every_file_byte_exact(files_and_tokenizer):
    which, files, raw, texts, tok = files_and_tokenizer
    assert len(files) > (100 if which == "shared" else 25)
    assert any(b.startswith(b"\xef\xbb\xbf") for b in raw) and any(b"\r\n" in b for b in raw)
    tok.encode_special_tokens = True  # as the stage encodes: a literal "<|endoftext|>" is text
    encodings = tok.encode_batch_fast(texts, add_special_tokens=False)
    decoded = tok.decode_batch([e.ids for e in encodings], skip_special_tokens=False)
    bad = [str(p) for p, b, d in zip(files, raw, decoded) if d.encode("utf-8") != b]
    assert not bad, f"round trip failed for {len(bad)} file(s): {bad[:5]}"
    assert sum(len(e.ids) for e in encodings) < sum(map(len, raw))  # merges happened


def test_literal_special_token_text_round_trips_either_way(files_and_tokenizer):
    """tinystories_sample.txt (shared) and stories_eot.txt (generated) separate stories with a literal <|endoftext|>."""
    _, files, raw, texts, tok = files_and_tokenizer
    marked = [(p, b, t) for p, b, t in zip(files, raw, texts) if "<|endoftext|>" in t]
    assert marked
    eot = tok.token_to_id("<|endoftext|>")
    for split, expect_control in ((True, False), (False, True)):
        tok.encode_special_tokens = split
        for path, b, text in marked:
            ids = tok.encode(text, add_special_tokens=False).ids
            assert (eot in ids) == expect_control, path
            assert tok.decode(ids, skip_special_tokens=False).encode("utf-8") == b, path
