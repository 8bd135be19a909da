"""File I/O every stage shares: atomic Parquet writes, shard listing, compressed streams.

A file is written to a temporary name in the same folder and renamed into place only
when complete, so a crash or kill never leaves a half-written file that a rerun would
trust (readers ignore the `.tmp-*` names).
"""
from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_COMPRESSION = "zstd"


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once, at import, before any threads.
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); outputs get the usual umask-derived mode.
    os.chmod(tmp, 0o666 & ~_UMASK)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet(table: pa.Table, path: str | os.PathLike, row_group_size: int | None = None) -> Path:
    """Write `table` atomically as Parquet (zstd) and return the final path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=PARQUET_COMPRESSION, row_group_size=row_group_size)
    return path


def write_json(obj, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def list_shards(folder: str | os.PathLike, pattern: str = "part-*.parquet") -> list[Path]:
    """Sorted complete shards in `folder` (temporary files never match)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(pattern) if not p.name.startswith(".tmp-"))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def open_compressed(path: str | os.PathLike) -> IO[bytes]:
    """Open a local file as a binary stream, decompressing gzip, zstd or bz2 by magic bytes."""
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    if magic[:3] == b"BZh":
        return bz2.open(path, "rb")
    if magic == b"\x28\xb5\x2f\xfd":
        return io.BufferedReader(_ZstdReader(open(path, "rb")), buffer_size=1 << 20)
    return open(path, "rb")


class _ZstdReader(io.RawIOBase):
    """Streaming zstd decompression (any number of frames) that raises EOFError when the
    input ends inside a frame; zstandard's own stream_reader returns a silent short read."""

    def __init__(self, raw: IO[bytes], chunk: int = 1 << 20):
        import zstandard

        self._raw, self._chunk, self._zstd = raw, chunk, zstandard.ZstdDecompressor()
        self._dobj = self._zstd.decompressobj()
        self._pending = b""
        self._in_frame = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while not self._pending:
            data = self._dobj.unused_data if self._dobj.eof else b""
            if self._dobj.eof:
                self._dobj = self._zstd.decompressobj()  # next frame
                self._in_frame = False
            if not data:
                data = self._raw.read(self._chunk)
                if not data:
                    if self._in_frame:
                        raise EOFError("zstd stream ended before the end of its frame (truncated file)")
                    return 0
            self._in_frame = True
            self._pending = self._dobj.decompress(data)
        n = min(len(buf), len(self._pending))
        buf[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self):
        self._raw.close()
        super().close()


def text_bytes(table: pa.Table, column: str = "text") -> int:
    """UTF-8 bytes of a string column (Arrow stores UTF-8, so this is the data buffer size)."""
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return 0
    return int(pc.sum(pc.binary_length(table.column(column))).as_py() or 0)
