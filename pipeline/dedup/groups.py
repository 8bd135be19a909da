"""Dedup phase 2, exact groups (one unit per hash partition, three rounds): repeated ids, then
identical normalized word sequences, then (optionally) equal URLs.

Each round looks only at documents still kept after the rounds before it; in every group of equal
keys the document earliest in shard order stays (a persisted index's documents are never removed).
The sign units write each round's keys partitioned (`keys/<round>/<shard>`: a hash of the key picks
the partition, so every member of a group lands in the same one; one row group per partition), so a
groups unit reads only its own partition's row group of every shard, and the phase reads the keys
once in all. It writes `groups/<round>/<part>.parquet`: (doc, rep) for each removed document and
the document it repeats. What a unit holds is its partition's keys: about 1/parts of the corpus's
8-24 bytes per document.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dedup.params import DUP_ID, EXACT, URL
from pipeline.io import ParquetWriter, atomic_path
from pipeline.units import save_parquet

# (round, key columns, status code of the removed documents); id removals link no cluster.
ROUNDS = [("id", ["id"], DUP_ID), ("exact", ["exact_hi", "exact_lo"], EXACT), ("url", ["url_hash"], URL)]


def write_group_keys(meta: pa.Table, work: Path, name: str, parts: int, rounds: list[str]):
    """`keys/<round>/<name>` for each round: (part, doc, key columns), one row group per partition."""
    import polars as pl

    df = pl.from_arrow(meta.select(["doc", "id", "exact_hi", "exact_lo", "url_hash"]))
    for round_name, keys, _ in ROUNDS:
        if round_name not in rounds:
            continue
        sub = df.select("doc", *keys)
        if keys == ["url_hash"]:
            sub = sub.filter(pl.col("url_hash").is_not_null())  # documents without URL never match
        # polars' string hash: the same polars on every worker gives the same partition
        part = pl.col("id").hash(seed=0) % parts if keys == ["id"] else pl.col(keys[-1]) % parts
        sub = sub.with_columns(part.cast(pl.UInt32).alias("part")).sort("part", maintain_order=True)
        table = sub.select("part", "doc", *keys).to_arrow()
        bounds = np.searchsorted(table.column("part").to_numpy(), np.arange(parts + 1))
        with atomic_path(work / "keys" / round_name / name) as tmp:
            with ParquetWriter(tmp, table.schema, compression="zstd") as writer:  # no row group for an empty partition
                for a, b in zip(bounds[:-1], bounds[1:]):
                    writer.write_table(table.slice(int(a), int(b - a)))


def index_group_keys(work: str, name: str, parts: int, rounds: list[str]) -> dict:
    """The partitioned keys of a persisted index's part (its `docs/` file has them unpartitioned)."""
    write_group_keys(pq.read_table(Path(work) / "docs" / name), Path(work), name, parts, rounds)
    return {"name": name}


def group_partition(work: str, names: list[str], keys: list[str], part: int, parts: int, n_old: int,
                    removed: str | None, out: str) -> dict:
    """(doc, rep) of the repeated documents of one partition, written to `out`."""
    import polars as pl

    work = Path(work)
    round_name = next(r for r, k, _ in ROUNDS if k == keys)
    # row groups are pruned by the statistics of `part`: only this partition's are read
    lf = pl.scan_parquet([work / "keys" / round_name / n for n in names]).filter(pl.col("part") == part).select("doc", *keys)
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
    tables = [pq.read_table(work / "groups" / round_name / f"{p:04d}.parquet") for p in range(parts)]
    doc = np.concatenate([t.column("doc").to_numpy() for t in tables]) if tables else np.zeros(0, np.int64)
    rep = np.concatenate([t.column("rep").to_numpy() for t in tables]) if tables else np.zeros(0, np.int64)
    order = np.argsort(doc, kind="stable")
    return doc[order].astype(np.int64), rep[order].astype(np.int64)
