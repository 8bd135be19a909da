"""Dedup phase 1, sign (one unit per shard): exact key, URL hash, MinHash signature and LSH
band keys of every document of one shard.

Writes `docs/<shard>` (doc, id, exact key, URL hash, shingle count), the same keys split by
partition for the groups phase (`keys/<round>/<shard>`), `sig/<shard>.npy` (uint32
[docs, num_perm]) and `bands/<shard>` (one row per (band, document), sorted by band and key
partition, one row group each, so that a candidates unit reads only its own) under the scratch
folder.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.dedup.config import DedupConfig
from pipeline.dedup.exact import normalize, url_hashes
from pipeline.dedup.minhash import band_keys, fmix64
from pipeline.dedup.groups import write_group_keys
from pipeline.dedup.params import Params
from pipeline.dedup.params import rows_per_batch
from pipeline.io import ParquetWriter, atomic_path
from pipeline.units import save_npy, save_parquet


def write_band_keys(band: np.ndarray, key: np.ndarray, doc: np.ndarray, path: Path, parts: int):
    """(band, kpart, key, doc) sorted by band, then key partition, one row group per pair, so a
    candidates unit (a band, a key partition) reads only its own rows of every shard."""
    kpart = (fmix64(key.astype(np.uint64)) % np.uint64(parts)).astype(np.uint32)
    order = np.lexsort((kpart, band))
    band, kpart, key, doc = band[order], kpart[order], key[order], doc[order]
    table = pa.table({"band": band, "kpart": kpart, "key": key, "doc": doc})
    group = band.astype(np.int64) * parts + kpart
    bounds = np.flatnonzero(np.r_[True, group[1:] != group[:-1], True]) if len(group) else np.array([0])
    with atomic_path(path) as tmp:
        with ParquetWriter(tmp, table.schema, compression="zstd") as writer:
            for a, b in zip(bounds[:-1], bounds[1:]):
                writer.write_table(table.slice(int(a), int(b - a)))


def index_band_keys(work: str, name: str, parts: int) -> dict:
    """An index part's band keys split by this run's key partitions (its file has the old ones)."""
    t = pq.read_table(Path(work) / "bands" / name)
    write_band_keys(t.column("band").to_numpy(), t.column("key").to_numpy(), t.column("doc").to_numpy(),
                    Path(work) / "bands" / name, parts)
    return {"name": name}


def sign_shard(path: str, first_doc: int, work: str, cfg: DedupConfig, params: Params, parts: int, rounds: list[str]) -> dict:
    """Exact keys, signatures and band keys of one shard; written under `work`.

    The shard is streamed in record batches of about `batch_bytes` of text, so a worker holds the
    shard's ids and per-document arrays but only one batch of text and its temporaries.
    """
    t0 = time.perf_counter()
    path, work = Path(path), Path(work)
    pf = pq.ParquetFile(path)
    n = pf.metadata.num_rows
    names = pf.schema_arrow.names
    batch_rows = rows_per_batch(pf, cfg.batch_bytes)
    hi = np.empty(n, np.uint64)
    lo = np.empty(n, np.uint64)
    sig = np.empty((n, params.num_perm), np.uint32) if params.minhash else None
    n_sh = np.zeros(n, np.int64)
    cjk = np.zeros(n, bool)
    empty = 0
    bytes_in = 0
    ids, urls = [], []
    signer = params.signer()
    s = 0
    for rb in pf.iter_batches(batch_size=batch_rows, columns=[c for c in ("id", "text", "url") if c in names]):
        e = s + rb.num_rows
        texts = rb.column("text")
        ids.append(rb.column("id").cast(pa.string()))
        urls.append(rb.column("url") if "url" in rb.schema.names else pa.nulls(rb.num_rows, pa.string()))
        bytes_in += int(pc.sum(pc.binary_length(texts)).as_py() or 0)
        batch = normalize(texts, cfg.normalize)
        sig_b, n_sh[s:e], cjk[s:e], hi[s:e], lo[s:e] = signer.process(batch, signatures=params.minhash)
        if sig is not None:
            sig[s:e] = sig_b
        s = e
    ids = pa.chunked_array(ids, pa.string()) if ids else pa.chunked_array([], pa.string())
    urls = pa.chunked_array(urls, pa.string()).combine_chunks() if urls else pa.array([], pa.string())
    empty = int((n_sh == 0).sum())
    docs = np.arange(first_doc, first_doc + n, dtype=np.int64)
    meta = pa.table(
        {
            "doc": docs,
            "id": ids,
            "exact_hi": hi,
            "exact_lo": lo,
            "url_hash": url_hashes(urls) if cfg.exact_url else pa.nulls(n, pa.uint64()),
            "n_shingles": n_sh,
            "cjk": cjk,
        }
    )
    name = path.name
    save_parquet(meta, work / "docs" / name)
    write_group_keys(meta, work, name, parts, rounds)
    if sig is not None:
        save_npy(sig, work / "sig" / (name + ".npy"))
        keys = band_keys(sig, params.bands, params.rows)
        has = n_sh > 0  # documents without shingles (empty text) have no band keys
        nb = int(has.sum())
        write_band_keys(np.repeat(np.arange(params.bands, dtype=np.int16), nb), keys[has].T.reshape(-1),
                        np.tile(docs[has], params.bands), work / "bands" / name, parts)
    return {
        "name": name,
        "docs": n,
        "bytes": bytes_in,
        "short_docs": int(((n_sh == 1)).sum()) if sig is not None else 0,
        "empty_docs": empty,
        "cjk_docs": int(cjk.sum()),
        "seconds": time.perf_counter() - t0,
    }
