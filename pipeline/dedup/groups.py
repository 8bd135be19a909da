"""Dedup phase 2, exact groups (one unit per hash partition, three rounds): repeated ids, then
identical normalized word sequences, then (optionally) equal URLs.

Each round looks only at documents still kept after the rounds before it; in every group of equal
keys the document earliest in shard order stays (a persisted index's documents are never removed).
A unit reads the key columns of every `docs/` file, keeps the rows of its partition (a hash of the
key, so every member of a group lands in the same unit) and writes `groups/<round>/<part>.parquet`:
(doc, rep) for each removed document and the document it repeats. What a unit holds is its
partition's keys: about 1/parts of the corpus's 40 bytes per document.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.dedup.params import DUP_ID, EXACT, URL
from pipeline.units import save_parquet

# (round, key columns, status code of the removed documents); id removals link no cluster.
ROUNDS = [("id", ["id"], DUP_ID), ("exact", ["exact_hi", "exact_lo"], EXACT), ("url", ["url_hash"], URL)]


def _partition(keys: list[str], parts: int):
    import polars as pl

    if keys == ["id"]:
        return pl.col("id").hash(seed=0) % parts  # same polars on every worker: the same partition
    return pl.col(keys[-1]) % parts


def group_partition(work: str, names: list[str], keys: list[str], part: int, parts: int, n_old: int,
                    removed: str | None, out: str) -> dict:
    """(doc, rep) of the repeated documents of one partition, written to `out`."""
    import polars as pl

    work = Path(work)
    lf = pl.scan_parquet([work / "docs" / n for n in names]).select("doc", *keys)
    if keys == ["url_hash"]:
        lf = lf.filter(pl.col("url_hash").is_not_null())  # documents without URL never match
    lf = lf.filter(_partition(keys, parts) == part)
    if removed is not None:
        gone = np.load(removed)
        if len(gone):
            lf = lf.join(pl.DataFrame({"doc": gone}).lazy(), on="doc", how="anti")
    dups = (
        lf.with_columns(pl.col("doc").min().over(keys).alias("rep"))
        .filter((pl.col("doc") != pl.col("rep")) & (pl.col("doc") >= n_old))
        .select("doc", "rep")
        .sort("doc")
        .collect()
    )
    save_parquet(dups.to_arrow(), Path(out))
    return {"removed": dups.height}


def read_removals(work: Path, round_name: str, parts: int) -> tuple[np.ndarray, np.ndarray]:
    """(doc, rep) of every document a round removed, sorted by doc."""
    import pyarrow.parquet as pq

    tables = [pq.read_table(work / "groups" / round_name / f"{p:04d}.parquet") for p in range(parts)]
    doc = np.concatenate([t.column("doc").to_numpy() for t in tables]) if tables else np.zeros(0, np.int64)
    rep = np.concatenate([t.column("rep").to_numpy() for t in tables]) if tables else np.zeros(0, np.int64)
    order = np.argsort(doc, kind="stable")
    return doc[order].astype(np.int64), rep[order].astype(np.int64)
