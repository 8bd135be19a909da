"""The dedup stage: CLEAN shards in, deduplicated shards, clusters and rejections out.

The stage is a sequence of phases, each a list of units that a mapper runs (pipeline/units.py):

1. sign (one unit per shard, `sign.py`): exact key, URL hash, MinHash signature, LSH band keys.
2. groups (one unit per hash partition, `groups.py`): repeated ids, then identical normalized
   word sequences, then (optionally) URLs; the earliest document in shard order is kept.
3. candidates (one unit per range of bands, `candidates.py`): documents sharing a band key; pairs per bucket.
4. verify (`verify.py`): shingle sets of the candidate documents (one unit per shard), then one
   unit per partition of pairs: exact Jaccard, signature Jaccard or none; edges at the threshold.
5. cluster (one unit, `cluster.py`): connected components over the edge list; the earliest
   document of each component is kept and names the cluster.
5b. optional line/paragraph dedup over the kept documents (`lines.py`; global, off by default).
6. write (one unit per shard, `write.py`): dedup/<shard>, rejected/dedup-<shard>, clusters/<shard>.
7. index (one unit, `index.py`): the band index of the kept documents, for incremental runs.

Scratch data lives in the corpus folder's state directory (`pipeline.units.scratch_dir`) and is
removed at the end; a killed
run resumes from its finished units (same key). Units of a phase are independent and their
outputs do not depend on how many workers run them, nor where: the result is byte-identical
on one worker, a process pool or a Dask cluster. Memory: docs/dedup.md has the formulas.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipeline.dedup.candidates import band_range_pairs, pair_docs
from pipeline.dedup.cluster import cluster, read_assignment
from pipeline.dedup.config import DedupConfig
from pipeline.dedup.groups import ROUNDS, group_partition, index_group_keys, read_removals
from pipeline.dedup.index import IndexParts, load_index, save_index
from pipeline.dedup.lines import duplicate_units, unit_hashes_shard
from pipeline.dedup.params import FILTERS, KEPT, Layout, Params
from pipeline.dedup.sign import index_band_keys, sign_shard
from pipeline.dedup.verify import shingle_sets_shard, verify_partition
from pipeline.dedup.write import write_shard
from pipeline.units import LocalMapper, Mapper, Work, default_key, save_npy, scratch_dir
from pipeline.records import DedupStats

log = logging.getLogger("opencorpus.dedup")

# Throughput used for the time estimate of the plan (docs/s per worker, measured on the bench corpus).
PLAN_DOCS_PER_S_PER_WORKER = 2000
PLAN_ABOVE_DOCS = 100_000
DOCS_PER_PARTITION = 100_000  # default partitions: one per this many documents, at least 2, at most 256


def plan(n_docs: int, n_bytes: int, max_shard_docs: int, params: Params, workers: int, batch_bytes: int,
         dup_share: float = 0.15, max_shard_bytes: int = 0) -> dict:
    """RAM, disk and time estimate of a run from the sizes alone (the formula is in docs/dedup.md)."""
    base = 200 * 2**20  # interpreter, numpy, Arrow, polars, thread pools
    # hashing temporaries, the decompressed row group being read, per-document arrays of a shard
    per_worker = 45 * batch_bytes + max_shard_bytes + max_shard_docs * (4 * params.num_perm + 16 * params.bands + 64)
    # the driver's cluster unit: removals (16 B), edges (20 B), documents in edges (48 B, two per
    # duplicate) and candidate pairs (8 B, a few per duplicate); documents in no edge cost nothing
    dups = n_docs * dup_share
    driver = dups * (16 + 20 + 2 * 48 + 4 * 8)
    ram = base + workers * per_worker + driver
    scratch = n_docs * (4 * params.num_perm + 18 * params.bands + 100)  # signatures, band keys, docs and group keys
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


def partitions(n_docs: int, config: DedupConfig) -> int:
    """Hash partitions of the groups and verify phases: from the recipe or the corpus size,
    never from the number of workers (the outputs must not depend on it)."""
    if config.partitions:
        return config.partitions
    return int(min(max(math.ceil(n_docs / DOCS_PER_PARTITION), 2), 256))


def band_ranges(bands: int, parts: int) -> list[range]:
    """The candidates units: bands split into at most `parts` contiguous ranges."""
    n = min(bands, parts)
    edges = [round(k * bands / n) for k in range(n + 1)]
    return [range(a, b) for a, b in zip(edges, edges[1:])]


def merge_removed(work: str, rounds: list[str], parts: int) -> dict:
    """Sorted documents removed by the rounds so far (`groups/removed-<last round>.npy`)."""
    work = Path(work)
    docs = np.unique(np.concatenate([np.zeros(0, np.int64)] + [read_removals(work, r, parts)[0] for r in rounds]))
    save_npy(docs, work / "groups" / f"removed-{rounds[-1]}.npy")
    return {"removed": int(len(docs))}


def candidate_rows(work: str, layout: Layout) -> dict:
    """Rows of each shard that are in a candidate pair (the documents whose shingle sets verify needs)."""
    docs = [np.zeros(0, np.int64)]
    for f in sorted(Path(work).glob("pairs/*/*.npy")):
        a, b = pair_docs(np.load(f))
        docs.append(np.unique(np.concatenate([a, b])))
    docs = np.unique(np.concatenate(docs))
    shard = layout.shard_of(docs)
    return {name: (docs[shard == s] - layout.first[s]).tolist() for s, name in enumerate(layout.names) if (shard == s).any()}


def run_dedup(input_paths: list[Path], out_dir: Path, config: DedupConfig, workers: int = 1,
              index_dir: Path | None = None, mapper: Mapper | None = None, key: str | None = None) -> DedupStats:
    """Deduplicate CLEAN shards into `out_dir/dedup/` (same shard names); see the module docstring.

    `mapper` runs the units of each phase (default: `workers` threads or processes of this
    process, per `config.executor`); `key` names the scratch state a rerun may resume from
    (default: from the inputs' names, sizes and times and the config).
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
    if index_dir is None and config.incremental_index:
        index_dir = Path(config.incremental_index)  # absolute: the recipe resolves it against its folder
    if index_dir is not None and not Path(index_dir).is_dir():
        raise FileNotFoundError(f"dedup: incremental index folder {index_dir} does not exist")
    work = Work(scratch_dir(out_dir, "dedup"), key or default_key(paths, config, str(index_dir)))
    wd = str(work.dir)
    old = load_index(Path(index_dir), work.dir, params) if index_dir else IndexParts([], [], [], 0)
    counts = [pq.ParquetFile(p).metadata.num_rows for p in paths]
    layout = Layout(old.work_names + names, old.counts + counts, old.n_docs)
    all_text = old.text_paths + paths
    first = layout.first[len(old.work_names):]
    n_docs = layout.n_docs - layout.n_old
    parts = partitions(layout.n_docs, config)
    the_plan = plan_dedup(paths, config, workers)
    if layout.n_docs >= PLAN_ABOVE_DOCS:
        log.info("dedup plan: %s", _plan_line(the_plan))
    timings, peak_mb = {}, {}
    own = mapper is None
    mapper = mapper or LocalMapper(workers, config.executor)
    here = LocalMapper(1)  # the driver's own units (merging, clustering): small, in this process

    def phase(name: str, run: Mapper, units: list) -> list[dict]:
        t = time.perf_counter()
        out = work.run(run, name, units)
        timings[name + "_s"] = round(timings.get(name + "_s", 0) + time.perf_counter() - t, 3)
        peak_mb[name] = _max_rss_mb()
        return out

    try:
        rounds = [r for r, _, _ in ROUNDS if r == "id" or (r == "exact" and config.exact) or (r == "url" and config.exact_url)]
        signed = phase("sign", mapper, [(n, sign_shard, (str(p), int(f), wd, config, params, parts, rounds), [p])
                                        for n, p, f in zip(names, paths, first)])
        if old.work_names and n_docs:
            phase("sign", mapper, [(n, index_group_keys, (wd, n, parts, rounds), [work.path("docs", n)])
                                   for n in old.work_names])
            if params.minhash:
                phase("sign", mapper, [(f"bands-{n}", index_band_keys, (wd, n, parts), [work.path("bands", n)])
                                       for n in old.work_names])
        near = {"candidate_pairs": 0, "verified_pairs": 0}
        if n_docs:
            removed = None
            for r, keys, _ in ROUNDS:
                if r not in rounds:
                    continue
                phase("groups", mapper, [(f"{r}-{p:04d}", group_partition, (wd, layout.names, keys, p, parts, layout.n_old, removed,
                                                                           str(work.path("groups", r, f"{p:04d}.parquet"))),
                                          [work.path("keys", r, "*"), *_given(removed)])
                                         for p in range(parts)])
                done = rounds[: rounds.index(r) + 1]
                phase("groups", here, [(f"removed-{r}", merge_removed, (wd, done, parts))])
                removed = str(work.path("groups", f"removed-{r}.npy"))
            if params.minhash:
                phase("candidates", mapper, [(f"{r.start:04d}-{r.stop:04d}-{q:04d}", band_range_pairs,
                                              (wd, layout.names, r, q, removed, config.minhash.max_bucket_pairs, layout.n_old, parts),
                                              [work.path("bands", "*"), *_given(removed)])
                                             for q in range(parts) for r in band_ranges(params.bands, parts)])
                if params.verify == "exact":
                    rows = phase("verify", here, [("candidate-rows", candidate_rows, (wd, layout))])[0]
                    phase("verify", mapper, [(f"shingles-{n}", shingle_sets_shard, (str(all_text[s]), n, int(layout.first[s]),
                                                                                  np.asarray(rows[n], np.int64), wd, params, config),
                                                                                 [all_text[s]])
                                             for s, n in enumerate(layout.names) if n in rows])
                verified = phase("verify", mapper, [(f"{p:04d}", verify_partition, (wd, p, layout, params),
                                                    [work.path("pairs", "*", f"{p:04d}.npy"),
                                                     work.path("shingles" if params.verify == "exact" else "sig", "*")])
                                                   for p in range(parts)])
                near = {k: sum(v[k] for v in verified) for k in near}
        figures = phase("cluster", here, [("all", cluster, (wd, layout, names, params, rounds if n_docs else [], parts))])[0]

        drops = [None] * len(paths)
        if config.lines.enabled and n_docs:
            phase("lines", mapper, [(n, unit_hashes_shard, (p, int(f), _kept(work.dir, n, int(f), c), work.dir, config.lines), [p])
                                    for n, p, f, c in zip(names, paths, first, counts)])
            d_doc, d_unit = duplicate_units(work.dir, names)
            for k, (f, c) in enumerate(zip(first, counts)):
                m = (d_doc >= f) & (d_doc < f + c)
                per: dict[int, list[int]] = {}
                for doc, u in zip((d_doc[m] - f).tolist(), d_unit[m].tolist()):
                    per.setdefault(doc, []).append(u)
                drops[k] = per

        written = phase("write", mapper, [(n, write_shard, (str(p), int(f), str(out_dir), wd, params, drops[k], config.lines.unit,
                                                            config.batch_bytes),
                                           [p, work.path("assign", n)])
                                          for k, (n, p, f) in enumerate(zip(names, paths, first))])
        if config.persist_index:
            emptied = {w["name"]: w["emptied_rows"] for w in written}

            def keep_of(name: str, f: int, c: int) -> np.ndarray:
                keep = _kept(work.dir, name, f, c)
                keep[np.asarray(emptied[name], np.int64)] = False
                return keep

            phase("index", here, [("all", _save_index, (out_dir, work.dir, old, names, first, counts, keep_of, params))])
    finally:
        if own:
            mapper.close()

    stats = _stats(signed, written, figures, layout, out_dir, params)
    stats.update(near)
    stats.update(indexed_docs=layout.n_old, plan=the_plan, timings=timings, partitions=parts,
                 peak_rss_mb_after=peak_mb,  # this process's peak RSS after each phase (the driver's)
                 seconds=round(time.perf_counter() - t_start, 3))
    work.remove()
    return DedupStats(**stats)


def _given(path: str | None) -> list[str]:
    return [path] if path else []


def _kept(work: Path, name: str, first_doc: int, n: int) -> np.ndarray:
    return read_assignment(work, name, first_doc, n)["status"] == KEPT


def _save_index(*args) -> dict:
    save_index(*args)
    return {"saved": True}


def _stats(signed, written, figures, layout: Layout, out_dir: Path, params: Params) -> dict:
    counts = {name: sum(w["status_counts"].get(name, 0) for w in written) for name in FILTERS.values()}
    largest = [{"cluster_id": c["cluster_id"], "size": c["size"], "members": c["member_ids"],
                "excerpt": _excerpt(out_dir, layout, c["root"], c["cluster_id"])} for c in figures["largest"]]
    return {
        "docs_in": layout.n_docs - layout.n_old,
        "docs_out": sum(w["docs_out"] for w in written),
        "docs_rejected": sum(w["docs_rejected"] for w in written),
        "bytes_in": sum(s["bytes"] for s in signed),
        "bytes_out": sum(w["bytes_out"] for w in written),
        "duplicate_ids": counts["duplicate_id"],
        "exact_removed": counts["exact_duplicate"],
        "url_removed": counts["duplicate_url"],
        "near_removed": counts["near_duplicate"],
        "lines_emptied": counts["duplicate_lines"],
        "units_removed": sum(w["units_removed"] for w in written),
        "unit_bytes_removed": sum(w["unit_bytes_removed"] for w in written),
        "clusters": figures["clusters"],
        "docs_in_clusters": figures["docs_in_clusters"],
        "cluster_sizes": figures["cluster_sizes"],
        "largest_clusters": largest,
        "short_docs": sum(s["short_docs"] for s in signed),
        "empty_docs": sum(s["empty_docs"] for s in signed),
        "cjk_docs": sum(s["cjk_docs"] for s in signed),
        "ngram": params.ngram,
        "num_perm": params.num_perm,
        "bands": params.bands,
        "rows": params.rows,
        "threshold": params.threshold,
        "verify": params.verify,
        "hash": params.hash,
        "rejected_by_filter": {k: v for k, v in counts.items() if v},
    }


def _excerpt(out_dir: Path, layout: Layout, doc: int, doc_id: str, chars: int = 160) -> str:
    name, _ = layout.locate(doc)
    if name.startswith("index~"):
        return "(a document of the incremental index)"
    t = pq.read_table(out_dir / "dedup" / name, columns=["id", "text"])
    for i, t_id in enumerate(t.column("id").to_pylist()):
        if t_id == doc_id:
            text = " ".join((t.column("text")[i].as_py() or "").split())
            return text[:chars] + ("..." if len(text) > chars else "")
    return ""


def _max_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _plan_line(p: dict) -> str:
    return (f"{p['docs']:,} docs, {p['text_bytes'] / 2**20:,.0f} MiB of text: about {p['ram_bytes_estimate'] / 2**20:,.0f} MiB RAM, "
            f"{p['disk_bytes_estimate'] / 2**20:,.0f} MiB disk, {p['seconds_estimate']:,.0f} s")
