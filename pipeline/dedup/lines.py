"""Line- or paragraph-level exact dedup across documents (Dolma/C4 style; off by default).

A unit (a line, or a paragraph between blank lines) of at least `min_chars` characters that already
appeared in an earlier kept document (shard order) is removed; its first occurrence stays, and
repeats inside one document stay too. Units are compared after stripping surrounding whitespace.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from pipeline.dedup.config import LineDedupConfig
from pipeline.units import save_parquet

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def split_units(text: str, unit: str) -> list[str]:
    return text.split("\n") if unit == "line" else _PARAGRAPH_BREAK.split(text)


def join_units(units: list[str], unit: str) -> str:
    return ("\n" if unit == "line" else "\n\n").join(units)


def unit_hashes_shard(path: Path, first_doc: int, keep: np.ndarray, work: Path, cfg: LineDedupConfig) -> dict:
    """(doc, unit, hash) of every long-enough unit of the kept documents of one shard."""
    texts = pq.read_table(path, columns=["text"]).column("text").to_pylist()
    docs, units, hashes = [], [], []
    for row in np.flatnonzero(keep).tolist():
        for k, u in enumerate(split_units(texts[row] or "", cfg.unit)):
            u = u.strip()
            if len(u) >= cfg.min_chars:
                docs.append(first_doc + row)
                units.append(k)
                hashes.append(xxhash.xxh3_64_intdigest(u.encode("utf-8")))
    table = pa.table({"doc": pa.array(docs, pa.int64()), "unit": pa.array(units, pa.int32()), "hash": pa.array(hashes, pa.uint64())})
    save_parquet(table, Path(work) / "lines" / Path(path).name)
    return {"units": len(docs)}


def duplicate_units(work: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(doc, unit) of every unit whose text first appeared in an earlier document."""
    import polars as pl

    files = [work / "lines" / n for n in names if (work / "lines" / n).exists()]
    if not files:
        return np.zeros(0, np.int64), np.zeros(0, np.int32)
    dup = (
        pl.scan_parquet(files)
        .with_columns(pl.col("doc").min().over("hash").alias("first"))
        .filter(pl.col("doc") > pl.col("first"))
        .select("doc", "unit")
        .collect()
    )
    return dup["doc"].to_numpy(), dup["unit"].to_numpy()


def drop_units(text: str, drop: set[int], unit: str) -> str:
    return join_units([u for k, u in enumerate(split_units(text, unit)) if k not in drop], unit)
