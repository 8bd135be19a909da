"""MinHash signatures: equal to datasketch.MinHash, shingling rules, LSH parameters."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash

from pipeline.dedup.config import DedupConfig, MinHashConfig
from pipeline.dedup.minhash import (
    Signer,
    band_keys,
    optimal_bands_rows,
    shingle_hash32,
    shingle_strings,
    word_hashes,
    word_hash64,
)

from fixtures_corpus import wiki_text

TEXTS = [
    "The quick brown fox jumps over the lazy dog, and the dog sleeps on.",
    "  leading and trailing   whitespace\n\tand tabs  ",
    "",  # empty: no shingles
    "four words only here",  # shorter than the shingle size: one shingle
    "x",
    "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。",  # CJK: character shingles
    "Ünïcödé wörds — with «quotes» and emoji 🙂 " * 3,
    "a" * 20000 + " tail words after a very long token",  # token longer than POS_CAP
]


def _texts():
    raw = wiki_text(20)
    return list(TEXTS) + [raw[i : i + 3000] for i in range(0, 30000, 3000)]


@pytest.mark.parametrize("hash_name,num_perm,seed", [("words64", 128, 1), ("words64", 64, 7), ("sha1", 128, 1)])
def test_signatures_equal_datasketch(hash_name, num_perm, seed):
    texts = _texts()
    signer = Signer(num_perm=num_perm, seed=seed, ngram=5, hash=hash_name)
    sig, n_sh, _ = signer.signatures(pa.array(texts))
    tokens, _ = signer.tokens(pa.array(texts))
    for i, t in enumerate(tokens.to_pylist()):
        shingles = shingle_strings(t, 5)
        kwargs = {"hashfunc": shingle_hash32} if hash_name == "words64" else {}
        m = MinHash(num_perm=num_perm, seed=seed, **kwargs)
        m.update_batch(shingles)
        assert np.array_equal(m.hashvalues, sig[i]), f"document {i} differs from datasketch"
        assert n_sh[i] >= len(shingles)  # duplicates within a document are counted, not removed


def test_vectorized_word_hash_equals_scalar():
    words = ["a", "the", "Ünïcödé", "🙂", "b" * 5000, "x y"]
    vec = word_hashes(pa.array(words))
    assert [int(v) for v in vec] == [word_hash64(w.encode()) for w in words]


def test_shingling_rules():
    assert shingle_strings("", 5) == []
    assert shingle_strings("one two", 5) == [b"one two"]
    assert sorted(shingle_strings("a b c d e f", 5)) == [b"a b c d e", b"b c d e f"]
    signer = Signer(num_perm=16)
    tokens, cjk = signer.tokens(pa.array(["床前明月光 疑是地上霜", "plain English words"]))
    assert cjk.tolist() == [True, False]
    assert tokens.to_pylist()[0] == "床 前 明 月 光 疑 是 地 上 霜"
    sig, n_sh, _ = signer.signatures(pa.array(["", "one two", "床前明月光疑是地上霜"]))
    assert n_sh.tolist() == [0, 1, 6]
    assert (sig[0] == 0xFFFFFFFF).all()  # an empty document is an empty MinHash


def test_bands_rows_and_preset():
    assert optimal_bands_rows(0.75, 128, 0.5) == (11, 11)  # datasketch's own optimisation
    b, r = optimal_bands_rows(0.75, 128, MinHashConfig().fp_weight())
    assert b * r <= 128 and 1 - (1 - 0.75**r) ** b > 0.99  # recall-heavy when pairs are verified
    fw = MinHashConfig(preset="fineweb")
    assert (fw.ngram, fw.bands, fw.rows, fw.verify) == (5, 14, 8, "none")
    assert MinHashConfig(preset="fineweb", rows=7).rows == 7
    assert DedupConfig(threshold=0.8).minhash.threshold == 0.8
    with pytest.raises(ValueError):
        MinHashConfig(bands=20, rows=8, num_perm=128)
    with pytest.raises(ValueError):
        MinHashConfig(bands=4)


def test_band_keys_equal_bands_equal_keys():
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, (3, 16), dtype=np.uint64).astype(np.uint32)
    sig[1, :4] = sig[0, :4]  # same first band only
    k = band_keys(sig, 4, 4)
    assert k[0, 0] == k[1, 0] and (k[0, 1:] != k[1, 1:]).all()
    assert len(set(k[2].tolist())) == 4
