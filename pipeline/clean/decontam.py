"""Decontamination (`clean.decontaminate`): documents that share a long word n-gram with an
evaluation set are removed (or flagged).

The evaluation texts are read once per process and every word n-gram of them (13 words by
default, after the normalization of `pipeline.clean.hashing`: lowercase, punctuation and
whitespace ignored) goes into one sorted uint64 array. A batch of documents is hashed the same
way and its n-grams are looked up with one `searchsorted`: the cost per document does not grow
with the number of evaluation sets or examples.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.clean import hashing
from pipeline.clean.textfiles import expand, read_file


class DecontaminationError(ValueError):
    """An evaluation set that cannot be used (missing, unreadable, empty); names it."""


@dataclass
class EvalSet:
    name: str
    files: list[str]
    items: int = 0  # texts read
    short_items: int = 0  # texts with fewer words than the n-gram (they cannot match)
    ngrams: int = 0  # distinct n-grams indexed


@dataclass
class Hit:
    set_name: str
    matches: int  # the document's n-grams found in the index
    ngram_text: str  # the first one, as normalized words


@dataclass
class Index:
    n: int
    hashes: np.ndarray  # sorted unique uint64
    set_of: np.ndarray  # int32: the evaluation set of each hash (the first set that has it)
    sets: list[EvalSet] = field(default_factory=list)
    _bits: int = 0
    _seen: np.ndarray | None = None  # bitmap of the top bits of the indexed hashes: one gather rules most n-grams out

    def __post_init__(self):
        if len(self.hashes):
            self._bits = int(min(30, max(16, np.ceil(np.log2(len(self.hashes) * 64)))))
            self._seen = np.zeros(1 << self._bits, bool)
            self._seen[self.hashes >> np.uint64(64 - self._bits)] = True

    def lookup(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mask of the n-grams found, their positions in `hashes`)."""
        maybe = np.flatnonzero(self._seen[g >> np.uint64(64 - self._bits)])
        pos = np.searchsorted(self.hashes, g[maybe])
        pos[pos == len(self.hashes)] = 0
        hit = self.hashes[pos] == g[maybe]
        found = np.zeros(len(g), bool)
        found[maybe[hit]] = True
        return found, pos[hit]

    def check(self, texts, min_matches: int = 1) -> list[Hit | None]:
        """One answer per text: the evaluation set it shares the most n-grams with, or None."""
        w = hashing.words(texts)
        out: list[Hit | None] = [None] * len(w.starts[:-1])
        if not len(self.hashes) or not len(w.hashes):
            return out
        g, first = hashing.ngrams(w, self.n)
        found, pos = self.lookup(g)
        if not found.any():
            return out
        at = first[found]
        sets = self.set_of[pos]
        docs = w.doc[at]
        texts_arr = hashing._as_array(texts)
        for d in np.unique(docs):
            mine = docs == d
            counts = np.bincount(sets[mine], minlength=len(self.sets))
            if counts.sum() < min_matches:
                continue
            best = int(counts.argmax())
            k = int(at[mine][sets[mine] == best][0]) - int(w.starts[d])
            words = hashing.words([texts_arr[int(d)].as_py()], keep_strings=True).strings
            ngram = " ".join(words.slice(k, self.n).to_pylist())
            out[int(d)] = Hit(self.sets[best].name, int(counts.sum()), ngram)
        return out


def set_name(entry_name: str | None, path: str) -> str:
    if entry_name:
        return entry_name
    p = Path(path)
    name = p.name
    for suffix in (".gz",) + tuple(s for s in (".jsonl", ".json", ".txt", ".parquet", ".csv", ".tsv", ".yaml", ".yml",
                                               ".md", ".ndjson", ".arrow")):
        name = name.removesuffix(suffix)
    return name or p.as_posix()


def build_index(entries: list[tuple[str, str, list[str] | None]], n: int) -> Index:
    """entries: (set name, path/glob/folder, fields) -> the n-gram index of all of them.
    Every problem (a missing file, an unreadable one, a set without a single n-gram) is raised here."""
    parts, set_ids, sets = [], [], []
    for k, (name, path, fields) in enumerate(entries):
        try:
            files = expand(path, f"clean.decontaminate set {name!r}")
        except FileNotFoundError as e:
            raise DecontaminationError(str(e)) from None
        texts: list[str] = []
        for f in files:
            try:
                texts += read_file(f, fields)
            except (ValueError, OSError) as e:
                raise DecontaminationError(f"clean.decontaminate set {name!r}: {e}") from None
        es = EvalSet(name, [str(f) for f in files], items=len(texts))
        w = hashing.words(texts)
        es.short_items = int((w.counts < n).sum())
        g, _ = hashing.ngrams(w, n)
        g = np.unique(g)
        es.ngrams = len(g)
        if not len(g):
            raise DecontaminationError(
                f"clean.decontaminate set {name!r} ({path}): {len(texts)} texts, none of {n} words or more: "
                f"no {n}-gram to look for (lower `ngram`, or check `fields`)")
        parts.append(g)
        set_ids.append(np.full(len(g), k, np.int32))
        sets.append(es)
    if not parts:
        return Index(n, np.zeros(0, np.uint64), np.zeros(0, np.int32), [])
    allh = np.concatenate(parts)
    alls = np.concatenate(set_ids)
    order = np.argsort(allh, kind="stable")  # equal hashes keep the earlier set first
    allh, alls = allh[order], alls[order]
    first = np.ones(len(allh), bool)
    first[1:] = allh[1:] != allh[:-1]
    return Index(n, allh[first], alls[first], sets)


def files_sha256(entries: list[tuple[str, str, list[str] | None]]) -> str:
    """One hash of every evaluation file's bytes (joins the clean stage's cache key)."""
    h = hashlib.sha256()
    for name, path, fields in entries:
        h.update(f"{name}\0{fields}\0".encode())
        try:
            files = expand(path, f"clean.decontaminate set {name!r}")
        except FileNotFoundError as e:
            raise DecontaminationError(str(e)) from None
        for f in files:
            h.update(str(f.name).encode())
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()




def split_overlap(shards: list, is_val, n: int = 13, batch_rows: int = 2000) -> dict:
    """The validation split checked against the training split the same way as an evaluation
    set: the word n-grams of the validation documents (`is_val(ids) -> bool mask`) are indexed,
    and every training document is looked up. -> {ngram, val_docs, val_docs_shared, train_docs,
    train_docs_sharing, examples: [{val, train, ngram}]}: validation documents some n-gram of
    which also occurs in a training document (what makes validation loss optimistic)."""
    import pyarrow.parquet as pq

    val_ids, val_texts = [], []
    for path in shards:
        for rb in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=["id", "text"]):
            ids = rb.column("id").to_pylist()
            mask = np.asarray(is_val(ids), bool)
            if mask.any():
                val_ids += [i for i, m in zip(ids, mask) if m]
                val_texts += rb.column("text").filter(pa.array(mask)).to_pylist()
    out = {"ngram": n, "val_docs": len(val_ids), "val_docs_shared": 0, "train_docs": 0, "train_docs_sharing": 0,
           "examples": []}
    if not val_ids:
        return out
    w = hashing.words(val_texts)
    g, first = hashing.ngrams(w, n)
    owner = w.doc[first]
    order = np.argsort(g, kind="stable")
    g, owner = g[order], owner[order]
    shared_val = np.zeros(len(val_ids), bool)
    for path in shards:
        for rb in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=["id", "text"]):
            ids = rb.column("id").to_pylist()
            train = ~np.asarray(is_val(ids), bool)
            if not train.any():
                continue
            texts = rb.column("text").filter(pa.array(train))
            out["train_docs"] += len(texts)
            tw = hashing.words(texts)
            tg, tfirst = hashing.ngrams(tw, n)
            if not len(tg) or not len(g):
                continue
            pos = np.searchsorted(g, tg)
            pos[pos == len(g)] = 0
            found = g[pos] == tg
            if not found.any():
                continue
            docs = np.unique(tw.doc[tfirst[found]])
            out["train_docs_sharing"] += len(docs)
            # every validation document owning a matched n-gram (all its owners, not only the first)
            matched = np.unique(tg[found])
            lo = np.searchsorted(g, matched, "left")
            hi = np.searchsorted(g, matched, "right")
            newly = []
            for a, b in zip(lo.tolist(), hi.tolist()):
                for v in owner[a:b].tolist():
                    if not shared_val[v]:
                        shared_val[v] = True
                        newly.append(v)
            train_ids = [i for i, t in zip(ids, train) if t]
            if len(out["examples"]) < 3 and newly:
                d = int(docs[0])
                out["examples"].append({"val": val_ids[newly[0]], "train": train_ids[d]})
    out["val_docs_shared"] = int(shared_val.sum())
    return out
