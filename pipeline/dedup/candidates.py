"""Dedup phase 3, candidates (one unit per range of LSH bands and key partition): pairs of kept
documents that share a band's key.

A unit takes its bands one at a time and reads only that band's and key partition's row group of every `bands/` file, drops the documents the exact
rounds removed, and pairs the members of each bucket: all pairs in buckets of up to
`max_bucket_pairs` documents, and in larger ones only each member with the bucket's first and with
its neighbour (a chain keeps the bucket connected without n^2 pairs). Pairs are coded a << 32 | b
(a < b; document numbers below 2^32) and written split by a hash of the pair into
`pairs/<band>-<kpart>/<part>.npy`, so that the verify unit of a partition sees every band's copy of a pair
and checks it once.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.dedup.minhash import fmix64
from pipeline.units import save_npy


def pair_code(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.minimum(a, b), np.maximum(a, b)
    keep = a != b
    return (a[keep].astype(np.uint64) << np.uint64(32)) | b[keep].astype(np.uint64)


def pair_docs(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (codes >> np.uint64(32)).astype(np.int64), (codes & np.uint64(0xFFFFFFFF)).astype(np.int64)


def pair_partition(codes: np.ndarray, parts: int) -> np.ndarray:
    return (fmix64(codes) % np.uint64(parts)).astype(np.int64)


def band_range_pairs(work: str, names: list[str], bands: range, kpart: int, removed: str, max_bucket: int,
                     n_old: int, parts: int) -> dict:
    return {"pairs": sum(band_pairs(work, names, b, kpart, removed, max_bucket, n_old, parts) for b in bands)}


def band_pairs(work: str, names: list[str], band: int, kpart: int, removed: str, max_bucket: int, n_old: int,
               parts: int) -> int:
    import polars as pl

    work = Path(work)
    # equal keys share a key partition: the buckets of (band, kpart) are whole, and row groups of
    # other bands and partitions are skipped by their statistics
    lf = pl.scan_parquet([work / "bands" / n for n in names]).filter(
        (pl.col("band") == band) & (pl.col("kpart") == kpart)).select("key", "doc")
    gone = np.load(removed)
    if len(gone):
        lf = lf.join(pl.DataFrame({"doc": gone}).lazy(), on="doc", how="anti")
    b = lf.with_columns(pl.len().over("key").alias("n")).filter(pl.col("n") > 1).collect()
    codes = [np.zeros(0, np.uint64)]
    small = b.filter(pl.col("n") <= max_bucket).select("key", "doc")
    if small.height:
        p = small.join(small, on="key", suffix="_b").filter(pl.col("doc") < pl.col("doc_b"))
        codes.append(pair_code(p["doc"].to_numpy(), p["doc_b"].to_numpy()))
    big = b.filter(pl.col("n") > max_bucket).select("key", "doc").sort("key", "doc")
    if big.height:
        k = big["key"].to_numpy()
        d = big["doc"].to_numpy()
        start = np.r_[True, k[1:] != k[:-1]]
        head = d[np.maximum.accumulate(np.where(start, np.arange(len(d)), 0))]
        nxt = ~start
        codes.append(pair_code(head[nxt], d[nxt]))
        codes.append(pair_code(d[:-1][nxt[1:]], d[1:][nxt[1:]]))
    codes = np.unique(np.concatenate(codes))
    codes = codes[pair_docs(codes)[1] >= n_old]  # two indexed documents were both kept already
    part = pair_partition(codes, parts)
    for p in range(parts):
        save_npy(codes[part == p], work / "pairs" / f"{band:04d}-{kpart:04d}" / f"{p:04d}.npy")
    return int(len(codes))
