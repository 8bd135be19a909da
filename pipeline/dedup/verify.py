"""Dedup phase 4, verify: the similarity of each candidate pair, and the pairs at or above the
threshold as edges.

`verify: exact` first computes the sorted distinct shingle hashes of every candidate document
(one unit per shard: `shingles/<shard>.{values,offsets,docs}.npy`); `signature` compares the
MinHash signatures (`sig/`, memory-mapped); `none` takes every candidate as a duplicate. Then one
unit per pair partition reads `pairs/*/<part>.npy`, drops the copies of a pair found by several
bands, and writes `edges/<part>.parquet` (a, b, similarity).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
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


class SigStore:
    """Signatures of all shards, memory-mapped; rows gathered by global document number."""

    def __init__(self, work: Path, layout: Layout):
        self.layout = layout
        self.maps = [np.load(Path(work) / "sig" / (n + ".npy"), mmap_mode="r") for n in layout.names]

    def rows(self, docs: np.ndarray) -> np.ndarray:
        docs = np.asarray(docs, np.int64)
        shard = self.layout.shard_of(docs)
        first = self.layout.first
        out = np.empty((len(docs), self.maps[0].shape[1] if self.maps else 0), np.uint32)
        for s in np.unique(shard):
            m = shard == s
            out[m] = self.maps[s][docs[m] - first[s]]
        return out

    def jaccard(self, a: np.ndarray, b: np.ndarray, chunk: int = 65536) -> np.ndarray:
        out = np.empty(len(a), np.float32)
        for i in range(0, len(a), chunk):
            out[i : i + chunk] = (self.rows(a[i : i + chunk]) == self.rows(b[i : i + chunk])).mean(axis=1)
        return out


class ShingleStore:
    """The shingle sets the shingles units wrote, memory-mapped: only the pages of the sets being
    compared are read."""

    def __init__(self, work: Path, layout: Layout):
        self.layout = layout
        self.values, self.offsets, self.docs = [], [], []
        for n in layout.names:
            base = Path(work) / "shingles" / n
            have = Path(str(base) + ".docs.npy").is_file()
            self.docs.append(np.load(str(base) + ".docs.npy") if have else np.zeros(0, np.int64))
            self.offsets.append(np.load(str(base) + ".offsets.npy") if have else np.zeros(1, np.int64))
            self.values.append(np.load(str(base) + ".values.npy", mmap_mode="r") if have else np.zeros(0, np.uint32))

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
            x = self.values[sa[i]][a0[i] : a1[i]]
            y = self.values[sb[i]][b0[i] : b1[i]]
            if len(x) == 0 or len(y) == 0:
                continue
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
