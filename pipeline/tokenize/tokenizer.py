"""The tokenizer: a byte-level BPE trained on a seeded sample of the corpus, or a given one.

Byte-level with no normalizer and no prefix space means decode(encode(text)) == text for
every string: nothing is lowercased, composed or trimmed, and every byte has a token.
The file is a standard `tokenizer.json`; `hf_tokenizer()` opens it with transformers.
"""
from __future__ import annotations

import itertools

import shutil
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from pipeline.io import atomic_path, write_tokenizer_config
from pipeline.tokenize.config import TokenizeConfig

EOT = "<|endoftext|>"  # appended after every document
PAD = "<|pad|>"  # fills the tail of a packed sequence
MASK = "<|mask|>"  # reserved for masked-LM objectives
SPECIAL_TOKENS = [EOT, PAD, MASK]

# The training sample and the train/val split hash ids with different keys, so the sample
# is not biased towards either end of the split hash.
_SAMPLE_KEY = 0x5A4D504C


def split_hashes(ids: Iterable[str], seed: int) -> np.ndarray:
    """xxh64 of each id (UTF-8) under `seed`: stable across runs, versions and corpus growth."""
    return np.fromiter((xxhash.xxh64_intdigest(i.encode("utf-8"), seed) for i in ids), dtype=np.uint64)


def val_mask(ids: Iterable[str], config: TokenizeConfig) -> np.ndarray:
    """True for documents in the val split: their hash falls in the lowest `val_fraction` of the range."""
    cutoff = np.uint64(min(int(config.val_fraction * 2.0**64), 2**64 - 1))
    return split_hashes(ids, _key(config.seed)) < cutoff


def _key(seed: int) -> int:
    return seed & 0xFFFFFFFFFFFFFFFF  # xxhash takes an unsigned 64-bit seed


def new_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE configured for exact round trips."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def special_ids(tok: Tokenizer) -> dict[str, int]:
    ids = {name: tok.token_to_id(name) for name in SPECIAL_TOKENS}
    missing = [n for n, i in ids.items() if i is None]
    if missing:
        raise ValueError(f"tokenizer lacks special tokens {missing}")
    return {"eot_id": ids[EOT], "pad_id": ids[PAD], "mask_id": ids[MASK]}


def _read_column_batches(path: Path, columns: list[str]):
    f = pq.ParquetFile(path)
    missing = [c for c in columns if c not in f.schema_arrow.names]
    if missing:
        raise ValueError(f"{path}: shard lacks column(s) {missing}")
    yield from f.iter_batches(batch_size=8192, columns=columns)


def sample_cutoff(input_paths: list[Path], config: TokenizeConfig) -> int | None:
    """Largest sample hash admitted to the training sample (None: take every train document).

    Documents are ranked by a seeded hash of their id and taken in that order until
    `train_sample_bytes` of text is reached: the sample depends neither on shard layout
    nor on document order, and val documents are never part of it.
    """
    if config.train_sample_bytes is None:
        return None
    hashes, sizes = [], []
    for path in input_paths:
        for batch in _read_column_batches(path, ["id", "text"]):
            ids = batch.column(0).to_pylist()
            keep = ~val_mask(ids, config)
            hashes.append(split_hashes(ids, _key(config.seed ^ _SAMPLE_KEY))[keep])
            sizes.append(pc.binary_length(batch.column(1)).to_numpy(zero_copy_only=False)[keep])
    if not hashes:
        return None
    h = np.concatenate(hashes)
    s = np.concatenate(sizes).astype(np.int64)
    if s.sum() <= config.train_sample_bytes:
        return None
    order = np.argsort(h, kind="stable")
    reached = np.searchsorted(np.cumsum(s[order]), config.train_sample_bytes)
    return int(h[order][reached])


def sample_texts(input_paths: list[Path], config: TokenizeConfig, cutoff: int | None) -> Iterator[str]:
    for path in input_paths:
        for batch in _read_column_batches(path, ["id", "text"]):
            ids = batch.column(0).to_pylist()
            keep = ~val_mask(ids, config)
            if cutoff is not None:
                keep &= split_hashes(ids, _key(config.seed ^ _SAMPLE_KEY)) <= np.uint64(cutoff)
            texts = batch.column(1).to_pylist()
            yield from (t for t, k in zip(texts, keep) if k and t)


def train_tokenizer(input_paths: list[Path], out_path: Path, config: TokenizeConfig, sample: dict | None = None) -> Tokenizer:
    """Train (or load `config.tokenizer`, absolute once the recipe is parsed) and save it as
    `out_path` (a standard tokenizer.json), with the transformers files beside it (TOKENIZER_CONFIG_FILES);
    `sample`, if given, receives the documents and bytes of the training sample."""
    out_path = Path(out_path)
    tok = _use_existing(Path(config.tokenizer), out_path) if config.tokenizer else _train(input_paths, out_path, config, sample)
    write_tokenizer_config(out_path.parent, eos_token=EOT, pad_token=PAD, mask_token=MASK)
    return tok


def _train(input_paths: list[Path], out_path: Path, config: TokenizeConfig, sample: dict | None) -> Tokenizer:
    input_paths = [Path(p) for p in input_paths]
    cutoff = sample_cutoff(input_paths, config)
    tok = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = sample_texts(input_paths, config, cutoff)
    first = next(texts, None)
    if first is None:
        raise ValueError(f"no train-split text to train a tokenizer on in {len(input_paths)} shard(s)")
    counted = _chain(first, texts, sample if sample is not None else {})
    tok.train_from_iterator(counted, trainer)
    with atomic_path(out_path) as tmp:
        tok.save(str(tmp))
    return tok


def _chain(first: str, rest: Iterator[str], counts: dict) -> Iterator[str]:
    counts.update(docs=0, bytes=0)
    for text in itertools.chain([first], rest):
        counts["docs"] += 1
        counts["bytes"] += len(text.encode("utf-8"))
        yield text


def _use_existing(src: Path, out_path: Path) -> Tokenizer:
    """Copy a given tokenizer.json; special tokens it lacks are added (and the copy says so)."""
    if not src.is_file():
        raise FileNotFoundError(f"tokenize.tokenizer: {src} not found")
    try:
        tok = Tokenizer.from_file(str(src))
    except Exception as e:  # tokenizers raises a bare Exception on a malformed file
        raise ValueError(f"{src}: not a tokenizer.json: {e}") from None
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        tok.add_special_tokens(missing)
        with atomic_path(out_path) as tmp:
            tok.save(str(tmp))
    elif not (out_path.exists() and src.resolve() == out_path.resolve()):
        with atomic_path(out_path) as tmp:
            shutil.copyfile(src, tmp)
    return tok


def load_tokenizer(path: Path) -> Tokenizer:
    tok = Tokenizer.from_file(str(path))
    special_ids(tok)  # fail early on a tokenizer without our special tokens
    return tok


def hf_tokenizer(path: Path, **kwargs):
    """The tokenizer as a transformers PreTrainedTokenizerFast, special tokens named."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(path), eos_token=EOT, bos_token=EOT, pad_token=PAD, mask_token=MASK, **kwargs
    )
