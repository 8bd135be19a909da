"""Dedup phase 4, verify: the similarity of each candidate pair, and the pairs at or above the
threshold as edges.

`verify: exact` first computes the sorted distinct shingle hashes of every candidate document
(one unit per shard: `shingles/<shard>.{values,offsets,docs}.npy`); `signature` compares the
MinHash signatures (`sig/`, rows read where needed); `none` takes every candidate as a duplicate. Then one
unit per pair partition reads `pairs/*/<part>.npy`, drops the copies of a pair found by several
bands, and writes `edges/<part>.parquet` (a, b, similarity).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dedup.candidates import pair_docs
from pipeline.dedup.config import DedupConfig
from pipeline.dedup.exact import normalize
from pipeline.dedup.minhash import shingle_hashes, unique_shingle_sets
from pipeline.dedup.params import Layout, Params
from pipeline.dedup.params import rows_per_batch
from pipeline.units import save_npy, save_parquet


def shingle_sets_shard(path: str, name: str, first_doc: int, rows: np.ndarray, work: str, params: Params, cfg: DedupConfig) -> dict:
    """Sorted distinct shingle hashes of the given rows of one shard, for exact verification.

    Streams the shard in record batches of about batch_bytes, like sign_shard.
    """
    path, work = Path(path), Path(work)
    pf = pq.ParquetFile(path)
    want = np.zeros(pf.metadata.num_rows, bool)
    want[rows] = True
    signer = params.signer()
    values, offsets, docs = [], [np.zeros(1, np.int64)], []
    shift, s = 0, 0
    for rb in pf.iter_batches(batch_size=rows_per_batch(pf, cfg.batch_bytes), columns=["text"]):
        e = s + rb.num_rows
        sel = np.flatnonzero(want[s:e])
        if len(sel):
            texts = normalize(rb.column("text").take(pa.array(sel)), cfg.normalize)
            tokens, _ = signer.tokens(texts)
            g, doc_of = shingle_hashes(tokens, params.ngram)
            v, o = unique_shingle_sets(g, doc_of, len(sel))
            values.append(v)
            offsets.append(o[1:] + shift)
            docs.append(sel + s + first_doc)
            shift += len(v)
        s = e
    base = work / "shingles" / name  # the shard's name in the layout (an index part's differs from its file's)
    save_npy(np.concatenate(values) if values else np.zeros(0, np.uint32), Path(str(base) + ".values.npy"))
    save_npy(np.concatenate(offsets), Path(str(base) + ".offsets.npy"))
    save_npy(np.concatenate(docs).astype(np.int64) if docs else np.zeros(0, np.int64), Path(str(base) + ".docs.npy"))
    return {"docs": int(len(rows))}


class NpyRows:
    """Slices of .npy files read with positioned reads (os.pread), never memory-mapped.

    A memory map of a file read at scattered places ends up with most of the file's pages in the
    process's RSS (the kernel maps the cached pages around each fault), so a unit that gathers a
    few rows of every shard would hold about the whole folder: the verify units the whole
    `shingles/` folder, the cluster unit the whole `sig/` folder (512 B per document of the corpus).
    Here only the bytes asked for are read; at most `max_open` files are open at a time.
    """

    def __init__(self, max_open: int = 64):
        self.max_open = max_open
        self.meta: dict[str, tuple[int, np.dtype, tuple]] = {}
        self.fds: dict[str, int] = {}

    def _fd(self, path: str) -> int:
        fd = self.fds.pop(path, None)
        if fd is None:
            if len(self.fds) >= self.max_open:
                os.close(self.fds.pop(next(iter(self.fds))))
            fd = os.open(path, os.O_RDONLY)
            if path not in self.meta:
                with open(path, "rb") as f:
                    version = npformat.read_magic(f)
                    read_header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
                    shape, fortran, dtype = read_header(f)
                    if fortran:
                        raise ValueError(f"{path}: Fortran-ordered arrays are not supported")
                    self.meta[path] = (f.tell(), np.dtype(dtype), shape)
        self.fds[path] = fd  # most recently used last
        return fd

    def shape(self, path: str) -> tuple:
        self._fd(path)
        return self.meta[path][2]

    def read(self, path: str, start: int, count: int) -> np.ndarray:
        """Elements [start, start + count) of the flattened array."""
        fd = self._fd(path)
        offset, dtype, _ = self.meta[path]
        if count <= 0:
            return np.zeros(0, dtype)
        return np.frombuffer(os.pread(fd, count * dtype.itemsize, offset + start * dtype.itemsize), dtype)

    def close(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def __del__(self):
        self.close()


class SigStore:
    """Signatures of all shards, read row by row (positioned reads); rows gathered by global document number."""

    def __init__(self, work: Path, layout: Layout):
        self.layout = layout
        self.paths = [str(Path(work) / "sig" / (n + ".npy")) for n in layout.names]
        self.files = NpyRows()

    def rows(self, docs: np.ndarray) -> np.ndarray:
        docs = np.asarray(docs, np.int64)
        shard = self.layout.shard_of(docs)
        first = self.layout.first
        width = self.files.shape(self.paths[0])[1] if self.paths else 0
        out = np.empty((len(docs), width), np.uint32)
        for s in np.unique(shard):
            for i in np.flatnonzero(shard == s):
                out[i] = self.files.read(self.paths[s], int(docs[i] - first[s]) * width, width)
        return out

    def jaccard(self, a: np.ndarray, b: np.ndarray, chunk: int = 65536) -> np.ndarray:
        out = np.empty(len(a), np.float32)
        for i in range(0, len(a), chunk):
            out[i : i + chunk] = (self.rows(a[i : i + chunk]) == self.rows(b[i : i + chunk])).mean(axis=1)
        return out


class ShingleStore:
    """The shingle sets the shingles units wrote: each set is read when it is compared (positioned
    reads, see NpyRows), so a unit holds two sets at a time, not the pages of a memory map."""

    def __init__(self, work: Path, layout: Layout):
        self.layout = layout
        self.values, self.offsets, self.docs = [], [], []  # values: the path of each shard's file (or None)
        self.files = NpyRows()
        for n in layout.names:
            base = Path(work) / "shingles" / n
            have = Path(str(base) + ".docs.npy").is_file()
            self.docs.append(np.load(str(base) + ".docs.npy") if have else np.zeros(0, np.int64))
            self.offsets.append(np.load(str(base) + ".offsets.npy") if have else np.zeros(1, np.int64))
            self.values.append(str(base) + ".values.npy" if have else None)

    def span(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shard, start, end) of each document's set."""
        shard = self.layout.shard_of(docs)
        start = np.empty(len(docs), np.int64)
        end = np.empty(len(docs), np.int64)
        for s in np.unique(shard):
            m = shard == s
            i = np.searchsorted(self.docs[s], docs[m])
            start[m], end[m] = self.offsets[s][i], self.offsets[s][i + 1]
        return shard, start, end

    def jaccard(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        sa, a0, a1 = self.span(a)
        sb, b0, b1 = self.span(b)
        out = np.zeros(len(a), np.float32)
        for i in range(len(a)):
            if a1[i] == a0[i] or b1[i] == b0[i]:
                continue
            x = self.files.read(self.values[sa[i]], int(a0[i]), int(a1[i] - a0[i]))
            y = self.files.read(self.values[sb[i]], int(b0[i]), int(b1[i] - b0[i]))
            inter = np.intersect1d(x, y, assume_unique=True).size
            out[i] = inter / (len(x) + len(y) - inter)
        return out


def partition_pairs(work: Path, part: int) -> tuple[np.ndarray, np.ndarray]:
    files = sorted(Path(work).glob(f"pairs/*/{part:04d}.npy"))
    codes = np.unique(np.concatenate([np.zeros(0, np.uint64)] + [np.load(f) for f in files]))
    return pair_docs(codes)


def verify_partition(work: str, part: int, layout: Layout, params: Params) -> dict:
    work = Path(work)
    a, b = partition_pairs(work, part)
    if len(a) == 0:
        sim = np.zeros(0, np.float32)
    elif params.verify == "none":
        sim = np.ones(len(a), np.float32)
    elif params.verify == "signature":
        sim = SigStore(work, layout).jaccard(a, b)
    else:
        sim = ShingleStore(work, layout).jaccard(a, b)
    ok = sim >= params.threshold - 1e-9
    save_parquet(pa.table({"a": a[ok], "b": b[ok], "similarity": sim[ok]}), work / "edges" / f"{part:04d}.parquet")
    return {"candidate_pairs": int(len(a)), "verified_pairs": int(ok.sum())}
