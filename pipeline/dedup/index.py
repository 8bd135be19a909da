"""Dedup phase 7, index: the persisted band index (`dedup_index/`) that incremental runs start from.

`load_index` links a previous run's index parts into the scratch folder, where the phases see them
as leading shards whose documents are never removed; `save_index` writes the old parts plus this
run's kept documents (their keys, signatures and band keys), renumbered densely.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dedup.params import Params
from pipeline.units import save_npy, save_parquet
from pipeline.io import replace_dir, write_json

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


def save_index(out_dir: Path, work: Path, old: IndexParts, names, first, counts, keep_of, params: Params):
    """`keep_of(name, first_doc, count)`: which rows of a new shard were kept."""
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
        keep = keep_of(name, int(f), c)
        new_doc = np.full(c, -1, np.int64)
        new_doc[keep] = next_doc + np.arange(int(keep.sum()))
        pname = f"g{gen:03d}-{name}"
        docs = pq.read_table(work / "docs" / name).filter(pa.array(keep))
        docs = docs.set_column(0, "doc", pa.array(new_doc[keep]))
        save_parquet(docs, tmp / "docs" / pname)
        if params.minhash:
            sig = np.load(work / "sig" / (name + ".npy"))[keep]
            save_npy(sig, tmp / "sig" / (pname + ".npy"))
            bands = pq.read_table(work / "bands" / name)
            d = bands.column("doc").to_numpy()
            m = keep[d - int(f)]
            nb = int(keep.sum() and (m.sum() // max(params.bands, 1)))
            bands = bands.filter(pa.array(m))
            bands = bands.set_column(bands.schema.get_field_index("doc"), "doc", pa.array(new_doc[d[m] - int(f)]))
            save_parquet(bands, tmp / "bands" / pname, row_group_size=max(nb, 1))
        parts.append({"name": pname, "docs": int(keep.sum()), "text": text_ref(out_dir / "dedup" / name)})
        next_doc += int(keep.sum())
    tmp.mkdir(parents=True, exist_ok=True)
    write_json({"version": INDEX_VERSION, "generation": gen, "params": _index_params(params), "docs": next_doc, "parts": parts},
               tmp / "index.json")
    replace_dir(tmp, final)
