"""Dedup phase 5, cluster (one unit): connected components over the edges, and what each
document of a cluster or removal becomes.

Components are computed over the edge list only: the exact and URL removals (rep, doc) and the
verified near-duplicate pairs. A document with no edge never enters, so this unit holds
O(edges + documents in edges), not O(corpus): in bytes about 16 x (removals + edges) to read
them, plus 48 x (distinct documents in edges) for the union-find and per-document arrays, plus
their ids as Arrow strings (the id's bytes + 4 each) for the assign files, read by row one shard at a time. In
each component the document earliest in shard order is kept and its id is the cluster id; the
others become near duplicates unless an exact round already removed them.

Writes `assign/<shard>.parquet` for every new shard: one row per removed or clustered document
(row in its shard, status, the kept document and the one a removal points at, with their ids,
similarity to the kept document, best edge similarity, in-cluster flag). The write units read
only their own shard's file. Returns the cluster figures of the stats.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.dedup.groups import ROUNDS, read_removals
from pipeline.dedup.params import DUP_ID, KEPT, NEAR, Layout, Params
from pipeline.dedup.verify import SigStore
from pipeline.units import save_parquet

ASSIGN_SCHEMA = pa.schema([
    ("row", pa.int64()), ("status", pa.int8()), ("kept_doc", pa.int64()), ("rep_doc", pa.int64()),
    ("kept_id", pa.string()), ("rep_id", pa.string()), ("similarity", pa.float32()), ("edge_sim", pa.float32()),
    ("in_cluster", pa.bool_()),
])
LARGEST = 5  # clusters shown with members on the card
MEMBERS_SHOWN = 10


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Root of each of n nodes given edges (a, b): union-find, vectorized; root = smallest index.

    Each round hooks the larger root of every edge onto the smaller one, then compresses all
    paths by pointer jumping; parent[i] <= i always, so the smallest index is never hooked.
    """
    parent = np.arange(n, dtype=np.int64)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    while len(a):
        ra, rb = parent[a], parent[b]
        lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
        m = lo != hi
        if not m.any():
            break
        a, b = lo[m], hi[m]
        np.minimum.at(parent, b, a)
        while True:  # point every element at its root
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
    return parent


def id_table(work: Path, layout: Layout, docs: np.ndarray) -> tuple[np.ndarray, pa.Array]:
    """Ids of the given documents: (sorted document numbers, their ids as one Arrow string array).
    A `docs/` file holds its shard's documents densely in order (doc = first + row), so each shard
    that holds a wanted document gives its ids by row: one shard's id column at a time, never the
    corpus's."""
    want = np.unique(np.asarray(docs, np.int64))
    shard, first = layout.shard_of(want), layout.first
    ids = [pa.array([], pa.string())]
    starts = np.searchsorted(shard, np.unique(shard))  # want is sorted, so each shard's documents are one run
    for lo, hi in zip(starts, [*starts[1:], len(want)]):
        s = int(shard[lo])
        column = pq.read_table(Path(work) / "docs" / layout.names[s], columns=["id"]).column("id")
        ids.append(column.take(pa.array(want[lo:hi] - first[s])).combine_chunks().cast(pa.string()))
    return want, pa.concat_arrays(ids)


def take_ids(table: tuple[np.ndarray, pa.Array], docs: np.ndarray) -> pa.Array:
    """The id of each of `docs` from an `id_table`, "?" for a document it does not hold."""
    known, ids = table
    if len(known) == 0:
        return pa.array(["?"] * len(docs), pa.string())
    at = np.minimum(np.searchsorted(known, docs), len(known) - 1)
    found = known[at] == docs
    got = ids.take(pa.array(at))
    return got if found.all() else pc.if_else(pa.array(found), got, "?")


def ids_of(work: Path, layout: Layout, docs: np.ndarray) -> dict[int, str]:
    """Ids of a few documents as a dict (the largest clusters shown on the card)."""
    known, ids = id_table(work, layout, docs)
    return dict(zip(known.tolist(), ids.to_pylist()))


def cluster(work: str, layout: Layout, new_names: list[str], params: Params, rounds: list[str], parts: int) -> dict:
    work = Path(work)
    n_old = layout.n_old
    # removals of the exact rounds, then edges: (rep, doc) of exact/URL removals and verified near pairs
    g_doc, g_rep, g_code = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int8)]
    for name, _, code in ROUNDS:
        if name in rounds:
            d, r = read_removals(work, name, parts)
            g_doc.append(d), g_rep.append(r), g_code.append(np.full(len(d), code, np.int8))
    g_doc, g_rep, g_code = np.concatenate(g_doc), np.concatenate(g_rep), np.concatenate(g_code)
    linked = g_code != DUP_ID
    near_a, near_b, near_sim = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    if (work / "edges").is_dir():
        for p in range(parts):
            t = pq.read_table(work / "edges" / f"{p:04d}.parquet")
            near_a.append(t.column("a").to_numpy()), near_b.append(t.column("b").to_numpy())
            near_sim.append(t.column("similarity").to_numpy())
    near_a, near_b, near_sim = np.concatenate(near_a), np.concatenate(near_b), np.concatenate(near_sim)
    ea = np.concatenate([g_rep[linked], near_a])
    eb = np.concatenate([g_doc[linked], near_b])
    nodes, inv = np.unique(np.concatenate([ea, eb]), return_inverse=True)
    root_ix = components(len(nodes), inv[: len(ea)], inv[len(ea):])
    root = nodes[root_ix]

    # per node: status, kept document, similarity to it, best edge similarity
    status = np.full(len(nodes), KEPT, np.int8)
    rep = nodes.copy()
    at = np.searchsorted(nodes, g_doc[linked])
    status[at], rep[at] = g_code[linked], g_rep[linked]
    member = (root != nodes) & (nodes >= n_old)
    status[member & (status == KEPT)] = NEAR
    similarity = np.ones(len(nodes), np.float32)
    if params.minhash and member.any():
        similarity[member] = SigStore(work, layout).jaccard(nodes[member], root[member])
    edge_sim = np.zeros(len(nodes), np.float32)
    if len(near_a):
        np.maximum.at(edge_sim, np.searchsorted(nodes, near_a), near_sim)
        np.maximum.at(edge_sim, np.searchsorted(nodes, near_b), near_sim)

    # rows to write: clustered documents of this run, and removals that are in no cluster (ids)
    lone = ~linked
    doc = np.concatenate([nodes, g_doc[lone]])
    keep_rows = doc >= n_old
    table = {
        "doc": doc, "status": np.concatenate([status, g_code[lone]]),
        "kept_doc": np.concatenate([root, g_rep[lone]]), "rep_doc": np.concatenate([rep, g_rep[lone]]),
        "similarity": np.concatenate([similarity, np.ones(lone.sum(), np.float32)]),
        "edge_sim": np.concatenate([edge_sim, np.zeros(lone.sum(), np.float32)]),
        "in_cluster": np.concatenate([np.ones(len(nodes), bool), np.zeros(lone.sum(), bool)]),
    }
    table = {k: v[keep_rows] for k, v in table.items()}
    order = np.argsort(table["doc"], kind="stable")
    table = {k: v[order] for k, v in table.items()}
    id_of = id_table(work, layout, np.concatenate([table["kept_doc"], table["rep_doc"]]))
    # table["doc"] is sorted, so each shard's rows are one slice
    bounds = np.searchsorted(layout.shard_of(table["doc"]), np.arange(len(layout.names) + 1))
    first, new_names = layout.first, set(new_names)
    for s, name in enumerate(layout.names):
        if name not in new_names:
            continue
        cols = {k: v[bounds[s]:bounds[s + 1]] for k, v in table.items()}
        save_parquet(pa.table({
            "row": cols["doc"] - first[s], "status": cols["status"], "kept_doc": cols["kept_doc"], "rep_doc": cols["rep_doc"],
            "kept_id": take_ids(id_of, cols["kept_doc"]), "rep_id": take_ids(id_of, cols["rep_doc"]),
            "similarity": cols["similarity"], "edge_sim": cols["edge_sim"], "in_cluster": cols["in_cluster"],
        }, schema=ASSIGN_SCHEMA), work / "assign" / name)
    return _cluster_figures(work, layout, nodes, root_ix, n_old)


def _cluster_figures(work: Path, layout: Layout, nodes, root_ix, n_old: int) -> dict:
    """Sizes of the clusters that hold a document of this run (indexed members counted too)."""
    sizes = np.bincount(root_ix, minlength=len(nodes))
    touched = np.zeros(len(nodes), bool)
    touched[root_ix[nodes >= n_old]] = True
    roots = np.flatnonzero(touched & (sizes > 1))
    values, counts = np.unique(sizes[roots], return_counts=True)  # exact sizes: one entry per distinct size
    order = roots[np.lexsort((nodes[roots], -sizes[roots]))][:LARGEST]
    largest = [{"root": int(nodes[r]), "size": int(sizes[r]),
                "members": nodes[root_ix == r][:MEMBERS_SHOWN].tolist()} for r in order]
    id_of = ids_of(work, layout, np.array([d for c in largest for d in [c["root"], *c["members"]]], np.int64))
    for c in largest:
        c["cluster_id"] = id_of.get(c["root"], "?")
        c["member_ids"] = [id_of.get(m, "?") for m in c["members"]]
    return {"clusters": int(len(roots)), "docs_in_clusters": int(sizes[roots].sum()),
            "cluster_sizes": {str(int(v)): int(c) for v, c in zip(values, counts)}, "largest": largest}


def read_assignment(work: Path, name: str, first_doc: int, n: int) -> dict:
    """Dense per-row arrays of one shard from its assign file (documents not in it: kept, alone)."""
    t = pq.read_table(Path(work) / "assign" / name)
    rows = t.column("row").to_numpy()
    docs = np.arange(first_doc, first_doc + n, dtype=np.int64)
    out = {"status": np.zeros(n, np.int8), "kept_doc": docs.copy(), "rep_doc": docs.copy(),
           "similarity": np.ones(n, np.float32), "edge_sim": np.zeros(n, np.float32), "in_cluster": np.zeros(n, bool)}
    for k in out:
        out[k][rows] = t.column(k).to_numpy()
    id_of = dict(zip(t.column("kept_doc").to_pylist(), t.column("kept_id").to_pylist()))
    id_of.update(zip(t.column("rep_doc").to_pylist(), t.column("rep_id").to_pylist()))
    out["id_of"] = id_of
    return out
