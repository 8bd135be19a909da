"""A small corpus folder in the documented token-shard layout, for the trainer's tests.

Built from generated text (a play, tests/fixtures_corpus.py) with a real `tokenizers` BPE, written
with pyarrow exactly as the schema says, so the trainer is tested against the contract
and not against the tokenize stage's code.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fixtures_corpus import novel_text, play_text  # noqa: F401  (novel_text: tests import it from here)
from pipeline.records import Manifest, SplitTotals, TokenIndex, TokenShard

EOT = "<|endoftext|>"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def play_docs(n_chars: int = 200_000, doc_chars: int = 2_000) -> list[str]:
    from model.heldout import join_pieces

    return join_pieces(play_text(n_chars)[:n_chars].split("\n\n"), doc_chars, "\n\n")


def train_tokenizer(docs: list[str], vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT, "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(docs, trainer)
    return tok


def write_shards(folder: Path, ids: list[list[int]], doc_ids: list[str], per_shard: int, vocab_size: int):
    folder.mkdir(parents=True, exist_ok=True)
    id_type = pa.uint16() if vocab_size <= 65536 else pa.uint32()
    schema = pa.schema([pa.field("id", pa.string(), nullable=False),
                        pa.field("input_ids", pa.list_(id_type), nullable=False),
                        pa.field("n_tokens", pa.int32(), nullable=False)])
    shards = []
    for k, s in enumerate(range(0, len(ids), per_shard)):
        chunk = ids[s: s + per_shard]
        table = pa.table({"id": doc_ids[s: s + per_shard], "input_ids": chunk,
                          "n_tokens": [len(x) for x in chunk]}, schema=schema)
        path = folder / f"part-{k:05d}.parquet"
        pq.write_table(table, path, compression="zstd")
        shards.append(path)
    return shards


def make_corpus(out: Path, n_chars: int = 200_000, vocab_size: int = 512, val_every: int = 10,
                docs_per_shard: int = 30, sources: tuple[str, ...] = ()) -> Path:
    """Write DATA/{tokenizer.json, manifest.json, tokens/{train,val}/part-*.parquet, tokens/index.json};
    with `sources`, shard k of each split is recorded as coming from sources[k % len(sources)]."""
    out = Path(out)
    docs = play_docs(n_chars)
    tok = train_tokenizer(docs, vocab_size)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    eot = tok.token_to_id(EOT)
    enc = [e.ids + [eot] for e in tok.encode_batch(docs)]
    names = [f"play-{i:05d}" for i in range(len(docs))]
    val_idx = [i for i in range(len(docs)) if i % val_every == 0]
    train_idx = [i for i in range(len(docs)) if i % val_every]
    V = tok.get_vocab_size()
    entries = []
    for split, idx in (("train", train_idx), ("val", val_idx)):
        paths = write_shards(out / "tokens" / split, [enc[i] for i in idx], [names[i] for i in idx],
                             docs_per_shard, V)
        for k, p in enumerate(paths):
            n = pq.read_table(p, columns=["n_tokens"]).column("n_tokens").to_pylist()
            entries.append(TokenShard(split=split, file=f"{split}/{p.name}", tokens=sum(n), documents=len(n),
                                      bytes=p.stat().st_size, sha256=_sha(p),
                                      source=sources[k % len(sources)] if sources else None))
    Manifest(name="test-play", created="2026-01-01T00:00:00+00:00", recipe_hash="test-recipe-0001", recipe={},
             code_version="test").write(out / Manifest.file_name)
    totals = {split: SplitTotals(documents=sum(e.documents for e in entries if e.split == split),
                                 tokens=sum(e.tokens for e in entries if e.split == split),
                                 shards=sum(e.split == split for e in entries)) for split in ("train", "val")}
    TokenIndex(columns={"id": "string", "input_ids": "list<uint16>", "n_tokens": "int32"}, dtype="uint16",
               vocab_size=V, eot_id=eot, pad_id=tok.token_to_id("<|pad|>"), tokenizer_sha256=_sha(out / "tokenizer.json"),
               val_fraction=1 / val_every, seed=0, shard_tokens=0, totals=totals,
               shards=entries).write(out / TokenIndex.file_name)
    return out
