"""The tokenize stage: document shards in, token shards (train/val) plus an index out.

Shards are read in order, batch by batch; each batch is encoded with `encode_batch_fast`
(the Rust tokenizer's own thread pool spreads it over the cores) while the previous batch
is split, counted and written, so reading and writing hide behind encoding. Output depends
only on the input rows and the config: the same bytes whatever `workers` is.

Everything is written into a staging folder next to `out_dir` and renamed into place at
the end, index.json last: a killed run leaves no `tokens/` a rerun would trust.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.io import replace_dir, sha256_file, write_json, write_parquet
from pipeline.units import LocalMapper, Mapper, Work, default_key, save_npy, scratch_dir
from pipeline.records import TOKEN_INDEX_FORMAT, TokenIndex, TokenizeStats
from pipeline.schema import rejected_table, token_schema
from pipeline.tokenize.config import TokenizeConfig
from pipeline.tokenize.shards import SequencePacker, ShardWriter, list_array, packed_schema
from pipeline.tokenize.stats import TokenStats
from pipeline.tokenize.tokenizer import EOT, MASK, PAD, load_tokenizer, special_ids, val_mask

STAGE = "tokenize"
SPLITS = ("train", "val")


class BatchEncoder:
    """Texts in, (flat ids with one <|endoftext|> after each document, ids per document) out.

    A document that encodes to nothing (empty text) gets length 0 and no end-of-text token;
    the caller rejects it.
    """

    def __init__(self, tokenizer_path: Path):
        self.tok = load_tokenizer(tokenizer_path)
        # Corpus text is data: a literal "<|endoftext|>" inside a document is encoded as
        # ordinary text, never as the control token.
        self.tok.encode_special_tokens = True
        self.eot_id = special_ids(self.tok)["eot_id"]
        self.dtype = np.uint16 if self.tok.get_vocab_size() <= 65536 else np.uint32

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encodings = self.tok.encode_batch_fast(texts, add_special_tokens=False)
        ids = [e.ids for e in encodings]
        n_text = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        lengths = n_text + (n_text > 0)
        flat = np.empty(int(lengths.sum()), dtype=self.dtype)
        eot_at = np.cumsum(lengths)[n_text > 0] - 1
        is_text = np.ones(len(flat), dtype=bool)
        is_text[eot_at] = False
        flat[is_text] = np.fromiter(chain.from_iterable(ids), dtype=self.dtype, count=int(n_text.sum()))
        flat[eot_at] = self.eot_id
        return flat, lengths


def _encode_here(encoder: BatchEncoder, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    return encoder(texts.to_pylist())


def read_batches(input_paths: list[Path], batch_docs: int, batch_bytes: int | None = None):
    """(shard path, RecordBatch of id, text, source, language) for every input shard in order,
    each of at most `batch_docs` rows and `batch_bytes` of text (or one longer document)."""
    for path in input_paths:
        f = pq.ParquetFile(path)
        names = f.schema_arrow.names
        missing = [c for c in ("id", "text") if c not in names]
        if missing:
            raise ValueError(f"{path}: shard lacks column(s) {missing}")
        columns = [c for c in ("id", "text", "source", "language") if c in names]
        for batch in f.iter_batches(batch_size=batch_docs, columns=columns):
            for name in ("id", "text"):
                nulls = batch.column(name).null_count
                if nulls:
                    row = pc.index(pc.is_null(batch.column(name)), True).as_py()
                    ident = batch.column("id")[row].as_py()
                    raise ValueError(f"{path}: record {ident!r} has a null {name}")
            for name in ("source", "language"):
                if name not in columns:
                    batch = batch.append_column(name, pa.nulls(batch.num_rows, pa.string()))
            for part in _split_by_bytes(batch, batch_bytes):
                yield path, part


def _split_by_bytes(batch: pa.RecordBatch, batch_bytes: int | None):
    if batch_bytes is None or batch.num_rows <= 1:
        yield batch
        return
    sizes = pc.binary_length(batch.column("text")).to_numpy(zero_copy_only=False).astype(np.int64)
    ends = np.cumsum(sizes)
    start = 0
    while start < batch.num_rows:
        # rows up to the one that stays within batch_bytes of text, at least one
        base = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, base + batch_bytes, side="right")), start + 1)
        yield batch.slice(start, stop - start)
        start = stop


class SplitWriters:
    """Routes encoded documents to the train or val shard writer."""

    def __init__(self, staging: Path, vocab_size: int, config: TokenizeConfig):
        self.schema = token_schema(vocab_size)
        self.value_type = self.schema.field("input_ids").type.value_type
        sizes = (config.shard_tokens, config.row_group_tokens, config.zstd_level)
        self.writers = {s: ShardWriter(staging / s, staging, s, self.schema, *sizes) for s in SPLITS}
        self.totals = {s: {"documents": 0, "tokens": 0, "shards": 0} for s in SPLITS}

    def add(self, ids: pa.Array, flat: np.ndarray, lengths: np.ndarray, is_val: np.ndarray) -> None:
        """Documents `ids`, their ids concatenated in `flat`, `lengths[i]` ids each."""
        table = pa.Table.from_arrays(
            [ids, list_array(flat, lengths, self.value_type), pa.array(lengths.astype(np.int32))], schema=self.schema
        )
        for split, mask in (("train", ~is_val), ("val", is_val)):
            n = int(mask.sum())
            if not n:
                continue
            self.writers[split].add(table if n == len(mask) else table.filter(pa.array(mask)), lengths[mask])
            self.totals[split]["documents"] += n
            self.totals[split]["tokens"] += int(lengths[mask].sum())

    def close(self) -> list[dict]:
        """Index entries of the document shards."""
        shards = []
        for split in SPLITS:
            entries = self.writers[split].close()
            self.totals[split]["shards"] = len(entries)
            shards += [_renamed(e, "rows", "documents") for e in entries]
        return shards


def _renamed(entry: dict, old: str, new: str) -> dict:
    return {(new if k == old else k): v for k, v in entry.items()}


def encode_shard(path: str, tokenizer_path: str, work: str, rejected_dir: str, config: TokenizeConfig, threads: bool) -> dict:
    """One unit: encode one document shard into `work/<shard>/{train,val}/part-NNNNN.parquet`
    (and packed sequences), its document lengths and its rejections; returns its figures.

    `threads`: let tokenizers use every core (the unit runs alone); a unit that runs beside
    others on a pool or a cluster encodes on one core. The files are the same either way.
    """
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads else "false"
    path, work = Path(path), Path(work)
    unit_dir = work / path.name
    shutil.rmtree(unit_dir, ignore_errors=True)  # what a killed attempt left
    encoder = BatchEncoder(Path(tokenizer_path))
    vocab_size = encoder.tok.get_vocab_size()
    splits = SplitWriters(unit_dir, vocab_size, config)  # packed sequences are cut after all units (_pack)
    stats = TokenStats()
    totals = {"docs_in": 0, "bytes_in": 0, "bytes_out": 0, "docs_rejected": 0}
    rejected: list[pa.Table] = []
    sources: set[str] = set()

    def consume(batch: pa.RecordBatch, flat: np.ndarray, lengths: np.ndarray) -> None:
        nbytes = pc.binary_length(batch.column("text")).to_numpy(zero_copy_only=False).astype(np.int64)
        sources.update(s for s in pc.unique(batch.column("source")).to_pylist() if s is not None)
        totals["docs_in"] += batch.num_rows
        totals["bytes_in"] += int(nbytes.sum())
        empty = lengths == 0
        if empty.any():  # empty documents have no ids in `flat`: only the rows go
            rejected.append(_rejections(batch.filter(pa.array(empty)), nbytes[empty]))
            totals["docs_rejected"] += int(empty.sum())
            batch, nbytes, lengths = batch.filter(pa.array(~empty)), nbytes[~empty], lengths[~empty]
        totals["bytes_out"] += int(nbytes.sum())
        stats.add(batch.column("source"), batch.column("language"), nbytes, lengths)
        splits.add(batch.column("id"), flat, lengths, val_mask(batch.column("id").to_pylist(), config))

    with _Encoders(encoder) as encoders:
        # Batches are submitted `depth` ahead and consumed in order, so encoding never
        # waits for writing and the output order is the input order.
        pending: deque = deque()
        for _, batch in read_batches([path], config.batch_docs, config.batch_bytes):
            pending.append((batch, encoders.submit(batch.column("text"))))
            if len(pending) >= encoders.depth:
                b, fut = pending.popleft()
                consume(b, *fut.result())
        while pending:
            b, fut = pending.popleft()
            consume(b, *fut.result())
    shards = splits.close()
    save_npy(np.concatenate(stats.lengths) if stats.lengths else np.zeros(0, np.int32), unit_dir / "lengths.npy")
    target = Path(rejected_dir) / f"{STAGE}-{path.name}"
    if rejected:
        write_parquet(pa.concat_tables(rejected), target)
    elif target.exists():
        target.unlink()  # stale: an earlier run's rejections of this shard
    figures = stats.to_dict()
    figures.pop("length_histogram")
    return {"name": path.name, "totals": totals, "split_totals": splits.totals, "shards": shards,
            "token_stats": figures, "rejected": bool(rejected),
            "source": next(iter(sources)) if len(sources) == 1 else None}  # what a trainer's `mix` weighs


def tokenize_corpus(
    input_paths: list[Path], tokenizer_path: Path, out_dir: Path, config: TokenizeConfig, workers: int = 1,
    mapper: Mapper | None = None, key: str | None = None,
) -> TokenizeStats:
    """Encode every document, write `out_dir/{train,val}/part-*.parquet` and `out_dir/index.json`.

    One unit per input shard (`encode_shard`), run by `mapper` (default: `workers` spawned
    processes, or inline for one worker); a killed run resumes from its finished units. Then
    the units' shards are numbered in input order into one staging folder, with index.json,
    and renamed into place: the output does not depend on how many workers ran, nor where.
    Each input shard's documents fill their own token shards (a shard never spans two input
    shards; packed sequences likewise, so each input shard's last packed row is padded).
    Documents that encode to no token are rejected to
    `out_dir/../rejected/tokenize-<shard>.parquet`. Returns the stage's stats.
    """
    t0 = time.perf_counter()
    input_paths = [Path(p) for p in input_paths]
    out_dir, tokenizer_path = Path(out_dir), Path(tokenizer_path)
    root = out_dir.parent
    tok = load_tokenizer(tokenizer_path)
    vocab_size = tok.get_vocab_size()
    specials = special_ids(tok)
    value_type = token_schema(vocab_size).field("input_ids").type.value_type
    tok_sha = sha256_file(tokenizer_path)
    work = Work(scratch_dir(root, STAGE), key or default_key(input_paths, config, tok_sha))
    own = mapper is None
    if own:
        total_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in input_paths)
        parallel = use_processes(total_rows, workers, config.batch_docs) and len(input_paths) > 1
        mapper = LocalMapper(workers if parallel else 1, "processes")
    threads = (workers <= 1) or (own and mapper.workers <= 1)
    try:
        units = work.run(mapper, "encode", [(p.name, encode_shard, (str(p), str(tokenizer_path), str(work.dir), str(root / "rejected"), config, threads),
                                            [p, tokenizer_path])
                                           for p in input_paths])
    finally:
        if own:
            mapper.close()

    for stale in root.glob(f".tmp-{out_dir.name}.*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}.", dir=root))
    staging.chmod(0o755)  # mkdtemp makes it private; the corpus folder is meant to be shared
    try:
        shards = _gather(units, "shards", work.dir, staging)
        split_totals = {s: {k: sum(u["split_totals"][s][k] for u in units) for k in ("documents", "tokens")} for s in SPLITS}
        for s in SPLITS:
            split_totals[s]["shards"] = sum(1 for e in shards if e["split"] == s)
        index = TokenIndex(
            columns={"id": "string", "input_ids": f"list<{value_type}>", "n_tokens": "int32"},
            dtype=str(value_type), vocab_size=vocab_size, **specials,
            special_tokens={"eot": EOT, "pad": PAD, "mask": MASK},
            tokenizer_sha256=tok_sha, val_fraction=config.val_fraction, seed=config.seed,
            shard_tokens=config.shard_tokens, totals=split_totals, shards=shards,
        )
        if config.pack_length:
            # A separate index: readers of index.json look for document shards only.
            write_json({**_pack(shards, staging, vocab_size, config, specials["pad_id"]), "dtype": str(value_type),
                        "vocab_size": vocab_size, **specials}, staging / "packed" / "index.json")
            index.packed_index = "packed/index.json"
        index.write(staging / "index.json")
        replace_dir(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)

    stats = TokenStats.merged([u["token_stats"] for u in units],
                              [np.load(work.path(u["name"], "lengths.npy")) for u in units])
    work.remove()
    totals = {k: sum(u["totals"][k] for u in units) for k in ("docs_in", "bytes_in", "bytes_out", "docs_rejected")}
    docs_out = totals["docs_in"] - totals["docs_rejected"]
    t = split_totals
    return TokenizeStats(
        docs_in=totals["docs_in"], docs_out=docs_out, docs_rejected=totals["docs_rejected"],
        bytes_in=totals["bytes_in"], bytes_out=totals["bytes_out"],
        rejected_by_filter={"empty_encoding": totals["docs_rejected"]} if totals["docs_rejected"] else {},
        tokens_train=t["train"]["tokens"], tokens_val=t["val"]["tokens"],
        docs_train=t["train"]["documents"], docs_val=t["val"]["documents"],
        shards_train=t["train"]["shards"], shards_val=t["val"]["shards"],
        bytes_on_disk=sum(e["bytes"] for e in shards), vocab_size=vocab_size, dtype=str(value_type),
        rejected_files=[f"rejected/{STAGE}-{u['name']}" for u in units if u["rejected"]],
        seconds=round(time.perf_counter() - t0, 3), **stats.to_dict(),
    )


def _pack(shards: list[dict], staging: Path, vocab_size: int, config: TokenizeConfig, pad_id: int) -> dict:
    """Fixed-length sequences cut from each split's document stream, shard after shard (one
    row group in memory at a time); only a split's last row is padded."""
    dtype = np.uint16 if vocab_size <= 65536 else np.uint32
    sizes = (config.shard_tokens, config.row_group_tokens, config.zstd_level)
    packers = {s: SequencePacker(ShardWriter(staging / "packed" / s, staging, s, packed_schema(vocab_size), *sizes),
                                 config.pack_length, pad_id, dtype) for s in SPLITS}
    for e in shards:
        for batch in pq.ParquetFile(staging / e["file"]).iter_batches(columns=["input_ids"]):
            packers[e["split"]].add(batch.column(0).values.to_numpy().astype(dtype, copy=False))
    entries = [_renamed(e, "rows", "sequences") for s in SPLITS for e in packers[s].close()]
    return {"format": TOKEN_INDEX_FORMAT + "+packed", "sequence_length": config.pack_length,
            "padded_tokens": {s: packers[s].padded_tokens for s in SPLITS}, "shards": entries}


def _gather(units: list[dict], field: str, work: Path, staging: Path) -> list[dict]:
    """Hard-link every unit's shards into `staging`, numbered per split in input order (the
    unit's files stay, so a killed assembly is simply redone)."""
    out, count = [], {}
    for u in units:
        for e in u[field]:
            src = work / u["name"] / e["file"]
            rel = Path(e["file"])
            k = count.get((rel.parent, e["split"]), 0)
            count[(rel.parent, e["split"])] = k + 1
            dst_rel = rel.parent / f"part-{k:05d}.parquet"
            (staging / dst_rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(src, staging / dst_rel)
            out.append({**e, "file": dst_rel.as_posix(), "input": u["name"], "source": u.get("source")})
    return out


def use_processes(total_rows: int, workers: int, batch_docs: int) -> bool:
    """Encode units in processes (~1 s of start-up each) only for at least two batches each."""
    return workers > 1 and total_rows > 2 * workers * batch_docs


class _Encoders:
    """Runs BatchEncoder calls ahead of the writer: two threads sharing tokenizers' own thread
    pool (two, so one batch encodes while the other's ids are copied out under the GIL)."""

    depth = 3

    def __init__(self, encoder: BatchEncoder):
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="encode")
        self._fn = partial(_encode_here, encoder)

    def submit(self, texts: pa.Array):
        return self.pool.submit(self._fn, texts)

    def __enter__(self) -> "_Encoders":
        return self

    def __exit__(self, *exc):
        self.pool.shutdown(wait=True, cancel_futures=True)


def _rejections(batch: pa.RecordBatch, nbytes: np.ndarray) -> pa.Table:
    reasons = [f"document encodes to 0 tokens ({int(b)} bytes of text); nothing to train on" for b in nbytes]
    return rejected_table(
        batch.column("id"), batch.column("source"), STAGE, "empty_encoding", reasons, batch.column("text")
    )
