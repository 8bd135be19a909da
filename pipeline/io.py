"""File I/O every stage shares: atomic writes, file hashing, shard listing, compressed streams.

A file is written to a temporary name in the same folder and renamed into place only
when complete, so a crash or kill never leaves a half-written file that a rerun would
trust (readers ignore the `.tmp-*` names).

Inside a corpus folder (one with a `.opencorpus/` state folder) every file written here is
also noted in `.opencorpus/written.txt`: the run only ever deletes files listed there (its
own outputs) and its own `.tmp-*` files, never a file of the user's that happens to sit
in the folder under one of our names.
"""
from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
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
        _note_written(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def replace_dir(staging: Path, final: Path) -> None:
    """Move a finished staging folder onto `final`; the old folder is removed only after, so
    a reader (or a kill) sees the old complete folder or the new complete one."""
    old = None
    if final.exists():
        old = final.parent / f".tmp-{final.name}.old-{os.getpid()}"
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for path in sorted(final.rglob("*")):  # the ledger names the files where they now are
        if path.is_file():
            _note_written(path)


STATE_DIR = ".opencorpus"
LEDGER = "written.txt"


def corpus_root(path: Path, depth: int = 4) -> Path | None:
    """The corpus folder (the nearest parent with a `.opencorpus/` folder) a path lies in."""
    for parent in list(Path(path).resolve().parents)[:depth]:
        if (parent / STATE_DIR).is_dir():
            return parent
    return None


def _note_written(path: Path):
    root = corpus_root(path)
    rel = path.resolve().relative_to(root).parts if root is not None else ()
    if root is None or rel[:1] == (STATE_DIR,) or any(part.startswith(".tmp-") for part in rel):
        return  # outside a corpus folder, the run's own state, or a staging folder (noted when swapped in)
    # One short line per O_APPEND write: lines of concurrent workers never interleave.
    line = (path.resolve().relative_to(root).as_posix() + "\n").encode("utf-8")
    fd = os.open(root / STATE_DIR / LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def note_written(root: Path, rels: list[str]) -> None:
    """Add files written elsewhere (a task's own folder, then copied here) to the ledger of `root`."""
    if rels:
        with open(Path(root) / STATE_DIR / LEDGER, "a", encoding="utf-8") as f:
            f.write("".join(r + "\n" for r in rels))


def written_files(root: Path) -> set[str]:
    """Paths (relative to `root`) that opencorpus wrote in a corpus folder."""
    ledger = Path(root) / STATE_DIR / LEDGER
    return set(ledger.read_text(encoding="utf-8").split()) if ledger.is_file() else set()


def remove_written(root: Path, paths) -> list[Path]:
    """Delete those of `paths` that opencorpus wrote (listed in the ledger); return them."""
    root = Path(root)
    ours = written_files(root)
    removed = []
    for p in paths:
        p = Path(p)
        rel = (p if p.is_absolute() else root / p).resolve().relative_to(root.resolve()).as_posix()
        if rel in ours and p.exists():
            p.unlink()
            removed.append(p)
    return removed


class ParquetWriter(pq.ParquetWriter):
    """`pyarrow.parquet.ParquetWriter` that writes no row group for an empty table or batch.

    pyarrow writes a 0-row table as one empty row group, a file `datasets` refuses
    ("BatchSize must be greater than 0"); a file with the schema and no row group loads as
    0 rows in datasets, polars and duckdb. Every Parquet writer of the stages goes through
    this class (or `write_parquet`)."""

    def write_table(self, table: pa.Table, row_group_size: int | None = None) -> None:
        if table.num_rows:
            super().write_table(table, row_group_size=row_group_size)

    def write_batch(self, batch: pa.RecordBatch, row_group_size: int | None = None) -> None:
        if batch.num_rows:
            super().write_batch(batch, row_group_size=row_group_size)


def write_parquet_file(table: pa.Table, path: str | os.PathLike, row_group_size: int | None = None,
                       **options) -> Path:
    """`pq.write_table` (zstd unless `compression` is given) with no empty row group; not atomic:
    for scratch files, or a temporary path of `atomic_path`."""
    options.setdefault("compression", PARQUET_COMPRESSION)
    with ParquetWriter(path, table.schema, **options) as writer:
        writer.write_table(table, row_group_size=row_group_size)
    return Path(path)


def write_parquet(table: pa.Table, path: str | os.PathLike, row_group_size: int | None = None) -> Path:
    """Write `table` atomically as Parquet (zstd) and return the final path; an empty table
    becomes a file with its schema and no row group (see ParquetWriter)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        write_parquet_file(table, tmp, row_group_size)
    return path


# Written beside a tokenizer.json so that `AutoTokenizer.from_pretrained(folder)` names the
# end-of-text and padding tokens (tokenizer.json alone has no notion of eos or pad).
TOKENIZER_CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")


def write_tokenizer_config(folder: str | os.PathLike, eos_token: str, pad_token: str, mask_token: str | None = None,
                           model_max_length: int | None = None) -> list[Path]:
    """TOKENIZER_CONFIG_FILES for the tokenizer.json in `folder` (the corpus's and the export's).

    The class is PreTrainedTokenizerFast, which transformers 4.x and 5.x both load (5.x's
    own save_pretrained writes "TokenizersBackend", unknown to 4.x); written by hand so the
    files do not depend on the installed transformers. Byte-level BPE has no unknown token:
    unk (and bos) name the end-of-text token, as GPT-2's tokenizer does."""
    folder = Path(folder)
    special = {"bos_token": eos_token, "eos_token": eos_token, "unk_token": eos_token, "pad_token": pad_token}
    if mask_token is not None:
        special["mask_token"] = mask_token
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **special,
              # 4.x defaults to True, which rewrites " ." as "." on decode: no exact round trip
              "clean_up_tokenization_spaces": False}
    if model_max_length is not None:
        config["model_max_length"] = model_max_length
    return [write_json(config, folder / TOKENIZER_CONFIG_FILES[0]), write_json(special, folder / TOKENIZER_CONFIG_FILES[1])]


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


# Compression by file name first; the bytes are sniffed only when the name says nothing.
_CODEC_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".tgz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
_PLAIN_SUFFIXES = frozenset(
    ".jsonl .ndjson .json .txt .text .md .rst .csv .tsv .parquet .pq .warc .wet .wat .arc .html .htm .xml .py".split())


def compression_of(path: str | os.PathLike) -> str | None:
    """'gzip', 'bz2', 'zstd' or None (plain): from the name's suffix when it is a known
    compressed or plain one, else from the magic bytes (strict: gzip with deflate, bzip2
    with its block or end-of-stream signature, the zstd frame magic)."""
    suffix = Path(path).suffix.lower()
    if suffix in _CODEC_SUFFIXES:
        return _CODEC_SUFFIXES[suffix]
    if suffix in _PLAIN_SUFFIXES:
        return None
    with open(path, "rb") as f:
        magic = f.read(10)
    if magic[:3] == b"\x1f\x8b\x08":
        return "gzip"
    if magic[:3] == b"BZh" and magic[3:4] in b"123456789" and len(magic) == 10 and \
            magic[4:10] in (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90"):
        return "bz2"
    if magic[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return None


def _open_codec(path: Path, codec: str | None) -> IO[bytes]:
    if codec == "gzip":
        return gzip.open(path, "rb")
    if codec == "bz2":
        return bz2.open(path, "rb")
    if codec == "zstd":
        return io.BufferedReader(_ZstdReader(open(path, "rb")), buffer_size=1 << 20)
    return open(path, "rb")


def open_compressed(path: str | os.PathLike) -> IO[bytes]:
    """Open a local file as a binary stream, decompressing gzip, zstd or bz2.

    The codec comes from the file name (`.gz`, `.bz2`, `.zst`; `.txt`, `.jsonl`, ... are
    plain); only a name that says nothing is sniffed by its magic bytes, and a sniffed
    codec that cannot decode the first block falls back to the plain bytes (a text file
    may well start with "BZh"), while one that runs out of input there is a truncated
    file (IOError). A file whose name names a codec is always decoded with it, so its
    truncation or corruption is an error, never plain-text garbage."""
    path = Path(path)
    suffix = path.suffix.lower()
    codec = compression_of(path)
    if codec is None or suffix in _CODEC_SUFFIXES:
        return _open_codec(path, codec)
    try:  # sniffed: make sure the codec really decodes this file's first block
        with _open_codec(path, codec) as probe:
            probe.read(1)
    except EOFError as e:  # a real stream of that codec, cut short: not plain text
        raise IOError(f"{path}: {codec} stream (from its magic bytes) ends inside its first block ({e}); "
                      "the file is truncated") from e
    except (OSError, ValueError):  # not that codec after all
        return open(path, "rb")
    except Exception as e:  # zstandard.ZstdError is not an OSError
        if type(e).__module__.split(".")[0] != "zstandard":
            raise
        return open(path, "rb")
    return _open_codec(path, codec)


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
