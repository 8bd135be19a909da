"""Stable word and word n-gram hashes of a whole batch of texts at once (numpy over Arrow buffers).

The quality scorer and the decontamination index share one normalization: text lowercased
(Unicode), split on whitespace and on every run of punctuation and symbol characters (Unicode
categories P and S; so casing, whitespace and punctuation do not change the words). Each word's hash is a tabulation hash
(XOR of a fixed random 64-bit value per byte and position in the word); the table comes from
splitmix64 with a fixed seed, so the hashes are the same in every process, platform and numpy
version: a model file or an index built in one process is valid in every other.

No Python code runs per word or per document: the words come from one Arrow regex split of
the batch, the bytes are hashed with numpy, and n-grams are rolled over the batch's words with
the documents' boundaries masked.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SEPARATORS = r"[\p{P}\p{S}]+"  # RE2 (Arrow): punctuation and symbols separate words, as whitespace does
_POSITIONS = 64  # bytes past the 64th reuse the table's rows (position mod 64)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
CHUNK_BYTES = 8 << 20  # texts are hashed in chunks of about this many UTF-8 bytes (bounds memory)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 that spreads every input bit."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        return x ^ (x >> np.uint64(31))


def _table() -> np.ndarray:
    with np.errstate(over="ignore"):
        seeds = (np.arange(1, _POSITIONS * 256 + 1, dtype=np.uint64) * _GOLDEN)
    return mix64(seeds).reshape(_POSITIONS, 256)


_TABLE = _table()


@dataclass
class Words:
    """The words of a batch of texts: `hashes[i]` is word i's hash, `doc[i]` the row it belongs
    to, and `starts[r]:starts[r+1]` the words of row r (null and empty texts have none)."""

    hashes: np.ndarray  # uint64
    doc: np.ndarray  # int64
    starts: np.ndarray  # int64, n_rows + 1
    strings: pa.Array | None = None  # the words themselves (when asked for)

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.starts)


def _as_array(texts) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    elif not isinstance(texts, pa.Array):
        texts = pa.array(list(texts), pa.string())
    if pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.string())
    return texts


def words(texts, keep_strings: bool = False) -> Words:
    """The normalized words of every text in `texts` (Arrow array, chunked array or list)."""
    arr = _as_array(texts)
    n = len(arr)
    if n == 0:
        return Words(np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(1, np.int64),
                     pa.array([], pa.string()) if keep_strings else None)
    sizes = pc.fill_null(pc.binary_length(arr), 0).to_numpy()
    # chunks of rows holding about CHUNK_BYTES of text each
    bounds = [0]
    acc = 0
    for i, s in enumerate(sizes.tolist()):
        acc += s
        if acc >= CHUNK_BYTES:
            bounds.append(i + 1)
            acc = 0
    if bounds[-1] != n:
        bounds.append(n)
    hashes, docs, strings = [], [], []
    for a, b in zip(bounds[:-1], bounds[1:]):
        h, d, s = _words_of_chunk(arr.slice(a, b - a), keep_strings)
        hashes.append(h)
        docs.append(d + a)
        if keep_strings:
            strings.append(s)
    hashes = np.concatenate(hashes)
    doc = np.concatenate(docs)
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(doc, minlength=n), out=starts[1:])
    return Words(hashes, doc, starts, pa.concat_arrays(strings) if keep_strings else None)


def _words_of_chunk(arr: pa.Array, keep_strings: bool):
    # replacing punctuation, then splitting on whitespace, is about twice as fast as one regex split
    lists = pc.utf8_split_whitespace(pc.replace_substring_regex(pc.utf8_lower(arr), SEPARATORS, " "))
    flat = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
    nonempty = pc.greater(pc.binary_length(flat), 0)
    if not pc.all(nonempty).as_py():
        flat = flat.filter(nonempty)
        parent = parent[nonempty.to_numpy(zero_copy_only=False)]
    if len(flat) == 0:
        return np.zeros(0, np.uint64), parent, flat
    # each distinct word is hashed once: natural text repeats most of its words
    encoded = pc.dictionary_encode(flat)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    h = _hash_strings(encoded.dictionary)[encoded.indices.to_numpy(zero_copy_only=False)]
    return h, parent, flat if keep_strings else None


def _hash_strings(words: pa.Array) -> np.ndarray:
    """Tabulation hash of each (non-empty) string's UTF-8 bytes, mixed with its length."""
    if len(words) == 0:
        return np.zeros(0, np.uint64)
    offsets = np.frombuffer(words.buffers()[1], dtype=np.int32, count=len(words) + 1, offset=words.offset * 4)
    lo, hi = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(words.buffers()[2], dtype=np.uint8, count=hi - lo, offset=lo)
    starts = (offsets[:-1] - lo).astype(np.int64)
    lengths = np.diff(offsets).astype(np.int64)
    pos = np.arange(hi - lo, dtype=np.int64) - np.repeat(starts, lengths)  # position of each byte in its word
    vals = _TABLE[pos % _POSITIONS, data]
    h = np.bitwise_xor.reduceat(vals, starts)
    return mix64(h ^ lengths.astype(np.uint64))


# one odd multiplier per word position of an n-gram (splitmix64 of a fixed seed)
_NGRAM_MUL = mix64(np.arange(1, 65, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03)) | np.uint64(1)


def ngrams(w: Words, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash, index of its first word in `w`) of every word n-gram that lies inside one text.
    The hash is mix64 of sum(word hash[k] * M[k]) mod 2**64 over the n positions: 2 numpy ops
    per word and position, every n-gram of the batch at once."""
    if n == 1:
        return w.hashes, np.arange(len(w.hashes))
    m = len(w.hashes) - n + 1
    if m <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    first = np.flatnonzero(w.doc[:m] == w.doc[n - 1:])  # n-grams that do not cross a text's end
    with np.errstate(over="ignore"):
        g = w.hashes[:m] * _NGRAM_MUL[0]
        tmp = np.empty_like(g)
        for k in range(1, n):
            np.multiply(w.hashes[k:k + m], _NGRAM_MUL[k], out=tmp)
            g += tmp
    return mix64(g[first] + np.uint64(n)), first
