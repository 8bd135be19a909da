"""Token shards in, fixed-length training sequences out.

`model/` knows a corpus folder only through its documented schema:

    DATA/tokens/train/part-*.parquet   id: string, input_ids: list<uint16|uint32>, n_tokens: int32
    DATA/tokens/val/part-*.parquet     (same; each document already ends with end-of-text)
    DATA/tokens/index.json             pipeline.records.TokenIndex: vocab_size, special ids, shards (+ sha256)
    DATA/tokenizer.json                Hugging Face `tokenizers` file with <|endoftext|>
    DATA/manifest.json                 the corpus manifest (its sha256 and recipe_hash go into the run)

Training order: every epoch draws a seeded permutation of the shards and groups them
into shuffle windows (up to 2**27 tokens each); with source weights (`mix`), a shard of a
source of weight w contributes each of its documents floor(w) times, plus once more with
probability w - floor(w), drawn from (seed, epoch, shard) and shuffled, so a weight above 1
repeats a source and below 1 samples it, identically on a resumed run; a window's documents are concatenated
(end-of-text tokens keep the boundaries) and cut into sequences of T+1 tokens that
overlap by one (inputs and shifted targets), visited in a seeded permutation. Under DDP,
rank r takes every world_size-th sequence of each window. The position (epoch, window
cursor, sequence cursor) is all a checkpoint needs to resume the stream exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from pipeline.io import sha256_file
from pipeline.records import Manifest, RecordError, TokenIndex, TokenShard

EOT_TOKEN = "<|endoftext|>"


class DataError(ValueError):
    """The corpus folder cannot be trained on; the message names the file and the problem."""


@dataclass
class Shard:
    path: Path
    split: str
    n_tokens: int
    n_docs: int
    sha256: str | None
    max_id: int  # largest token id (from Parquet statistics when the writer stored them)
    source: str | None = None  # the recipe source of its documents (tokens/index.json), for `mix`

    def record(self) -> dict:
        return {"split": self.split, "path": f"tokens/{self.split}/{self.path.name}", "n_tokens": self.n_tokens,
                "n_docs": self.n_docs, "sha256": self.sha256}


@dataclass
class Corpus:
    """A validated corpus folder: shards, vocabulary facts, tokenizer and provenance."""

    root: Path
    index: TokenIndex
    vocab_size: int
    eot_id: int
    pad_id: int | None
    mask_id: int | None
    train: list[Shard] = field(default_factory=list)
    val: list[Shard] = field(default_factory=list)

    @property
    def tokenizer_path(self) -> Path:
        return self.root / "tokenizer.json"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def tokenizer(self):
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.tokenizer_path))

    def provenance(self) -> dict:
        """What the run records so every result points back to the corpus that made it."""
        manifest_sha = recipe_hash = None
        if self.manifest_path.exists():
            manifest_sha = sha256_file(self.manifest_path)
            try:
                recipe_hash = Manifest.load(self.manifest_path).recipe_hash
            except RecordError as e:
                raise DataError(str(e)) from None
        return {
            "data_dir": str(self.root.resolve()),
            "manifest_sha256": manifest_sha,
            "recipe_hash": recipe_hash,
            "tokenizer_sha256": sha256_file(self.tokenizer_path),
            "index_sha256": sha256_file(self.root / "tokens" / "index.json"),
            "vocab_size": self.vocab_size,
            "eot_id": self.eot_id,
            "train_tokens": sum(s.n_tokens for s in self.train),
            "val_tokens": sum(s.n_tokens for s in self.val),
            "shards": [s.record() for s in self.train + self.val],
        }


def _read_shard_facts(path: Path, split: str, entry: TokenShard | None) -> Shard:
    try:
        meta = pq.read_metadata(path)
        schema = pq.read_schema(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(f"token shard {path} cannot be read as Parquet: {e}") from e
    if "input_ids" not in schema.names:
        raise DataError(f"token shard {path} has no input_ids column (columns: {schema.names})")
    t = schema.field("input_ids").type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_integer(t.value_type):
        raise DataError(f"token shard {path}: input_ids must be a list of integers, got {t}")
    if "n_tokens" in schema.names:
        n_tokens = int(pc.sum(pq.read_table(path, columns=["n_tokens"]).column("n_tokens")).as_py() or 0)
    else:
        n_tokens = int(pc.sum(pc.list_value_length(pq.read_table(path, columns=["input_ids"]).column(0))).as_py() or 0)
    return Shard(path=path, split=split, n_tokens=n_tokens, n_docs=meta.num_rows,
                 sha256=entry.sha256 if entry else None, max_id=_max_token_id(path, meta),
                 source=entry.source if entry else None)


def _max_token_id(path: Path, meta) -> int:
    """Largest token id in a shard, read from the row groups' min/max statistics (no data read);
    a full scan only if some row group lacks them."""
    col = next(i for i in range(meta.num_columns) if meta.schema.column(i).path.startswith("input_ids"))
    best = -1
    for rg in range(meta.num_row_groups):
        stats = meta.row_group(rg).column(col).statistics
        if meta.row_group(rg).num_rows == 0:
            continue
        if stats is None or not stats.has_min_max:
            flat = pc.list_flatten(pq.read_table(path, columns=["input_ids"]).column(0))
            return int(pc.max(flat).as_py()) if len(flat) else -1
        best = max(best, int(stats.max))
    return best


def check_vocabulary(shards: list[Shard], vocab_limit: int):
    """Fail before training if any shard holds a token id the model has no embedding for."""
    for s in shards:
        if s.max_id >= vocab_limit:
            raise DataError(f"token shard {s.path} holds token id {s.max_id}, beyond the model's vocabulary "
                            f"of {vocab_limit}")


def open_corpus(data_dir, need_val: bool = False) -> Corpus:
    """Check a corpus folder and describe it; every problem is a DataError naming the file."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"corpus folder {root} does not exist")
    index_path = root / "tokens" / "index.json"
    if not index_path.exists():
        raise DataError(f"{index_path} is missing: run the tokenize stage first")
    try:
        index = TokenIndex.load(index_path)
    except RecordError as e:
        raise DataError(str(e)) from None

    tok_path = root / "tokenizer.json"
    if not tok_path.exists():
        raise DataError(f"{tok_path} is missing")
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(tok_path))
    except Exception as e:
        raise DataError(f"{tok_path} cannot be loaded by tokenizers: {e}") from e
    if tok.get_vocab_size() != index.vocab_size:
        raise DataError(
            f"tokenizer mismatch: {tok_path} has {tok.get_vocab_size()} tokens but {index_path} says "
            f"vocab_size={index.vocab_size}"
        )
    if tok.token_to_id(EOT_TOKEN) != index.eot_id:
        raise DataError(
            f"tokenizer mismatch: {tok_path} maps {EOT_TOKEN} to {tok.token_to_id(EOT_TOKEN)}, "
            f"{index_path} says eot_id={index.eot_id}"
        )

    corpus = Corpus(root=root, index=index, vocab_size=index.vocab_size, eot_id=index.eot_id,
                    pad_id=index.pad_id, mask_id=index.mask_id)
    for split in ("train", "val"):
        folder = root / "tokens" / split
        listed = {Path(e.file).name: e for e in index.shards_of(split)}
        # Shards the index promises must exist: a missing one would silently shrink the data.
        for name in sorted(listed):
            if not (folder / name).exists():
                raise DataError(f"shard {folder / name} is listed in {index_path} but missing")
        found = sorted(p for p in folder.glob("part-*.parquet") if not p.name.startswith(".tmp-"))
        setattr(corpus, split, [_read_shard_facts(p, split, listed.get(p.name)) for p in found])
    if not corpus.train:
        raise DataError(f"no training shards in {root / 'tokens' / 'train'} (expected part-*.parquet)")
    if sum(s.n_tokens for s in corpus.train) == 0:
        raise DataError(f"the training shards in {root / 'tokens' / 'train'} hold no tokens")
    if need_val and (not corpus.val or sum(s.n_tokens for s in corpus.val) == 0):
        raise DataError(f"no validation tokens in {root / 'tokens' / 'val'}")
    return corpus


def load_shard_tokens(shard: Shard, vocab_limit: int) -> np.ndarray:
    """All tokens of one shard as one flat array, documents in file order."""
    try:
        col = pq.read_table(shard.path, columns=["input_ids"]).column("input_ids")
    except Exception as e:
        raise DataError(f"token shard {shard.path} cannot be read: {e}") from e
    arr = pc.list_flatten(col).to_numpy()
    if arr.size and int(arr.max()) >= vocab_limit:
        bad = int(arr.max())
        raise DataError(f"token shard {shard.path} holds token id {bad}, beyond the model's vocabulary of {vocab_limit}")
    return arr


def _perm(n: int, *key: int) -> np.ndarray:
    return np.random.default_rng(list(key)).permutation(n)


class TrainSequences:
    """Endless, seeded, resumable stream of (x, y) batches of shape (batch, T) for one rank.

    Shards are grouped into shuffle windows: each epoch takes the shards in a seeded order
    and fills windows of up to `window_tokens` tokens. A window's shards are concatenated
    (documents keep their end-of-text tokens) and cut into sequences of T+1 tokens, visited
    in a seeded permutation. Shards written one source at a time are thus mixed inside a
    window; a corpus smaller than one window (every CPU-sized one) is shuffled globally.
    """

    def __init__(self, shards: list[Shard], seq_len: int, batch_size: int, seed: int, vocab_limit: int,
                 rank: int = 0, world_size: int = 1, window_tokens: int = 1 << 27, mix: dict[str, float] | None = None):
        self.shards, self.T, self.B = shards, seq_len, batch_size
        self.seed, self.vocab_limit, self.rank, self.world = seed, vocab_limit, rank, world_size
        self.window_tokens = window_tokens
        self.mix = dict(mix or {})
        self.weights = self._weights(shards, self.mix)
        self.sources = sorted({s.source or "?" for s in shards})
        self.consumed = dict.fromkeys(self.sources, 0)  # input tokens of the batches drawn, per source
        self.epoch, self.window_cursor, self.seq_cursor = 0, 0, 0
        self._loaded: tuple | None = None  # (epoch, window_cursor, tokens, starts for this rank, segments)
        total = sum(s.n_tokens * w for s, w in zip(shards, self.weights))
        # A lower bound (windows may merge shards' tails into more sequences), used only to refuse
        # data too small to give every rank a sequence.
        per_rank = int(sum(max(0, (s.n_tokens * w - 1) // seq_len) for s, w in zip(shards, self.weights))) // world_size
        if per_rank == 0:
            raise DataError(
                f"the training shards hold {total} tokens, too few for one sequence of {seq_len + 1} tokens "
                f"per rank ({world_size} ranks); lower the context length or add data"
            )
        self.sequences_per_epoch = per_rank

    @staticmethod
    def _weights(shards: list[Shard], mix: dict[str, float]) -> list[float]:
        if not mix:
            return [1.0] * len(shards)
        known = {s.source for s in shards}
        if None in known:
            raise DataError("mix: the corpus's tokens/index.json does not name each shard's source "
                            "(a corpus tokenized before sources were recorded): run its tokenize stage again")
        unknown = sorted(set(mix) - known)
        if unknown:
            raise DataError(f"mix: no training documents of source(s) {unknown}; the corpus has {sorted(known)}")
        weights = [mix.get(s.source, 1.0) for s in shards]
        if not any(w > 0 for w in weights):
            raise DataError(f"mix: every source has weight 0 ({mix})")
        return weights

    def windows(self, epoch: int) -> list[list[int]]:
        """Shard numbers of each shuffle window of `epoch`, in visiting order."""
        out, cur, size = [], [], 0
        for i in _perm(len(self.shards), self.seed, epoch):
            if cur and size + self.shards[i].n_tokens > self.window_tokens:
                out.append(cur)
                cur, size = [], 0
            cur.append(int(i))
            size += int(self.shards[i].n_tokens * self.weights[i])
        return out + [cur]

    # position ---------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "window_cursor": self.window_cursor, "seq_cursor": self.seq_cursor,
                "seed": self.seed, "seq_len": self.T, "window_tokens": self.window_tokens,
                "rank": self.rank, "world_size": self.world, "mix": self.mix, "consumed": dict(self.consumed)}

    def load_state_dict(self, s: dict):
        if "window_cursor" not in s:
            raise ValueError("the checkpoint's data position predates shuffle windows; start a new run folder")
        saved = (s["seq_len"], s["seed"], s.get("window_tokens"))
        if saved != (self.T, self.seed, self.window_tokens):
            raise ValueError(f"data position was saved for (seq_len, seed, window_tokens)={saved}, "
                             f"this run has {(self.T, self.seed, self.window_tokens)}")
        if s.get("mix", {}) != self.mix:
            raise ValueError(f"data position was saved with mix {s.get('mix', {})}, this run has {self.mix}")
        self.epoch, self.window_cursor, self.seq_cursor = s["epoch"], s["window_cursor"], s["seq_cursor"]
        self.consumed.update(s.get("consumed", {}))
        self._loaded = None

    # reading ----------------------------------------------------------------
    def _current(self):
        key = (self.epoch, self.window_cursor)
        if self._loaded is None or self._loaded[:2] != key:
            members = self.windows(self.epoch)[self.window_cursor]
            parts = [self._shard_tokens(i) for i in members]
            tokens = np.concatenate(parts)
            # where each shard's tokens end in the window, and its source: the mixture consumed
            segments = (np.cumsum([p.size for p in parts]), [self.shards[i].source or "?" for i in members])
            # Later epochs cut at another offset, so sequences do not repeat verbatim.
            offset = 0 if self.epoch == 0 else int(_perm(self.T, self.seed, self.epoch, self.window_cursor, 1)[0])
            n = max(0, (tokens.size - 1 - offset) // self.T)
            if n == 0 and offset:
                offset, n = 0, max(0, (tokens.size - 1) // self.T)
            starts = offset + self.T * _perm(n, self.seed, self.epoch, self.window_cursor)
            self._loaded = (*key, tokens, starts[self.rank:: self.world], segments)
        return self._loaded[2], self._loaded[3]

    def _shard_tokens(self, i: int) -> np.ndarray:
        """Shard i's tokens in this epoch: all of them, or its documents repeated or sampled by weight."""
        tokens, w = load_shard_tokens(self.shards[i], self.vocab_limit), self.weights[i]
        if w == 1.0:
            return tokens
        lengths = pq.read_table(self.shards[i].path, columns=["input_ids"]).column(0)
        lengths = pc.list_value_length(lengths).to_numpy(zero_copy_only=False).astype(np.int64)
        rng = np.random.default_rng([self.seed, self.epoch, i, 7])
        copies = np.floor(w).astype(np.int64) + (rng.random(lengths.size) < w - np.floor(w))
        docs = rng.permutation(np.repeat(np.arange(lengths.size), copies))
        if docs.size == 0:
            return tokens[:0]
        ends = np.cumsum(lengths)
        return np.concatenate([tokens[e - n: e] for e, n in zip(ends[docs], lengths[docs])])

    def _count(self, starts: np.ndarray):
        """Add the input tokens of sequences starting at `starts` of the loaded window, per source."""
        ends, names = self._loaded[4]
        for s in starts.tolist():
            a, b = s, s + self.T
            k = int(np.searchsorted(ends, a, side="right"))
            while a < b and k < len(names):
                take = min(b, int(ends[k])) - a
                self.consumed[names[k]] = self.consumed.get(names[k], 0) + take
                a += take
                k += 1

    def _advance_window(self):
        self.window_cursor += 1
        self.seq_cursor = 0
        if self.window_cursor == len(self.windows(self.epoch)):
            self.epoch, self.window_cursor = self.epoch + 1, 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        picks = []  # (tokens, starts) pieces; a batch may span a window boundary
        need = self.B
        while need:
            tokens, starts = self._current()
            take = starts[self.seq_cursor: self.seq_cursor + need]
            if take.size:
                picks.append((tokens, take))
                self._count(take)
                self.seq_cursor += take.size
                need -= take.size
            if self.seq_cursor >= starts.size:
                self._advance_window()
        rows = [tok[s[:, None] + np.arange(self.T + 1)] for tok, s in picks]
        batch = torch.from_numpy(np.concatenate(rows).astype(np.int64))
        return batch[:, :-1], batch[:, 1:]


class ValSequences:
    """The validation split as one token stream, cut into sequences of T targets.

    Every token after the first is a target exactly once; the last sequence is padded and
    its padding targets are ignored (-100). `max_tokens` caps the stream for fast evals.
    """

    def __init__(self, shards: list[Shard], seq_len: int, vocab_limit: int, max_tokens: int | None = None):
        parts, total = [], 0
        for s in shards:
            arr = load_shard_tokens(s, vocab_limit)
            if max_tokens is not None and total + arr.size > max_tokens + 1:
                arr = arr[: max_tokens + 1 - total]
            parts.append(arr)
            total += arr.size
            if max_tokens is not None and total >= max_tokens + 1:
                break
        self.tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if self.tokens.size < 2:
            raise DataError("the validation split holds fewer than 2 tokens")
        self.T = seq_len

    @property
    def n_targets(self) -> int:
        return int(self.tokens.size - 1)

    def target_ids(self) -> np.ndarray:
        return self.tokens[1:]

    def batches(self, batch_size: int):
        T, toks = self.T, self.tokens
        n_seq = -(-self.n_targets // T)
        for b0 in range(0, n_seq, batch_size):
            rows = min(batch_size, n_seq - b0)
            x = np.zeros((rows, T), dtype=np.int64)
            y = np.full((rows, T), -100, dtype=np.int64)
            for r in range(rows):
                s = (b0 + r) * T
                seg = toks[s: s + T + 1].astype(np.int64)
                x[r, : seg.size - 1] = seg[:-1]
                y[r, : seg.size - 1] = seg[1:]
            yield torch.from_numpy(x), torch.from_numpy(y)
