"""Tokenize stage: exact round trips, readable shards, a stable split, conservation, determinism.

The corpus is seeded generated text (tests/fixtures_text.py: English, Chinese, Japanese,
Russian, Arabic, Hindi, Thai, Korean...), written as CLEAN_SCHEMA shards, and a real byte-level BPE is
trained on it by the stage itself.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from pipeline.io import list_shards, sha256_file, write_parquet
from pipeline.recipe import parse_recipe
from pipeline.schema import CLEAN_SCHEMA, REJECTED_SCHEMA, conform, token_schema
from pipeline.tokenize import (
    EOT,
    SPECIAL_TOKENS,
    TokenizeConfig,
    hf_tokenizer,
    load_tokenizer,
    special_ids,
    tokenize_corpus,
    train_tokenizer,
    val_mask,
)
from fixtures_corpus import play_text, wiki_text
from fixtures_text import sentences
from pipeline.tokenize.stage import use_processes

LANGS = ["de", "ru", "zh", "ja", "ar", "hi", "th", "ko", "el", "he"]


def _generated_docs() -> list[dict]:
    """A play's speeches and WikiText-style articles in English, and documents of ten sentences
    in each of LANGS (seeded, tests/fixtures_text.py): ten scripts, with and without spaces."""
    docs = []
    for i, part in enumerate(play_text(200_000).split("\n\n")):
        docs.append({"id": f"play-{i:05d}", "text": part, "source": "play", "language": "en"})
    for i, part in enumerate(wiki_text(40).split("\n = ")):
        docs.append({"id": f"wikitext-{i:05d}", "text": part, "source": "wikitext", "language": "en"})
    for lang in LANGS:
        lines = sentences(lang, 300)
        for i in range(0, 300, 10):
            text = "\n".join(lines[i : i + 10])
            docs.append({"id": f"lingua-{lang}-{i:04d}", "text": text, "source": "lingua", "language": lang})
    return docs


def write_corpus(folder: Path, docs: list[dict], per_shard: int = 400) -> list[Path]:
    paths = []
    for k in range(0, len(docs), per_shard):
        chunk = docs[k : k + per_shard]
        table = pa.Table.from_pylist(chunk)
        paths.append(write_parquet(conform(table, CLEAN_SCHEMA), folder / f"part-{k // per_shard:05d}.parquet"))
    return paths


CONFIG = TokenizeConfig(vocab_size=1024, train_sample_bytes=400_000, shard_tokens=60_000, row_group_tokens=20_000)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    docs = _generated_docs()
    shards = write_corpus(root / "dedup", docs)
    train_tokenizer(shards, root / "tokenizer.json", CONFIG)
    stats = tokenize_corpus(shards, root / "tokenizer.json", root / "tokens", CONFIG)
    return {"root": root, "docs": docs, "shards": shards, "stats": stats, "tokenizer": root / "tokenizer.json"}


# --- tokenizer ---------------------------------------------------------------------------


def test_tokenizer_has_special_tokens_and_vocab(corpus):
    tok = load_tokenizer(corpus["tokenizer"])
    assert tok.get_vocab_size() == CONFIG.vocab_size
    ids = special_ids(tok)
    assert sorted(ids.values()) == [0, 1, 2]
    assert [tok.id_to_token(i) for i in (ids["eot_id"], ids["pad_id"], ids["mask_id"])] == SPECIAL_TOKENS


def test_transformers_fast_tokenizer_encodes_identically(corpus):
    tok = Tokenizer.from_file(str(corpus["tokenizer"]))
    hf = hf_tokenizer(corpus["tokenizer"])
    texts = [d["text"] for d in corpus["docs"][::7]] + ["  leading spaces\r\n\ttabs", "naïve café 東京 Привет مرحبا", ""]
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert hf.encode(text, add_special_tokens=False) == ids
        assert hf.decode(ids) == text == tok.decode(ids, skip_special_tokens=False)
    assert hf.eos_token_id == special_ids(tok)["eot_id"]
    assert hf.pad_token_id == special_ids(tok)["pad_id"] and hf.mask_token_id == special_ids(tok)["mask_id"]
    # A plain load (no arguments) works too and agrees.
    from transformers import PreTrainedTokenizerFast

    plain = PreTrainedTokenizerFast(tokenizer_file=str(corpus["tokenizer"]))
    assert plain.encode(texts[0], add_special_tokens=False) == tok.encode(texts[0]).ids


def test_training_is_deterministic_and_sample_excludes_val(corpus, tmp_path):
    again = tmp_path / "tokenizer.json"
    train_tokenizer(corpus["shards"], again, CONFIG)
    assert again.read_bytes() == corpus["tokenizer"].read_bytes()
    # Training only on val documents' text would give a different vocabulary; check that the
    # sampler never yields a val document.
    from pipeline.tokenize.tokenizer import sample_cutoff, sample_texts

    cutoff = sample_cutoff(corpus["shards"], CONFIG)
    sampled = list(sample_texts(corpus["shards"], CONFIG, cutoff))
    assert 0 < sum(len(t.encode()) for t in sampled) <= CONFIG.train_sample_bytes + 50_000
    val_texts = {d["text"] for d, v in zip(corpus["docs"], val_mask([d["id"] for d in corpus["docs"]], CONFIG)) if v}
    assert val_texts and not (val_texts & set(sampled))


def test_existing_tokenizer_is_copied_and_gets_missing_specials(corpus, tmp_path):
    out = tmp_path / "copy.json"
    train_tokenizer([], out, CONFIG.model_copy(update={"tokenizer": str(corpus["tokenizer"])}))
    assert out.read_bytes() == corpus["tokenizer"].read_bytes()

    # A tokenizer with only <|endoftext|> (like the anchors' one) gets <|pad|> and <|mask|> added.
    from tokenizers import decoders, models, pre_tokenizers, trainers

    bare = Tokenizer(models.BPE())
    bare.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bare.decoder = decoders.ByteLevel()
    bare.train_from_iterator(["hello world"] * 10, trainers.BpeTrainer(vocab_size=300, special_tokens=[EOT], show_progress=False))
    bare.save(str(tmp_path / "bare.json"))
    tok = train_tokenizer([], tmp_path / "fixed.json", CONFIG.model_copy(update={"tokenizer": str(tmp_path / "bare.json")}))
    assert set(special_ids(tok)) == {"eot_id", "pad_id", "mask_id"}
    assert special_ids(load_tokenizer(tmp_path / "fixed.json"))["eot_id"] == bare.token_to_id(EOT)

    # A relative path resolves against the recipe's folder, when the recipe is parsed.
    recipe = parse_recipe({"name": "r", "sources": [{"name": "s", "type": "text", "paths": ["x.txt"]}],
                           "tokenize": {"tokenizer": "bare.json"}}, tmp_path)
    assert recipe.tokenize.tokenizer == str(tmp_path.resolve() / "bare.json")
    rel = train_tokenizer([], tmp_path / "rel.json", recipe.tokenize)
    assert rel.get_vocab_size() == tok.get_vocab_size()

    with pytest.raises(FileNotFoundError, match="nope.json"):
        train_tokenizer([], tmp_path / "x.json", CONFIG.model_copy(update={"tokenizer": str(tmp_path / "nope.json")}))


# --- shards ------------------------------------------------------------------------------


def _read_split(tokens: Path, split: str) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in list_shards(tokens / split))


def test_shards_decode_back_to_documents(corpus):
    tokens = corpus["root"] / "tokens"
    tok = Tokenizer.from_file(str(corpus["tokenizer"]))
    eot = special_ids(tok)["eot_id"]
    by_id = {d["id"]: d["text"] for d in corpus["docs"]}
    seen = 0
    for split in ("train", "val"):
        table = _read_split(tokens, split)
        assert table.schema == token_schema(CONFIG.vocab_size)
        for doc_id, ids, n in zip(table["id"].to_pylist(), table["input_ids"].to_pylist(), table["n_tokens"].to_pylist()):
            assert n == len(ids) and ids[-1] == eot and eot not in ids[:-1]
            assert tok.decode(ids[:-1], skip_special_tokens=False) == by_id[doc_id]
            seen += 1
    assert seen == len(corpus["docs"])


def test_shards_open_in_datasets_polars_duckdb(corpus):
    import duckdb
    import polars as pl
    from datasets import load_dataset

    tokens = corpus["root"] / "tokens"
    stats = corpus["stats"]
    train_glob = str(tokens / "train" / "part-*.parquet")

    ds = load_dataset("parquet", data_files={"train": train_glob, "validation": str(tokens / "val" / "*.parquet")})
    assert ds["train"].num_rows == stats.docs_train and ds["validation"].num_rows == stats.docs_val
    assert ds["train"].features["input_ids"].feature.dtype == "uint16"
    assert sum(ds["train"]["n_tokens"]) == stats.tokens_train

    lf = pl.scan_parquet(train_glob)
    assert lf.collect_schema() == pl.Schema({"id": pl.String, "input_ids": pl.List(pl.UInt16), "n_tokens": pl.Int32})
    assert lf.select(pl.col("input_ids").list.len().sum()).collect().item() == stats.tokens_train

    con = duckdb.connect()
    types = dict(con.execute(f"DESCRIBE SELECT * FROM read_parquet('{train_glob}')").fetchall()[i][:2] for i in range(3))
    assert types == {"id": "VARCHAR", "input_ids": "USMALLINT[]", "n_tokens": "INTEGER"}
    total, docs = con.execute(f"SELECT sum(len(input_ids)), count(*) FROM read_parquet('{train_glob}')").fetchone()
    assert (total, docs) == (stats.tokens_train, stats.docs_train)


def test_index_matches_shards(corpus):
    tokens = corpus["root"] / "tokens"
    index = json.loads((tokens / "index.json").read_text())
    tok = load_tokenizer(corpus["tokenizer"])
    assert index["vocab_size"] == 1024 and index["dtype"] == "uint16"
    assert {k: index[k] for k in ("eot_id", "pad_id", "mask_id")} == special_ids(tok)
    assert index["tokenizer_sha256"] == sha256_file(corpus["tokenizer"])
    files = sorted(str(p.relative_to(tokens)) for s in ("train", "val") for p in list_shards(tokens / s))
    assert sorted(e["file"] for e in index["shards"]) == files
    for entry in index["shards"]:
        assert set(entry) == {"split", "file", "tokens", "documents", "bytes", "sha256", "input", "source"}
        sources = set(pq.read_table(corpus["root"] / "dedup" / entry["input"], columns=["source"])["source"].to_pylist())
        assert entry["source"] == (sources.pop() if len(sources) == 1 else None)  # what a trainer's mix weighs
        path = tokens / entry["file"]
        meta = pq.ParquetFile(path).metadata
        assert entry["sha256"] == sha256_file(path)
        assert entry["documents"] == meta.num_rows
        assert entry["tokens"] == pq.read_table(path, columns=["n_tokens"])["n_tokens"].to_numpy().sum()
    assert index["totals"]["train"]["tokens"] == corpus["stats"].tokens_train
    assert index["totals"]["val"]["documents"] == corpus["stats"].docs_val


def test_shards_close_at_first_document_past_target(corpus):
    tokens = corpus["root"] / "tokens"
    index = json.loads((tokens / "index.json").read_text())
    train = [e for e in index["shards"] if e["split"] == "train"]
    assert len(train) > 2
    # Each input shard is one encode unit: its token shards close at the target, but its last.
    last_of_input = {e["input"]: e["file"] for e in train}
    closed = [e for e in train if e["file"] != last_of_input[e["input"]]]
    assert closed
    for entry in closed:
        n = pq.read_table(tokens / entry["file"], columns=["n_tokens"])["n_tokens"].to_numpy()
        assert n.sum() >= CONFIG.shard_tokens > n[:-1].sum()
    # Row groups hold about row_group_tokens tokens, so a reader can fetch part of a shard.
    assert pq.ParquetFile(tokens / train[0]["file"]).metadata.num_row_groups >= 2


def test_stats_conserve_documents_and_tokens(corpus):
    s = corpus["stats"]
    n = len(corpus["docs"])
    assert s.docs_in == n == s.docs_out + s.docs_rejected and s.docs_rejected == 0
    assert s.docs_train + s.docs_val == n
    assert 0 < s.docs_val < 0.15 * n
    assert s.bytes_in == sum(len(d["text"].encode()) for d in corpus["docs"])
    assert sum(s.tokens_per_source.values()) == s.tokens_train + s.tokens_val
    assert set(s.tokens_per_source) == {"play", "wikitext", "lingua"}
    langs = s.bytes_per_token_per_language
    assert set(langs) == set(LANGS) | {"en"}
    assert sum(v.bytes for v in langs.values()) == s.bytes_in
    assert sum(v.tokens for v in langs.values()) == s.tokens_train + s.tokens_val - n  # EOT excluded
    for v in langs.values():  # every token stands for at least one byte
        assert v.bytes_per_token == round(v.bytes / v.tokens, 4) >= 1
    lengths = np.concatenate([pq.read_table(p, columns=["n_tokens"])["n_tokens"].to_numpy()
                              for split in ("train", "val") for p in list_shards(corpus["root"] / "tokens" / split)])
    h = s.length_histogram
    assert sum(h.counts) == n and h.max == lengths.max() and h.median == float(np.median(lengths))


# --- behaviour under change --------------------------------------------------------------


def test_split_membership_unchanged_when_documents_are_appended(corpus, tmp_path):
    extra = [
        {"id": f"new-{i}", "text": f"An appended document number {i}.", "source": "new", "language": "en"}
        for i in range(300)
    ]
    shards = write_corpus(tmp_path / "dedup", corpus["docs"][:500] + extra, per_shard=250)
    tokenize_corpus(shards, corpus["tokenizer"], tmp_path / "tokens", CONFIG)

    def members(tokens: Path) -> dict[str, set]:
        return {s: set(_read_split(tokens, s)["id"].to_pylist()) for s in ("train", "val")}

    before, after = members(corpus["root"] / "tokens"), members(tmp_path / "tokens")
    old_ids = {d["id"] for d in corpus["docs"][:500]}
    for split in ("train", "val"):
        assert before[split] & old_ids == after[split] & old_ids
    assert after["val"] - old_ids  # some of the new documents went to val


def test_output_identical_whatever_workers_and_batching(corpus, tmp_path):
    cfg = CONFIG.model_copy(update={"batch_docs": 37, "pack_length": 256})
    a = tokenize_corpus(corpus["shards"], corpus["tokenizer"], tmp_path / "a", cfg, workers=1)
    cfg_b = cfg.model_copy(update={"batch_docs": 100, "batch_bytes": 3000})  # many documents go alone
    assert use_processes(len(corpus["docs"]), 2, cfg_b.batch_docs)  # b really runs encoder processes
    b = tokenize_corpus(corpus["shards"], corpus["tokenizer"], tmp_path / "b", cfg_b, workers=2)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.parquet"))
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.parquet"))
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    from pipeline.tokenize.stage import read_batches

    sizes = [b.num_rows for _, b in read_batches(corpus["shards"], 100, 3000)]
    assert max(sizes) <= 100 and 1 in sizes and sum(sizes) == len(corpus["docs"])
    # Same documents, same tokens as the module's default-batched run.
    ref = json.loads((corpus["root"] / "tokens" / "index.json").read_text())
    assert [e["sha256"] for e in json.loads((tmp_path / "a" / "index.json").read_text())["shards"]] == [e["sha256"] for e in ref["shards"]]
    assert a.tokens_train == b.tokens_train == corpus["stats"].tokens_train


def test_packed_sequences_are_the_document_stream_cut(corpus, tmp_path):
    cfg = CONFIG.model_copy(update={"pack_length": 128})
    tokenize_corpus(corpus["shards"], corpus["tokenizer"], tmp_path / "tokens", cfg)
    tokens = tmp_path / "tokens"
    packed_index = json.loads((tokens / "packed" / "index.json").read_text())
    pad = packed_index["pad_id"]
    for split in ("train", "val"):
        docs = _read_split(tokens, split)
        stream = np.concatenate([np.asarray(x, dtype=np.uint16) for x in docs["input_ids"].to_pylist()])
        packed = _read_split(tokens / "packed", split)
        rows = packed["input_ids"].to_pylist()
        assert all(len(r) == 128 for r in rows)
        n = packed["n_tokens"].to_numpy()
        assert (n[:-1] == 128).all() and 0 < n[-1] <= 128
        flat = np.concatenate([np.asarray(r, dtype=np.uint16) for r in rows])
        assert np.array_equal(flat[: len(stream)], stream)
        assert (flat[len(stream) :] == pad).all() and packed_index["padded_tokens"][split] == len(flat) - len(stream)


def test_empty_documents_are_rejected_with_reason_and_marker_text_stays_text(corpus, tmp_path):
    docs = [
        {"id": "a", "text": "Hello world.", "source": "s", "language": "en"},
        {"id": "empty", "text": "", "source": "s", "language": "en"},
        {"id": "marker", "text": f"before {EOT} after", "source": "s", "language": "en"},
    ]
    shards = write_corpus(tmp_path / "dedup", docs)
    stats = tokenize_corpus(shards, corpus["tokenizer"], tmp_path / "tokens", CONFIG.model_copy(update={"val_fraction": 0}))
    assert (stats.docs_in, stats.docs_out, stats.docs_rejected) == (3, 2, 1)
    rejected = pq.read_table(tmp_path / "rejected" / f"tokenize-{shards[0].name}")
    assert rejected.schema == REJECTED_SCHEMA
    row = rejected.to_pylist()[0]
    assert row["id"] == "empty" and row["stage"] == "tokenize" and row["filter"] == "empty_encoding"
    assert "0 tokens" in row["reason"]
    table = _read_split(tmp_path / "tokens", "train")
    ids = dict(zip(table["id"].to_pylist(), table["input_ids"].to_pylist()))
    eot = special_ids(load_tokenizer(corpus["tokenizer"]))["eot_id"]
    assert ids["marker"].count(eot) == 1 and ids["marker"][-1] == eot  # the literal marker is not a control token
    assert stats.rejected_files == [f"rejected/tokenize-{shards[0].name}"]  # relative: the folder may move
    assert stats.rejected_by_filter == {"empty_encoding": 1}


def test_rerun_replaces_output_and_leaves_no_temporaries(corpus, tmp_path):
    out = tmp_path / "tokens"
    (out / "train").mkdir(parents=True)
    (out / "train" / "part-09999.parquet").write_bytes(b"stale")
    (tmp_path / ".tmp-tokens.killed-run").mkdir()  # staging folder of a killed run
    tokenize_corpus(corpus["shards"][:1], corpus["tokenizer"], out, CONFIG)
    assert not (out / "train" / "part-09999.parquet").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_bad_input_names_file_and_record(corpus, tmp_path):
    no_text = write_parquet(pa.table({"id": ["x"]}), tmp_path / "a" / "part-00000.parquet")
    with pytest.raises(ValueError, match=r"part-00000\.parquet.*'text'"):
        tokenize_corpus([no_text], corpus["tokenizer"], tmp_path / "t1", CONFIG)
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    null_text = write_parquet(pa.table({"id": ["ok", "broken"], "text": ["fine", None]}, schema=schema), tmp_path / "b" / "part-00000.parquet")
    with pytest.raises(ValueError, match=r"part-00000\.parquet: record 'broken' has a null text"):
        tokenize_corpus([null_text], corpus["tokenizer"], tmp_path / "t2", CONFIG)
    assert not (tmp_path / "t2").exists()


def test_vocabulary_past_uint16_writes_uint32(corpus, tmp_path):
    from tokenizers import AddedToken

    tok = Tokenizer.from_file(str(corpus["tokenizer"]))
    tok.add_tokens([AddedToken(f"<w{i}>") for i in range(65_000)])  # ordinary added words
    big = tmp_path / "big.json"
    tok.save(str(big))
    top = tok.token_to_id("<w64999>")
    assert top > 65535
    docs = [{"id": "d", "text": "a <w64999> b", "source": "s", "language": "en"}]
    shards = write_corpus(tmp_path / "dedup", docs)
    stats = tokenize_corpus(shards, big, tmp_path / "tokens", CONFIG.model_copy(update={"val_fraction": 0}))
    assert stats.dtype == "uint32"
    table = _read_split(tmp_path / "tokens", "train")
    assert table.schema == token_schema(tok.get_vocab_size()) and table.schema.field("input_ids").type.value_type == pa.uint32()
    assert top in table["input_ids"][0].as_py()
    assert json.loads((tmp_path / "tokens" / "index.json").read_text())["dtype"] == "uint32"


def test_training_without_text_says_so(tmp_path):
    shards = write_corpus(tmp_path / "dedup", [{"id": "e", "text": "", "source": "s", "language": "en"}])
    with pytest.raises(ValueError, match="no train-split text"):
        train_tokenizer(shards, tmp_path / "tokenizer.json", CONFIG)
    assert not (tmp_path / "tokenizer.json").exists()


def test_killed_encoding_resumes_from_finished_shards_to_the_same_bytes(corpus, tmp_path):
    """One encode unit per input shard: a run killed after some units reruns only the others, and
    the token folder equals an uninterrupted run's (and the 2-process run's of the fixture)."""
    from test_dedup import _DyingMapper, _Killed

    shards = corpus["shards"]
    assert len(shards) >= 3
    root = tmp_path / "corpus"
    dying = _DyingMapper(2)
    with pytest.raises(_Killed):
        tokenize_corpus(shards, corpus["tokenizer"], root / "tokens", CONFIG, mapper=dying, key="k")
    assert not (root / "tokens").exists()  # nothing a rerun or a reader would trust
    again = _DyingMapper(10**9)
    stats = tokenize_corpus(shards, corpus["tokenizer"], root / "tokens", CONFIG, mapper=again, key="k")
    assert len(again.ran) == len(shards) - 2
    ref = corpus["root"] / "tokens"
    files = sorted(p.relative_to(ref).as_posix() for p in ref.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(root / "tokens").as_posix() for p in (root / "tokens").rglob("*") if p.is_file())
    for f in files:
        assert (root / "tokens" / f).read_bytes() == (ref / f).read_bytes(), f
    assert stats.tokens_train == corpus["stats"].tokens_train
