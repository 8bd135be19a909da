"""Token shard writers: document rows cut into shards of about N tokens, and packed sequences.

A writer streams row groups into an open Parquet file, so memory holds one row group,
not one shard. Files are written inside the stage's staging folder, which is renamed into
place only when every shard and the index are complete (see stage.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io import sha256_file


def packed_schema(vocab_size: int) -> pa.Schema:
    """Packed sequences: every row holds exactly pack_length ids; n_tokens < pack_length only
    on a split's last row, whose tail is padding."""
    id_type = pa.uint16() if vocab_size <= 65536 else pa.uint32()
    return pa.schema(
        [
            pa.field("input_ids", pa.list_(id_type), nullable=False),
            pa.field("n_tokens", pa.int32(), nullable=False),
        ]
    )


def list_array(flat: np.ndarray, lengths: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    """A list<value_type> column over `flat`, one list per entry of `lengths` (no copy of flat)."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=value_type))


class ShardWriter:
    """Writes one split's rows to `folder/part-NNNNN.parquet`, about `shard_tokens` tokens each.

    A shard closes at the first row that brings it to `shard_tokens` or more; a row group
    likewise at `row_group_tokens`.
    """

    def __init__(
        self,
        folder: Path,
        root: Path,
        split: str,
        schema: pa.Schema,
        shard_tokens: int,
        row_group_tokens: int,
        zstd_level: int = 3,
    ):
        self.folder, self.root, self.split, self.schema = folder, root, split, schema
        self.zstd_level = zstd_level
        self.shard_tokens, self.row_group_tokens = shard_tokens, row_group_tokens
        self.shards: list[dict] = []  # index entries of closed shards
        self._writer: pq.ParquetWriter | None = None
        self._path: Path | None = None
        self._tokens = self._rows = 0  # in the open shard, buffered rows included
        self._buffer: list[pa.Table] = []
        self._buffered_tokens = 0

    def add(self, table: pa.Table, n_tokens: np.ndarray) -> None:
        """Append rows; `n_tokens[i]` is row i's token count.

        Row groups and shards both end at the first row that reaches their target, so
        the files depend only on the row sequence, never on how it was batched.
        """
        while table.num_rows:
            limit = min(self.shard_tokens - self._tokens, self.row_group_tokens - self._buffered_tokens)
            cum = np.cumsum(n_tokens, dtype=np.int64)
            first = int(np.searchsorted(cum, limit))  # first row reaching a target
            take = min(first + 1, table.num_rows)
            tokens = int(cum[take - 1])
            self._buffer.append(table.slice(0, take))
            self._buffered_tokens += tokens
            self._tokens += tokens
            self._rows += take
            if first < table.num_rows:
                if self._tokens >= self.shard_tokens:
                    self._close_shard()
                else:
                    self._flush()
            table, n_tokens = table.slice(take), n_tokens[take:]

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            self._path = self.folder / f"part-{len(self.shards):05d}.parquet"
            self.folder.mkdir(parents=True, exist_ok=True)
            # Plain encoding, no dictionary: token ids are near-uniform over the vocabulary, so a
            # dictionary buys nothing zstd does not, and plain pages read back fastest.
            self._writer = pq.ParquetWriter(
                self._path,
                self.schema,
                compression="zstd",
                compression_level=self.zstd_level,
                use_dictionary=False,
                write_statistics=["n_tokens"],
            )
        table = pa.concat_tables(self._buffer).combine_chunks()
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self._buffer, self._buffered_tokens = [], 0

    def _close_shard(self) -> None:
        self._flush()
        if self._writer is None:
            return
        self._writer.close()
        self.shards.append(
            {
                "split": self.split,
                "file": self._path.relative_to(self.root).as_posix(),
                "tokens": self._tokens,
                "rows": self._rows,
                "bytes": self._path.stat().st_size,
                "sha256": sha256_file(self._path),
            }
        )
        self._writer, self._path, self._tokens, self._rows = None, None, 0, 0

    def close(self) -> list[dict]:
        self._close_shard()
        return self.shards


class SequencePacker:
    """Cuts the token stream of a split (documents in order, each ending in <|endoftext|>)
    into rows of exactly `length` ids; the remainder is carried into the next batch."""

    def __init__(self, writer: ShardWriter, length: int, pad_id: int, dtype):
        self.writer, self.length, self.pad_id, self.dtype = writer, length, pad_id, dtype
        self.value_type = writer.schema.field("input_ids").type.value_type
        self._carry = np.empty(0, dtype=dtype)
        self.padded_tokens = 0

    def add(self, flat: np.ndarray) -> None:
        stream = np.concatenate([self._carry, flat]) if len(self._carry) else flat
        rows = len(stream) // self.length
        if rows:
            self._write(stream[: rows * self.length], np.full(rows, self.length, dtype=np.int32))
        self._carry = stream[rows * self.length :].copy()

    def _write(self, flat: np.ndarray, n_tokens: np.ndarray) -> None:
        lengths = np.full(len(n_tokens), self.length, dtype=np.int32)
        table = pa.Table.from_arrays(
            [list_array(flat, lengths, self.value_type), pa.array(n_tokens, type=pa.int32())], schema=self.writer.schema
        )
        self.writer.add(table, lengths)

    def close(self) -> list[dict]:
        if len(self._carry):
            n = len(self._carry)
            self.padded_tokens = self.length - n
            tail = np.concatenate([self._carry, np.full(self.padded_tokens, self.pad_id, dtype=self.dtype)])
            self._write(tail, np.array([n], dtype=np.int32))
            self._carry = self._carry[:0]
        return self.writer.close()
