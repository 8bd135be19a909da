"""The dedup stage: CLEAN shards in, deduplicated shards, clusters and rejections out.

Phases (scratch data under `out_dir/dedup_work/`, removed at the end):

1. sign (per shard, `workers` threads or processes, the shard streamed in batches of about
   `batch_bytes` of text): exact key, URL hash, MinHash signature (`sig/<shard>.npy`, uint32
   [docs, num_perm]) and LSH band keys (`bands/<shard>.parquet`, one row per (band, document),
   sorted by band so that a band is one row group).
2. exact (polars, lazy): repeated ids, then identical normalized word sequences, then (optionally)
   URLs. The earliest document in shard order is kept.
3. candidates (polars, one band at a time): documents sharing a band key; pairs within each bucket.
4. verify: exact Jaccard of the shingle sets (recomputed per shard for candidate documents only),
   or the Jaccard estimated from the signatures; pairs at or above the threshold become edges.
5. cluster: connected components (union-find) over exact and near edges; in each component the
   document earliest in shard order is kept, and its id is the cluster id.
5b. optional line/paragraph dedup over the kept documents (pipeline/dedup/lines.py).
6. write (per shard, streamed): dedup/<shard>, rejected/dedup-<shard>, clusters/<shard>.
7. persist the band index of the kept documents in `dedup_index/` (incremental runs start from it).

Memory (docs/dedup.md has the formula): a worker holds one batch of text and its temporaries plus
per-document arrays of its shard; the main process holds ~150 bytes per document of the corpus
(union-find and status arrays, one band of keys at a time) and the candidate pairs. Signatures
stay on disk, memory-mapped.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.dedup.config import DedupConfig
from pipeline.dedup.exact import normalize, url_hashes
from pipeline.dedup.lines import drop_units, duplicate_units, unit_hashes_shard
from pipeline.dedup.minhash import (
    Signer,
    band_keys,
    optimal_bands_rows,
    shingle_hashes,
    unique_shingle_sets,
)
from pipeline.io import PARQUET_COMPRESSION, atomic_path, replace_dir, text_bytes, write_json, write_parquet
from pipeline.records import DedupStats
from pipeline.schema import CLEAN_SCHEMA, conform, rejected_table

log = logging.getLogger("opencorpus.dedup")

STAGE = "dedup"
KEPT, DUP_ID, EXACT, URL, NEAR, LINES = 0, 1, 2, 3, 4, 5
FILTERS = {DUP_ID: "duplicate_id", EXACT: "exact_duplicate", URL: "duplicate_url", NEAR: "near_duplicate", LINES: "duplicate_lines"}
METHODS = {EXACT: "exact", URL: "url", NEAR: "minhash"}
CLUSTERS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("cluster_id", pa.string(), nullable=False),
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("similarity", pa.float32()),
        pa.field("method", pa.string()),
    ]
)
# Throughput used for the time estimate of the plan (docs/s per worker, measured on the bench corpus).
PLAN_DOCS_PER_S_PER_WORKER = 2000
PLAN_ABOVE_DOCS = 100_000


@dataclass(frozen=True)
class Params:
    """Everything a worker needs, resolved from the config (picklable)."""

    ngram: int
    num_perm: int
    bands: int
    rows: int
    seed: int
    hash: str
    cjk: str
    cjk_min_ratio: float
    threshold: float
    verify: str
    minhash: bool
    norm: str = "whitespace"

    @classmethod
    def from_config(cls, cfg: DedupConfig) -> "Params":
        m = cfg.minhash
        if m is None:
            return cls(5, 8, 1, 1, 1, "words64", "chars", 0.3, 1.0, "none", False)
        if m.bands is not None:
            bands, rows = m.bands, m.rows
        else:
            bands, rows = optimal_bands_rows(m.threshold, m.num_perm, m.fp_weight())
        threshold = m.threshold if m.threshold is not None else (1.0 / bands) ** (1.0 / rows)
        return cls(m.ngram, m.num_perm, bands, rows, m.seed, m.hash, m.cjk, m.cjk_min_ratio, threshold, m.verify, True)

    def with_norm(self, cfg: DedupConfig) -> "Params":
        n = cfg.normalize
        parts = ["whitespace"] + [name for flag, name in [(n.unicode_nfkc, "NFKC"), (n.lowercase, "lowercase"),
                                                          (n.strip_punctuation, "no punctuation"), (n.strip_digits, "no digits")] if flag]
        return dataclasses.replace(self, norm=", ".join(parts))

    def signer(self) -> Signer:
        return Signer(self.num_perm, self.seed, self.ngram, self.hash, self.cjk, self.cjk_min_ratio)


# ----------------------------------------------------------------------------- helpers

def _rows_per_batch(pf: pq.ParquetFile, batch_bytes: int) -> int:
    """Rows per record batch for about batch_bytes of text, from the Parquet metadata."""
    md = pf.metadata
    if md.num_rows == 0:
        return 1024
    idx = pf.schema_arrow.get_field_index("text")
    text_bytes_total = sum(md.row_group(i).column(idx).total_uncompressed_size for i in range(md.num_row_groups))
    avg = max(text_bytes_total / md.num_rows, 1.0)
    return int(min(max(batch_bytes / avg, 16), 1 << 16))


# Scratch files are not fsynced: a killed run starts its dedup_work/ from scratch anyway.
def _save_npy(arr: np.ndarray, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.save(f, arr)


def _scratch_parquet(table: pa.Table, path: Path, row_group_size: int | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", row_group_size=row_group_size)


# ----------------------------------------------------------------------------- phase 1: sign

def sign_shard(path: Path, first_doc: int, work: Path, cfg: DedupConfig, params: Params) -> dict:
    """Exact keys, signatures and band keys of one shard; written under `work`.

    The shard is streamed in record batches of about `batch_bytes` of text, so a worker holds the
    shard's ids and per-document arrays but only one batch of text and its temporaries.
    """
    t0 = time.perf_counter()
    pf = pq.ParquetFile(path)
    n = pf.metadata.num_rows
    names = pf.schema_arrow.names
    rows_per_batch = _rows_per_batch(pf, cfg.batch_bytes)
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
    for rb in pf.iter_batches(batch_size=rows_per_batch, columns=[c for c in ("id", "text", "url") if c in names]):
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
    _scratch_parquet(meta, work / "docs" / name)
    if sig is not None:
        _save_npy(sig, work / "sig" / (name + ".npy"))
        keys = band_keys(sig, params.bands, params.rows)
        has = n_sh > 0  # documents without shingles (empty text) have no band keys
        nb = int(has.sum())
        bands_tab = pa.table(
            {
                "band": np.repeat(np.arange(params.bands, dtype=np.int16), nb),
                "key": keys[has].T.reshape(-1),
                "doc": np.tile(docs[has], params.bands),
            }
        )
        _scratch_parquet(bands_tab, work / "bands" / name, row_group_size=max(nb, 1))
    return {
        "name": name,
        "docs": n,
        "bytes": bytes_in,
        "short_docs": int(((n_sh == 1)).sum()) if sig is not None else 0,
        "empty_docs": empty,
        "cjk_docs": int(cjk.sum()),
        "seconds": time.perf_counter() - t0,
    }


def shingle_sets_shard(path: Path, first_doc: int, rows: np.ndarray, work: Path, params: Params, cfg: DedupConfig) -> str:
    """Sorted distinct shingle hashes of the given rows of one shard, for exact verification.

    Streams the shard in record batches of about batch_bytes, like sign_shard.
    """
    pf = pq.ParquetFile(path)
    want = np.zeros(pf.metadata.num_rows, bool)
    want[rows] = True
    signer = params.signer()
    values, offsets, docs = [], [np.zeros(1, np.int64)], []
    shift, s = 0, 0
    for rb in pf.iter_batches(batch_size=_rows_per_batch(pf, cfg.batch_bytes), columns=["text"]):
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
    base = work / "shingles" / path.name
    _save_npy(np.concatenate(values) if values else np.zeros(0, np.uint32), Path(str(base) + ".values.npy"))
    _save_npy(np.concatenate(offsets), Path(str(base) + ".offsets.npy"))
    _save_npy(np.concatenate(docs).astype(np.int64) if docs else np.zeros(0, np.int64), Path(str(base) + ".docs.npy"))
    return str(base)


# ----------------------------------------------------------------------------- phase 6: write

def write_shard(path: Path, first_doc: int, out_dir: Path, status: np.ndarray, kept_doc: np.ndarray,
                similarity: np.ndarray, edge_sim: np.ndarray, in_cluster: np.ndarray, rep_doc: np.ndarray,
                id_of: dict, params: Params, unit_drops: dict | None = None, unit: str = "line",
                batch_bytes: int = DedupConfig.model_fields["batch_bytes"].default) -> dict:
    """Write the kept documents, the rejections and the cluster rows of one shard.

    `unit_drops` (line/paragraph dedup): row -> indices of the units to remove from its text; a
    document left without text is rejected as "duplicate_lines".
    """
    name = path.name
    status = status.copy()
    units_removed = unit_bytes_removed = bytes_out = docs_out = 0
    pf = pq.ParquetFile(path)
    rej_parts, clu_parts = [], []  # (id, source, text) of rejected rows; id of cluster rows
    # Streamed batch by batch into the output file (atomic), so a worker holds one batch of text.
    with atomic_path(out_dir / "dedup" / name) as tmp:
        with pq.ParquetWriter(tmp, CLEAN_SCHEMA, compression=PARQUET_COMPRESSION) as writer:
            s = 0
            for rb in pf.iter_batches(batch_size=_rows_per_batch(pf, batch_bytes)):
                e = s + rb.num_rows
                table = conform(pa.Table.from_batches([rb]), CLEAN_SCHEMA)
                drops = {r - s: d for r, d in (unit_drops or {}).items() if s <= r < e}
                if drops:
                    texts = table.column("text").to_pylist()
                    for row, drop in drops.items():
                        before = texts[row]
                        texts[row] = drop_units(before, set(drop), unit)
                        units_removed += len(drop)
                        unit_bytes_removed += len(before.encode("utf-8")) - len(texts[row].encode("utf-8"))
                        if not texts[row].strip():
                            status[s + row] = LINES
                    idx = table.schema.get_field_index("text")
                    table = table.set_column(idx, table.schema.field(idx), pa.array(texts, pa.string()))
                keep_b = status[s:e] == KEPT
                kept = table.filter(pa.array(keep_b))
                writer.write_table(kept)
                docs_out += kept.num_rows
                bytes_out += text_bytes(kept)
                rej = pa.array(np.flatnonzero(~keep_b), pa.int64())
                rej_parts.append(table.select(["id", "source", "text"]).take(rej))
                clu_parts.append(table.select(["id"]).take(pa.array(np.flatnonzero(in_cluster[s:e]), pa.int64())))
                s = e
    keep = status == KEPT
    rej_tab = pa.concat_tables(rej_parts) if rej_parts else pa.table({"id": pa.array([], pa.string()), "source": pa.array([], pa.string()), "text": pa.array([], pa.string())})
    ids = rej_tab.column("id").to_pylist()
    rej_rows = np.flatnonzero(~keep)
    filters, reasons, dup_of = [], [], []
    for j, r in enumerate(rej_rows):
        st = int(status[r])
        k_id = id_of.get(int(kept_doc[r]), "?")
        filters.append(FILTERS[st])
        if st == DUP_ID:
            reasons.append(f"id {ids[j]!r} already used by an earlier document (document #{int(rep_doc[r])} in shard order); ids must be unique")
            dup_of.append(id_of.get(int(rep_doc[r]), ids[j]))
            continue
        dup_of.append(k_id)
        if st == EXACT:
            via = "" if rep_doc[r] == kept_doc[r] else f" (via {id_of.get(int(rep_doc[r]), '?')})"
            reasons.append(f"exact duplicate of {k_id}{via}: the same words after normalization ({params.norm})")
        elif st == URL:
            reasons.append(f"same URL as {k_id}, which is kept")
        elif st == LINES:
            dup_of[-1] = None
            reasons.append(f"every {unit} of at least the minimum length already appears in earlier documents; nothing left")
        else:
            edge = f"; linked by a pair with {params.verify if params.verify != 'none' else 'LSH'} Jaccard {edge_sim[r]:.3f}" if edge_sim[r] > 0 else ""
            reasons.append(
                f"near duplicate of {k_id}: estimated Jaccard {similarity[r]:.3f} of {params.ngram}-gram shingles "
                f"(threshold {params.threshold:.2f}){edge}"
            )
    rej = rejected_table(rej_tab.column("id"), rej_tab.column("source"), STAGE, filters, reasons, rej_tab.column("text"), dup_of)
    write_parquet(rej, out_dir / "rejected" / f"{STAGE}-{name}")

    c_rows = np.flatnonzero(in_cluster)
    clusters = pa.table(
        {
            "id": pa.concat_tables(clu_parts).column("id") if clu_parts else pa.array([], pa.string()),
            "cluster_id": [id_of.get(int(kept_doc[r]), "?") for r in c_rows],
            "kept": keep[c_rows],
            "similarity": similarity[c_rows].astype(np.float32),
            "method": [None if keep[r] else METHODS.get(int(status[r])) for r in c_rows],
        },
        schema=CLUSTERS_SCHEMA,
    )
    write_parquet(clusters, out_dir / "clusters" / name)
    return {"name": name, "docs_out": docs_out, "bytes_out": bytes_out, "docs_rejected": len(rej_rows),
            "emptied_rows": np.flatnonzero(status == LINES).tolist(), "units_removed": units_removed,
            "unit_bytes_removed": unit_bytes_removed}


# ----------------------------------------------------------------------------- orchestration

class _Pool:
    """Run tasks inline (workers=1), in threads (numpy and Arrow release the GIL in their loops;
    one process, so the libraries' memory counts once) or in spawned processes (no fork: it
    would copy polars' and Arrow's thread pools)."""

    def __init__(self, workers: int, kind: str = "threads"):
        self.workers = workers
        if workers <= 1:
            self.ex = None
        elif kind == "threads":
            self.ex = ThreadPoolExecutor(workers)
        else:
            self.ex = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))

    def map(self, fn, arg_lists):
        if self.ex is None:
            return [fn(*a) for a in arg_lists]
        futs = [self.ex.submit(fn, *a) for a in arg_lists]
        return [f.result() for f in futs]

    def close(self):
        if self.ex is not None:
            self.ex.shutdown()


def plan(n_docs: int, n_bytes: int, max_shard_docs: int, params: Params, workers: int, batch_bytes: int,
         dup_share: float = 0.15, max_shard_bytes: int = 0) -> dict:
    """RAM, disk and time estimate of a run from the sizes alone (the formula is in docs/dedup.md)."""
    base = 200 * 2**20  # interpreter, numpy, Arrow, polars, thread pools
    # hashing temporaries, the decompressed row group being read, per-document arrays of a shard
    per_worker = 45 * batch_bytes + max_shard_bytes + max_shard_docs * (4 * params.num_perm + 16 * params.bands + 64)
    per_doc = 150  # union-find, status and similarity arrays, one band of keys in polars, exact keys
    pairs = n_docs * dup_share * 4 * 24  # candidate pairs, a few per duplicate
    ram = base + workers * per_worker + n_docs * per_doc + pairs
    scratch = n_docs * (4 * params.num_perm + 18 * params.bands + 64)
    disk = 2 * scratch + n_bytes  # scratch + persisted index (kept docs) + output shards (about the input)
    secs = n_docs / (PLAN_DOCS_PER_S_PER_WORKER * max(workers, 1))
    return {"docs": n_docs, "text_bytes": n_bytes, "ram_bytes_estimate": int(ram), "disk_bytes_estimate": int(disk),
            "seconds_estimate": round(secs, 1)}


def plan_dedup(input_paths: list[Path], config: DedupConfig, workers: int = 1) -> dict:
    """The plan `run_dedup` logs before a large run, from Parquet metadata only (nothing is read)."""
    params = Params.from_config(config)
    counts, texts = [], []
    for p in input_paths:
        pf = pq.ParquetFile(p)
        counts.append(pf.metadata.num_rows)
        idx = pf.schema_arrow.get_field_index("text")
        texts.append(sum(pf.metadata.row_group(i).column(idx).total_uncompressed_size for i in range(pf.metadata.num_row_groups)))
    return plan(sum(counts), sum(texts), max(counts, default=0), params, workers, config.batch_bytes,
                max_shard_bytes=max(texts, default=0))


def run_dedup(input_paths: list[Path], out_dir: Path, config: DedupConfig, workers: int = 1,
              index_dir: Path | None = None) -> DedupStats:
    """Deduplicate CLEAN shards into `out_dir/dedup/` (same shard names); see the module docstring.

    With `index_dir` (or `config.incremental_index`): a previous run's `dedup_index/`. Its documents
    come first in the order, are never removed, and the new shards are deduplicated against them.
    Every run writes `out_dir/dedup_index/` (the kept documents' keys, signatures and band keys).
    """
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    paths = [Path(p) for p in input_paths]
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"dedup: input shards must have distinct names, got {names}")
    params = Params.from_config(config).with_norm(config)
    work = out_dir / "dedup_work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if index_dir is None and config.incremental_index:
        index_dir = Path(config.incremental_index)  # absolute: the recipe resolves it against its folder
    if index_dir is not None and not Path(index_dir).is_dir():
        raise FileNotFoundError(f"dedup: incremental index folder {index_dir} does not exist")
    old = load_index(Path(index_dir), work, params) if index_dir else IndexParts([], [], [], 0)
    n_old = old.n_docs
    counts = [pq.ParquetFile(p).metadata.num_rows for p in paths]
    all_names = old.work_names + names
    all_counts = old.counts + counts
    all_text = old.text_paths + paths
    first_all = np.concatenate(([0], np.cumsum(all_counts)[:-1])).astype(np.int64) if all_counts else np.zeros(0, np.int64)
    first = first_all[len(old.work_names):]
    n_all = int(sum(all_counts))
    n_docs = n_all - n_old
    the_plan = plan_dedup(paths, config, workers)
    if n_all >= PLAN_ABOVE_DOCS:
        log.info("dedup plan: %s", _plan_line(the_plan))
    timings, peak_mb = {}, {}
    pool = _Pool(workers, config.executor)
    try:
        # 1. sign
        t = time.perf_counter()
        signed = pool.map(sign_shard, [(p, int(f), work, config, params) for p, f in zip(paths, first)])
        timings["sign_s"] = time.perf_counter() - t
        peak_mb["sign"] = _max_rss_mb()
        bytes_in = sum(s["bytes"] for s in signed)

        status = np.zeros(n_all, np.int8)
        rep_doc = np.arange(n_all, dtype=np.int64)  # the document a removal points at (exact/url/id)
        t = time.perf_counter()
        import polars as pl

        docs_lf = pl.scan_parquet([work / "docs" / n for n in all_names]) if all_names else None
        edges_a, edges_b = [], []
        # 2. exact: ids first (ids must be unique downstream), then text, then URL.
        if n_docs:
            _mark_groups(docs_lf, ["id"], status, rep_doc, DUP_ID, None, None, n_old)
            if config.exact:
                _mark_groups(docs_lf, ["exact_hi", "exact_lo"], status, rep_doc, EXACT, edges_a, edges_b, n_old)
            if config.exact_url:
                _mark_groups(docs_lf.filter(pl.col("url_hash").is_not_null()), ["url_hash"], status, rep_doc, URL, edges_a, edges_b, n_old)
        timings["exact_s"] = time.perf_counter() - t
        peak_mb["exact"] = _max_rss_mb()

        # 3-4. near duplicates
        near_stats = {"candidate_pairs": 0, "verified_pairs": 0}
        edge_sim = np.zeros(n_all, np.float32)
        sigs = None
        if params.minhash and n_docs:
            sigs = _SigStore(work, all_names, first_all, all_counts)
            t = time.perf_counter()
            pa_, pb_ = _candidate_pairs(work, all_names, params, status, config.minhash.max_bucket_pairs)
            new = pb_ >= n_old  # two indexed documents were both kept already
            pa_, pb_ = pa_[new], pb_[new]
            timings["candidates_s"] = time.perf_counter() - t
            peak_mb["candidates"] = _max_rss_mb()
            near_stats["candidate_pairs"] = int(len(pa_))
            t = time.perf_counter()
            sim = _verify(pa_, pb_, params, sigs, pool, all_text, first_all, work, config)
            timings["verify_s"] = time.perf_counter() - t
            peak_mb["verify"] = _max_rss_mb()
            ok = sim >= params.threshold - 1e-9
            near_stats["verified_pairs"] = int(ok.sum())
            pa_, pb_, sim = pa_[ok], pb_[ok], sim[ok]
            edges_a.append(pa_)
            edges_b.append(pb_)
            np.maximum.at(edge_sim, pa_, sim.astype(np.float32))
            np.maximum.at(edge_sim, pb_, sim.astype(np.float32))

        # 5. cluster
        t = time.perf_counter()
        root, in_cluster = _components(n_all, edges_a, edges_b)
        idx = np.arange(n_all)
        near = in_cluster & (status == KEPT) & (root != idx) & (idx >= n_old)
        status[near] = NEAR
        kept_doc = np.where(in_cluster, root, rep_doc)
        similarity = np.ones(n_all, np.float32)
        if sigs is not None:
            members = np.flatnonzero(in_cluster & (root != idx) & (idx >= n_old))
            similarity[members] = sigs.jaccard(members, root[members])
        timings["cluster_s"] = time.perf_counter() - t
        peak_mb["cluster"] = _max_rss_mb()

        # ids of every document a removal points at, and cluster ids
        new_part = slice(n_old, n_all)
        removed = status[new_part] != KEPT
        need = np.unique(np.concatenate([kept_doc[new_part][removed], rep_doc[new_part][removed],
                                         root[new_part][in_cluster[new_part]]]))
        id_of = _ids_of(docs_lf, need) if len(need) else {}

        # 5b. line/paragraph dedup over the kept documents (optional)
        drops = [None] * len(paths)
        if config.lines.enabled and n_docs:
            t = time.perf_counter()
            pool.map(unit_hashes_shard, [(p, int(f), status[int(f) : int(f) + c] == KEPT, work, config.lines)
                                         for p, f, c in zip(paths, first, counts)])
            d_doc, d_unit = duplicate_units(work, names)
            for k, (f, c) in enumerate(zip(first, counts)):
                m = (d_doc >= f) & (d_doc < f + c)
                per: dict[int, list[int]] = {}
                for doc, u in zip((d_doc[m] - f).tolist(), d_unit[m].tolist()):
                    per.setdefault(doc, []).append(u)
                drops[k] = per
            timings["lines_s"] = time.perf_counter() - t
            peak_mb["lines"] = _max_rss_mb()

        # 6. write
        t = time.perf_counter()
        args = []
        for k, (p, f, c) in enumerate(zip(paths, first, counts)):
            sl = slice(int(f), int(f) + c)
            args.append((p, int(f), out_dir, status[sl], kept_doc[sl], similarity[sl], edge_sim[sl], in_cluster[sl],
                         rep_doc[sl], {d: id_of[d] for d in np.unique(np.concatenate([kept_doc[sl], rep_doc[sl]])).tolist() if d in id_of},
                         params, drops[k], config.lines.unit, config.batch_bytes))
        written = pool.map(write_shard, args)
        for w, f in zip(written, first):
            status[np.asarray(w["emptied_rows"], np.int64) + f] = LINES
        timings["write_s"] = time.perf_counter() - t
        peak_mb["write"] = _max_rss_mb()

        # 7. persist the band index of everything kept (old parts + this run's kept documents)
        t = time.perf_counter()
        if config.persist_index:
            save_index(out_dir, work, old, names, first, counts, status, params)
        timings["index_s"] = time.perf_counter() - t
        peak_mb["index"] = _max_rss_mb()
    finally:
        pool.close()

    stats = _stats(signed, written, status, root, in_cluster, n_old, id_of, out_dir, all_names, first_all, params, bytes_in)
    stats.update(near_stats)
    stats["indexed_docs"] = n_old
    stats["plan"] = the_plan
    stats["timings"] = {k: round(v, 3) for k, v in timings.items()}
    stats["peak_rss_mb_after"] = peak_mb  # this process's peak RSS after each phase (processes executor: main only)
    stats["seconds"] = round(time.perf_counter() - t_start, 3)
    shutil.rmtree(work, ignore_errors=True)
    new_status = status[n_old:]
    by_filter = {name: int((new_status == code).sum()) for code, name in FILTERS.items()}
    return DedupStats(**stats, rejected_by_filter={k: v for k, v in by_filter.items() if v})


def _max_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _plan_line(p: dict) -> str:
    return (f"{p['docs']:,} docs, {p['text_bytes'] / 2**20:,.0f} MiB of text: about {p['ram_bytes_estimate'] / 2**20:,.0f} MiB RAM, "
            f"{p['disk_bytes_estimate'] / 2**20:,.0f} MiB disk, {p['seconds_estimate']:,.0f} s")


# ----------------------------------------------------------------------------- persisted band index

INDEX_VERSION = 1


@dataclass
class IndexParts:
    """The parts of a persisted index, linked into a run's work folder (they come first in the order)."""

    work_names: list[str]
    counts: list[int]
    text_paths: list[Path]
    n_docs: int
    generation: int = 0
    entries: list | None = None  # index.json "parts" entries, for the next index
    folder: Path | None = None


def _index_params(params: Params) -> dict:
    d = dataclasses.asdict(params)
    return {k: d[k] for k in ("ngram", "num_perm", "bands", "rows", "seed", "hash", "cjk", "cjk_min_ratio", "norm", "minhash")}


def _link_or_copy(src: Path, dst: Path):
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def load_index(folder: Path, work: Path, params: Params) -> IndexParts:
    """Link a persisted index's parts into `work` so the phases see them as leading shards."""
    meta_path = folder / "index.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"dedup: incremental index {folder} has no index.json (is it a dedup_index/ folder?)")
    meta = json.loads(meta_path.read_text())
    want = _index_params(params)
    if meta.get("params") != want:
        diff = {k: (meta.get("params", {}).get(k), v) for k, v in want.items() if meta.get("params", {}).get(k) != v}
        raise ValueError(f"dedup: index {folder} was built with other settings (index, now): {diff}")
    names, counts, texts = [], [], []
    for k, part in enumerate(meta["parts"]):
        wname = f"index~{k:05d}~{part['name']}"
        for sub, suffix in (("docs", ""), ("sig", ".npy"), ("bands", "")):
            src = folder / sub / (part["name"] + suffix)
            if src.exists():
                _link_or_copy(src, work / sub / (wname + suffix))
        names.append(wname)
        counts.append(int(part["docs"]))
        texts.append(folder / part["text"])  # relative to the index folder (absolute in old indexes)
    return IndexParts(names, counts, texts, int(sum(counts)), int(meta.get("generation", 0)), meta["parts"], folder)


def save_index(out_dir: Path, work: Path, old: IndexParts, names, first, counts, status, params: Params):
    """Write out_dir/dedup_index/: the old parts plus this run's kept documents, renumbered densely."""
    final = out_dir / "dedup_index"
    tmp = out_dir / ".tmp-dedup_index"  # our temporary naming: a killed run's copy is removed by the rerun
    shutil.rmtree(tmp, ignore_errors=True)
    gen = old.generation + 1 if old.entries is not None else 0
    parts = []

    def text_ref(path: Path) -> str:
        # Relative to the index folder, so a corpus folder (with the earlier corpora it was
        # deduplicated against) can be moved or copied and its index still finds the texts.
        return os.path.relpath(Path(path).resolve(), final.resolve())

    for entry, wname, text in zip(old.entries or [], old.work_names, old.text_paths):
        for sub, suffix in (("docs", ""), ("sig", ".npy"), ("bands", "")):
            src = work / sub / (wname + suffix)
            if src.exists():
                _link_or_copy(src, tmp / sub / (entry["name"] + suffix))
        parts.append({**entry, "text": text_ref(text)})
    next_doc = old.n_docs
    for name, f, c in zip(names, first, counts):
        keep = status[int(f) : int(f) + c] == KEPT
        new_doc = np.full(c, -1, np.int64)
        new_doc[keep] = next_doc + np.arange(int(keep.sum()))
        pname = f"g{gen:03d}-{name}"
        docs = pq.read_table(work / "docs" / name).filter(pa.array(keep))
        docs = docs.set_column(0, "doc", pa.array(new_doc[keep]))
        _scratch_parquet(docs, tmp / "docs" / pname)
        if params.minhash:
            sig = np.load(work / "sig" / (name + ".npy"))[keep]
            _save_npy(sig, tmp / "sig" / (pname + ".npy"))
            bands = pq.read_table(work / "bands" / name)
            d = bands.column("doc").to_numpy()
            m = keep[d - int(f)]
            nb = int(keep.sum() and (m.sum() // max(params.bands, 1)))
            bands = bands.filter(pa.array(m)).set_column(2, "doc", pa.array(new_doc[d[m] - int(f)]))
            _scratch_parquet(bands, tmp / "bands" / pname, row_group_size=max(nb, 1))
        parts.append({"name": pname, "docs": int(keep.sum()), "text": text_ref(out_dir / "dedup" / name)})
        next_doc += int(keep.sum())
    tmp.mkdir(parents=True, exist_ok=True)
    write_json({"version": INDEX_VERSION, "generation": gen, "params": _index_params(params), "docs": next_doc, "parts": parts},
               tmp / "index.json")
    replace_dir(tmp, final)


def _mark_groups(lf, keys: list[str], status, rep_doc, code: int, edges_a, edges_b, n_old: int = 0):
    """Among documents still kept, mark all but the earliest of each group of equal `keys`
    (indexed documents, doc < n_old, are never marked)."""
    import polars as pl

    alive = pl.DataFrame({"doc": np.flatnonzero(status == KEPT).astype(np.int64)}).lazy()
    dups = (
        lf.select(["doc", *keys])
        .join(alive, on="doc", how="semi")
        .with_columns(pl.col("doc").min().over(keys).alias("rep"))
        .filter((pl.col("doc") != pl.col("rep")) & (pl.col("doc") >= n_old))
        .select("doc", "rep")
        .collect()
    )
    if dups.height == 0:
        return
    d = dups["doc"].to_numpy()
    r = dups["rep"].to_numpy()
    status[d] = code
    rep_doc[d] = r
    if edges_a is not None:
        edges_a.append(r)
        edges_b.append(d)


class _SigStore:
    """Signatures of all shards, memory-mapped; rows gathered by global document index."""

    def __init__(self, work: Path, names, first, counts):
        self.first = np.asarray(first)
        self.maps = [np.load(work / "sig" / (n + ".npy"), mmap_mode="r") for n in names]

    def rows(self, docs: np.ndarray) -> np.ndarray:
        docs = np.asarray(docs, np.int64)
        shard = np.searchsorted(self.first, docs, side="right") - 1
        out = np.empty((len(docs), self.maps[0].shape[1] if self.maps else 0), np.uint32)
        for s in np.unique(shard):
            m = shard == s
            out[m] = self.maps[s][docs[m] - self.first[s]]
        return out

    def jaccard(self, a: np.ndarray, b: np.ndarray, chunk: int = 65536) -> np.ndarray:
        out = np.empty(len(a), np.float32)
        for i in range(0, len(a), chunk):
            out[i : i + chunk] = (self.rows(a[i : i + chunk]) == self.rows(b[i : i + chunk])).mean(axis=1)
        return out


def _candidate_pairs(work: Path, names, params: Params, status, max_bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (a < b) of documents sharing a band key, one band at a time (bounded memory)."""
    import polars as pl

    files = [work / "bands" / n for n in names]
    removed = pl.DataFrame({"doc": np.flatnonzero(status != KEPT).astype(np.int64)})
    codes = []
    for band in range(params.bands):
        lf = pl.scan_parquet(files).filter(pl.col("band") == band).select("key", "doc")
        if removed.height:
            lf = lf.join(removed.lazy(), on="doc", how="anti")
        b = (
            lf.with_columns(pl.len().over("key").alias("n"))
            .filter(pl.col("n") > 1)
            .collect()
        )
        if b.height == 0:
            continue
        small = b.filter(pl.col("n") <= max_bucket).select("key", "doc")
        if small.height:
            p = small.join(small, on="key", suffix="_b").filter(pl.col("doc") < pl.col("doc_b"))
            codes.append(_code(p["doc"].to_numpy(), p["doc_b"].to_numpy()))
        big = b.filter(pl.col("n") > max_bucket).select("key", "doc").sort("key", "doc")
        if big.height:
            # Large buckets: pairs with the bucket's first document and with the next one (a chain),
            # so the bucket stays connected without n^2 pairs.
            k = big["key"].to_numpy()
            d = big["doc"].to_numpy()
            start = np.r_[True, k[1:] != k[:-1]]
            head = d[np.maximum.accumulate(np.where(start, np.arange(len(d)), 0))]
            nxt = ~start
            codes.append(_code(head[nxt], d[nxt]))
            codes.append(_code(d[:-1][nxt[1:]], d[1:][nxt[1:]]))
    if not codes:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    u = np.unique(np.concatenate(codes))
    return (u >> np.uint64(32)).astype(np.int64), (u & np.uint64(0xFFFFFFFF)).astype(np.int64)


def _code(a, b) -> np.ndarray:
    a, b = np.minimum(a, b), np.maximum(a, b)
    keep = a != b
    return (a[keep].astype(np.uint64) << np.uint64(32)) | b[keep].astype(np.uint64)


def _verify(a, b, params: Params, sigs: _SigStore, pool: _Pool, paths, first, work: Path, cfg: DedupConfig) -> np.ndarray:
    """Similarity of each candidate pair: exact Jaccard, estimated Jaccard, or 1 (no verification)."""
    if len(a) == 0:
        return np.zeros(0, np.float32)
    if params.verify == "none":
        return np.ones(len(a), np.float32)
    if params.verify == "signature":
        return sigs.jaccard(a, b)
    docs = np.unique(np.concatenate([a, b]))
    shard_of = np.searchsorted(first, docs, side="right") - 1
    args = []
    for s in np.unique(shard_of):
        rows = docs[shard_of == s] - first[s]
        args.append((paths[s], int(first[s]), rows, work, params, cfg))
    bases = pool.map(shingle_sets_shard, args)
    # Memory-mapped: only the pages of the sets being compared are read.
    stores, where = [], {}
    for k, base in enumerate(bases):
        values = np.load(base + ".values.npy", mmap_mode="r")
        offsets = np.load(base + ".offsets.npy")
        for i, d in enumerate(np.load(base + ".docs.npy").tolist()):
            where[d] = (k, int(offsets[i]), int(offsets[i + 1]))
        stores.append(values)
    out = np.empty(len(a), np.float32)
    for i, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
        kx, sx0, sx1 = where[x]
        ky, sy0, sy1 = where[y]
        sx, sy = stores[kx][sx0:sx1], stores[ky][sy0:sy1]
        if len(sx) == 0 or len(sy) == 0:
            out[i] = 0.0
            continue
        inter = np.intersect1d(sx, sy, assume_unique=True).size
        out[i] = inter / (len(sx) + len(sy) - inter)
    return out


def _components(n: int, edges_a: list, edges_b: list) -> tuple[np.ndarray, np.ndarray]:
    """Union-find over the edges, vectorized; root = smallest document index of each component.

    Each round hooks the larger root of every edge onto the smaller one, then compresses all
    paths by pointer jumping; parent[i] <= i always, so the smallest index is never hooked.
    """
    parent = np.arange(n, dtype=np.int64)
    a = np.concatenate(edges_a).astype(np.int64) if edges_a else np.zeros(0, np.int64)
    b = np.concatenate(edges_b).astype(np.int64) if edges_b else np.zeros(0, np.int64)
    while len(a):
        ra, rb = parent[a], parent[b]
        lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
        m = lo != hi
        if not m.any():
            break
        a, b = lo[m], hi[m]
        np.minimum.at(parent, b, a)
        parent = _compress(parent)
    size = np.bincount(parent, minlength=n)
    return parent, size[parent] > 1


def _compress(parent: np.ndarray) -> np.ndarray:
    """Point every element at its root (pointer jumping until nothing changes)."""
    while True:
        up = parent[parent]
        if np.array_equal(up, parent):
            return parent
        parent = up


def _ids_of(docs_lf, docs: np.ndarray) -> dict[int, str]:
    import polars as pl

    want = pl.DataFrame({"doc": np.asarray(docs, np.int64)}).lazy()
    df = docs_lf.select("doc", "id").join(want, on="doc", how="semi").collect()
    return dict(zip(df["doc"].to_list(), df["id"].to_list()))


def _stats(signed, written, status, root, in_cluster, n_old, id_of, out_dir, names, first, params: Params, bytes_in) -> dict:
    new_status = status[n_old:]
    n = len(new_status)
    docs_out = sum(w["docs_out"] for w in written)
    # clusters that hold at least one document of this run (sizes count indexed members too)
    touched = np.zeros(len(status), bool)
    touched[root[n_old:][in_cluster[n_old:]]] = True
    sizes = np.bincount(root[in_cluster], minlength=len(status)) if in_cluster.any() else np.zeros(len(status), np.int64)
    sizes = np.where(touched, sizes, 0)
    sizes_nz = sizes[sizes > 1]
    values, counts = np.unique(sizes_nz, return_counts=True)  # exact sizes: one entry per distinct size
    hist = {str(int(v)): int(c) for v, c in zip(values, counts)}
    order = np.argsort(-sizes, kind="stable")[:5]
    largest = []
    for r in order:
        if sizes[r] < 2:
            break
        members = np.flatnonzero(root == r)
        largest.append({"cluster_id": id_of.get(int(r)) or _id_lookup(out_dir, names, first, int(r)), "size": int(sizes[r]),
                        "members": [id_of.get(int(m)) or _id_lookup(out_dir, names, first, int(m)) for m in members[:10]],
                        "excerpt": _excerpt(out_dir, names, first, int(r))})
    status = new_status
    return {
        "docs_in": n,
        "docs_out": docs_out,
        "docs_rejected": int((status != KEPT).sum()),
        "bytes_in": int(bytes_in),
        "bytes_out": int(sum(w["bytes_out"] for w in written)),
        "duplicate_ids": int((status == DUP_ID).sum()),
        "exact_removed": int((status == EXACT).sum()),
        "url_removed": int((status == URL).sum()),
        "near_removed": int((status == NEAR).sum()),
        "lines_emptied": int((status == LINES).sum()),
        "units_removed": int(sum(w["units_removed"] for w in written)),
        "unit_bytes_removed": int(sum(w["unit_bytes_removed"] for w in written)),
        "clusters": int(len(sizes_nz)),
        "docs_in_clusters": int(sizes_nz.sum()),
        "cluster_sizes": hist,
        "largest_clusters": largest,
        "short_docs": int(sum(s["short_docs"] for s in signed)),
        "empty_docs": int(sum(s["empty_docs"] for s in signed)),
        "cjk_docs": int(sum(s["cjk_docs"] for s in signed)),
        "ngram": params.ngram,
        "num_perm": params.num_perm,
        "bands": params.bands,
        "rows": params.rows,
        "threshold": params.threshold,
        "verify": params.verify,
        "hash": params.hash,
    }


def _locate(names, first, doc: int) -> tuple[str, int]:
    s = int(np.searchsorted(first, doc, side="right") - 1)
    return names[s], doc - int(first[s])


def _id_lookup(out_dir: Path, names, first, doc: int) -> str:
    name, row = _locate(names, first, doc)
    t = pq.read_table(out_dir / "dedup_work" / "docs" / name, columns=["id"])
    return t.column("id")[row].as_py()


def _excerpt(out_dir: Path, names, first, doc: int, chars: int = 160) -> str:
    name, row = _locate(names, first, doc)
    if name.startswith("index~"):
        return "(a document of the incremental index)"
    t = pq.read_table(out_dir / "dedup" / name, columns=["id", "text"])
    want = _id_lookup(out_dir, names, first, doc)
    for i, t_id in enumerate(t.column("id").to_pylist()):
        if t_id == want:
            text = t.column("text")[i].as_py() or ""
            text = " ".join(text.split())
            return text[:chars] + ("..." if len(text) > chars else "")
    return ""
