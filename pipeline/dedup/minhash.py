"""MinHash signatures for whole batches of documents, vectorized with numpy.

The signatures are datasketch's: the same permutations (`numpy.random.RandomState(seed)`, scheme
"affine32": h -> a * fmix32(h) + b mod 2^32) and the same minimum over shingles, so a row of
`Signer.signatures()` equals `datasketch.MinHash(num_perm, seed, hashfunc=...).hashvalues` fed with
the document's shingles (tests/test_dedup_minhash.py proves it for both hash functions).

What differs from a loop over `MinHash.update_batch()` is how the 32-bit shingle hashes are made:
instead of one SHA-1 per shingle string in Python ("sha1" mode, kept for exact compatibility with
datasketch's default), "words64" mode hashes every word of the batch at once from the Arrow string
buffers (a polynomial over the UTF-8 bytes) and combines n consecutive word hashes into a shingle
hash with a few numpy passes. `shingle_hash32` is that same function written for one shingle, so it
can be handed to datasketch as `hashfunc`.

Shingles: the text's whitespace-separated words, n at a time, joined by one space; a document of
fewer than n words is one shingle (all its words), an empty document has none. Text mostly in
Han/Kana script has no spaces between words, so its shingles are n consecutive characters
(whitespace dropped), written as the characters joined by spaces.
"""
from __future__ import annotations

import hashlib
import re
import struct
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

U64 = np.uint64
MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1
# Odd 64-bit multipliers (golden ratio, murmur/xxhash primes).
BYTE_MUL = 0x9E3779B97F4A7C15
TOKEN_MUL = 0xC2B2AE3D27D4EB4F
LEN_MUL = 0x165667B19E3779F9
# Bytes further than this from a word's end share one weight; keeps the power table small for
# pathological "words" (base64 blobs, minified code) of megabytes.
POS_CAP = 1 << 12
# Shingles permuted per block: 256K uint32 = 1 MB, stays in cache across the permutations.
BLOCK_SHINGLES = 1 << 18

CJK_PATTERN = r"[\p{Han}\p{Hiragana}\p{Katakana}]"
_WS = re.compile(r"\s+")


# ----------------------------------------------------------------------------- hash primitives

def _fmix64_int(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & MASK64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & MASK64
    return x ^ (x >> 33)


def fmix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> U64(33))
    x = x * U64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> U64(33))
    x = x * U64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> U64(33))


def fmix32(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch's affine32 scheme applies it to each input hash."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> np.uint32(13))
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> np.uint32(16))


@lru_cache(maxsize=1)
def _byte_powers() -> np.ndarray:
    p = np.empty(POS_CAP, dtype=U64)
    v = 1
    for i in range(POS_CAP):
        p[i] = v
        v = (v * BYTE_MUL) & MASK64
    return p


def word_hash64(word: bytes) -> int:
    """Hash of one word's UTF-8 bytes: sum of byte * BYTE_MUL^(distance from the end), plus the length, mixed."""
    pows = _byte_powers()
    n = len(word)
    h = 0
    for k, byte in enumerate(word):
        h += byte * int(pows[min(n - 1 - k, POS_CAP - 1)])
    return _fmix64_int((h + n * LEN_MUL) & MASK64)


def shingle_hash64(shingle: bytes) -> int:
    """64-bit hash of a shingle given as its tokens joined by single spaces."""
    tokens = shingle.split(b" ")
    g = 0
    for t in tokens:
        g = (g * TOKEN_MUL + word_hash64(t)) & MASK64
    return _fmix64_int((g + len(tokens) * LEN_MUL) & MASK64)


def shingle_hash32(shingle: bytes) -> int:
    """The 32-bit shingle hash of "words64" mode; pass it to datasketch.MinHash as `hashfunc`."""
    return shingle_hash64(shingle) & MASK32


def sha1_hash32(data: bytes) -> int:
    """datasketch's default hash function (first 4 bytes of SHA-1, little-endian)."""
    return struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0]


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a odd, b), drawn exactly as MinHash draws them."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


# ----------------------------------------------------------------------------- tokens

def cjk_mask(texts: pa.Array, min_ratio: float) -> np.ndarray:
    """True for documents whose share of Han/Kana characters is at least `min_ratio`."""
    if len(texts) == 0:
        return np.zeros(0, dtype=bool)
    n_cjk = pc.count_substring_regex(texts, CJK_PATTERN).to_numpy(zero_copy_only=False)
    n_all = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
    return (n_cjk > 0) & (n_cjk >= min_ratio * np.maximum(n_all, 1))


def spaced_chars(text: str) -> str:
    """CJK text as space-separated characters, so character n-grams go through the word machinery."""
    return " ".join(_WS.sub("", text))


def token_text(texts: pa.Array, cjk: str = "chars", cjk_min_ratio: float = 0.3) -> tuple[pa.Array, np.ndarray]:
    """Texts whose whitespace-separated tokens are the shingle units, and the CJK mask."""
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    texts = pc.fill_null(texts, "")
    if cjk != "chars":
        return texts, np.zeros(len(texts), dtype=bool)
    mask = cjk_mask(texts, cjk_min_ratio)
    if not mask.any():
        return texts, mask
    # Only the CJK rows go through Python; the rest stay in Arrow.
    idx = np.flatnonzero(mask)
    spaced = pa.array([spaced_chars(t) for t in texts.take(pa.array(idx)).to_pylist()], type=pa.large_string())
    texts = texts.cast(pa.large_string())
    return pc.replace_with_mask(texts, pa.array(mask), spaced), mask


def shingle_strings(text: str, ngram: int) -> list[bytes]:
    """The shingles of one (already CJK-spaced) text as datasketch would be fed them (set, UTF-8)."""
    words = text.split()
    if not words:
        return []
    if len(words) < ngram:
        return [" ".join(words).encode("utf-8")]
    return list({" ".join(words[i : i + ngram]).encode("utf-8") for i in range(len(words) - ngram + 1)})


# ----------------------------------------------------------------------------- vectorized hashing

def _string_buffers(words: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets relative to the data start, UTF-8 data) of a (large_)string array, zero-copy."""
    if len(words) == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    off_type = np.int64 if pa.types.is_large_string(words.type) else np.int32
    bufs = words.buffers()
    offsets = np.frombuffer(bufs[1], dtype=off_type)[words.offset : words.offset + len(words) + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, dtype=np.uint8)
    data = data[offsets[0] : offsets[-1]]
    return offsets - offsets[0], data


def word_hashes(words: pa.Array, chunk_bytes: int = 1 << 18) -> np.ndarray:
    """word_hash64 of every word of a string array, vectorized (chunks bound the temporaries)."""
    offsets, data = _string_buffers(words)
    n = len(offsets) - 1
    out = np.empty(n, dtype=U64)
    pows = _byte_powers()
    w0 = 0
    while w0 < n:
        # Take words until the chunk holds chunk_bytes (at least one word).
        w1 = int(np.searchsorted(offsets, offsets[w0] + chunk_bytes, side="right")) - 1
        w1 = min(max(w1, w0 + 1), n)
        starts, ends = offsets[w0:w1], offsets[w0 + 1 : w1 + 1]
        lengths = ends - starts
        b0, b1 = int(starts[0]), int(ends[-1])
        end_of_byte = np.repeat(ends, lengths)
        dist = end_of_byte - 1 - np.arange(b0, b1, dtype=np.int64)
        np.minimum(dist, POS_CAP - 1, out=dist)
        contrib = data[b0:b1].astype(U64) * pows[dist]
        sums = np.add.reduceat(contrib, starts - b0) if len(contrib) else np.zeros(len(starts), dtype=U64)
        out[w0:w1] = fmix64(sums + lengths.astype(U64) * U64(LEN_MUL))
        w0 = w1
    return out


def shingle_hashes(tokens: pa.Array, ngram: int, with_words: bool = False):
    """(64-bit shingle hashes, document index of each shingle) for a batch of token texts.

    Shingles of one document are contiguous and in text order (duplicates not removed: a minimum
    does not care, and `unique_shingle_sets` sorts them when a set is needed).
    """
    # Trim first and turn empty texts into nulls: Arrow splits "" into [""] and " a" into ["", "a"],
    # Python's str.split() into [] and ["a"].
    trimmed = pc.utf8_trim_whitespace(tokens)
    trimmed = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, trimmed.type), trimmed)
    lists = pc.utf8_split_whitespace(trimmed)
    counts = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    words = pc.list_flatten(lists)
    # Hash each distinct word once: natural text repeats most of its words.
    encoded = pc.dictionary_encode(words)
    wh = word_hashes(encoded.dictionary)[encoded.indices.to_numpy(zero_copy_only=False)] if len(words) else np.zeros(0, U64)
    tok_start = np.concatenate(([0], np.cumsum(counts)[:-1])) if len(counts) else counts
    n_sh = np.where(counts >= ngram, counts - ngram + 1, np.minimum(counts, 1))
    total = int(n_sh.sum())
    doc_of = np.repeat(np.arange(len(counts), dtype=np.int64), n_sh)
    first_sh = np.concatenate(([0], np.cumsum(n_sh)[:-1])) if len(n_sh) else n_sh
    start = tok_start[doc_of] + (np.arange(total, dtype=np.int64) - first_sh[doc_of])
    g = np.empty(total, dtype=U64)
    # Every n-gram of the flat word array from contiguous slices (no gathers); those crossing a
    # document boundary are computed too and simply never picked.
    n_all = len(wh) - ngram + 1
    full = (counts >= ngram)[doc_of]
    if n_all > 0 and full.any():
        acc = wh[:n_all].copy()
        for j in range(1, ngram):
            acc *= U64(TOKEN_MUL)
            acc += wh[j : j + n_all]
        g[full] = acc[start[full]] + U64(ngram * LEN_MUL)
    short = ~full
    if short.any():  # documents of fewer than `ngram` words: one shingle of all their words
        s_start, k = start[short], np.minimum(counts, ngram)[doc_of[short]]
        acc = np.zeros(len(s_start), dtype=U64)
        for j in range(ngram):
            take = j < k
            acc[take] = acc[take] * U64(TOKEN_MUL) + wh[s_start[take] + j]
        g[short] = acc + k.astype(U64) * U64(LEN_MUL)
    if with_words:
        return fmix64(g), doc_of, wh, counts
    return fmix64(g), doc_of


def sequence_keys(wh: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """128-bit key of each document's word sequence (xxh3_128 of its word hashes): equal word
    sequences, whatever the whitespace between the words, give equal keys."""
    import xxhash

    hi = np.empty(len(counts), dtype=U64)
    lo = np.empty(len(counts), dtype=U64)
    ends = np.cumsum(counts)
    start = 0
    for i, end in enumerate(ends.tolist()):
        d = xxhash.xxh3_128_intdigest(wh[start:end].tobytes())
        hi[i], lo[i] = d >> 64, d & MASK64
        start = end
    return hi, lo


def sha1_shingle_hashes(tokens: pa.Array, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's default: SHA-1 of each distinct shingle string (per-shingle Python; slow)."""
    hashes, docs = [], []
    for i, text in enumerate(tokens.to_pylist()):
        sh = shingle_strings(text or "", ngram)
        hashes.extend(sha1_hash32(s) for s in sh)
        docs.extend([i] * len(sh))
    return np.array(hashes, dtype=U64), np.array(docs, dtype=np.int64)


def unique_shingle_sets(g: np.ndarray, doc_of: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct shingle hashes per document, 32 bits each: (values uint32, offsets [n_docs + 1]).

    One sort of (document << 32 | top 32 bits of the hash) instead of a two-key lexsort. Two sets of
    n and m shingles share a spurious 32-bit value with probability ~n*m / 2^32 (2e-4 for 1,000 each),
    so the Jaccard computed on these sets is exact for all practical purposes, at half the memory.
    """
    key = (doc_of.astype(U64) << U64(32)) | (g >> U64(32))
    key.sort()
    keep = np.ones(len(key), dtype=bool)
    keep[1:] = key[1:] != key[:-1]
    key = key[keep]
    docs = (key >> U64(32)).astype(np.int64)
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(np.bincount(docs, minlength=n_docs), out=offsets[1:])
    return (key & U64(MASK32)).astype(np.uint32), offsets


# ----------------------------------------------------------------------------- signatures

class Signer:
    """Computes datasketch-compatible MinHash signatures for batches of texts."""

    def __init__(self, num_perm: int = 128, seed: int = 1, ngram: int = 5, hash: str = "words64",
                 cjk: str = "chars", cjk_min_ratio: float = 0.3):
        self.num_perm, self.seed, self.ngram, self.hash = num_perm, seed, ngram, hash
        self.cjk, self.cjk_min_ratio = cjk, cjk_min_ratio
        self.a, self.b = permutations(num_perm, seed)

    def tokens(self, texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
        return token_text(texts, self.cjk, self.cjk_min_ratio)

    def signatures(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(signatures uint32 [n, num_perm], shingles per document, CJK mask) for a batch of texts.

        A document without shingles (empty text) keeps the all-0xFFFFFFFF signature, like an empty
        datasketch.MinHash.
        """
        sig, n_sh, cjk, _, _ = self.process(texts)
        return sig, n_sh, cjk

    def process(self, texts: pa.Array, signatures: bool = True):
        """Signatures, shingle counts, CJK mask and the 128-bit word-sequence key (hi, lo) of a batch."""
        tokens, cjk = self.tokens(texts)
        g, doc_of, wh, counts = shingle_hashes(tokens, self.ngram, with_words=True)
        hi, lo = sequence_keys(wh, counts)
        n = len(tokens)
        n_sh = np.bincount(doc_of, minlength=n)
        if not signatures:
            return None, n_sh, cjk, hi, lo
        if self.hash == "sha1":
            h32, doc_of = sha1_shingle_hashes(tokens, self.ngram)
            h32 = h32.astype(np.uint32)
        else:
            h32 = (g & U64(MASK32)).astype(np.uint32)
        return self.minimum(h32, doc_of, n), n_sh, cjk, hi, lo

    def minimum(self, h32: np.ndarray, doc_of: np.ndarray, n_docs: int) -> np.ndarray:
        """Per-document minimum of a * fmix32(h) + b over its shingle hashes.

        One permutation at a time over a cache-sized block of shingles: 1-D contiguous multiply,
        add and segmented minimum are ~10x faster in numpy than the broadcast (shingles x perms) block.
        """
        sig = np.full((n_docs, self.num_perm), MASK32, dtype=np.uint32)
        if len(h32) == 0:
            return sig
        hv = fmix32(h32.astype(np.uint32))
        buf = np.empty(min(BLOCK_SHINGLES, len(hv)), dtype=np.uint32)
        for s0 in range(0, len(hv), BLOCK_SHINGLES):
            s1 = min(s0 + BLOCK_SHINGLES, len(hv))
            h, d, b = hv[s0:s1], doc_of[s0:s1], buf[: s1 - s0]
            seg = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
            docs = d[seg]
            mins = np.empty((len(seg), self.num_perm), dtype=np.uint32)
            for p in range(self.num_perm):
                np.multiply(h, self.a[p], out=b)
                np.add(b, self.b[p], out=b)
                mins[:, p] = np.minimum.reduceat(b, seg)
            # A document cut by the block edge gets the minimum of both parts.
            sig[docs] = np.minimum(sig[docs], mins)
        return sig


# ----------------------------------------------------------------------------- LSH helpers

def _integral(f, lo: float, hi: float, n: int = 2001) -> float:
    """Simpson's rule; the integrands are smooth polynomials in s, so 2,000 intervals are plenty."""
    if hi <= lo:
        return 0.0
    x = np.linspace(lo, hi, n)
    y = f(x)
    h = (hi - lo) / (n - 1)
    return float(h / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum()))


@lru_cache(maxsize=64)
def optimal_bands_rows(threshold: float, num_perm: int, false_positive_weight: float) -> tuple[int, int]:
    """datasketch's optimisation (`datasketch.lsh._optimal_param`), without importing scipy.

    Minimises fp_weight * P(candidate | J < threshold) + fn_weight * P(not candidate | J >= threshold),
    each integrated over J, over all bands x rows <= num_perm.
    """
    fn_weight = 1.0 - false_positive_weight
    best, opt = float("inf"), (0, 0)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = _integral(lambda s: 1 - (1 - s**r) ** b, 0.0, threshold)
            fn = _integral(lambda s: (1 - s**r) ** b, threshold, 1.0)
            err = fp * false_positive_weight + fn * fn_weight
            if err < best:
                best, opt = err, (b, r)
    return opt


def detection_probability(similarity, bands: int, rows: int):
    """Probability that LSH with bands x rows makes a pair of this Jaccard a candidate."""
    s = np.asarray(similarity, dtype=float)
    return 1.0 - (1.0 - s**rows) ** bands


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """64-bit key of each (document, band): uint64 [n, bands]. Equal bands give equal keys."""
    n = sig.shape[0]
    keys = np.empty((n, bands), dtype=U64)
    for i in range(bands):
        g = np.zeros(n, dtype=U64)
        for j in range(rows):
            g = g * U64(TOKEN_MUL) + sig[:, i * rows + j].astype(U64)
        keys[:, i] = fmix64(g + U64(((i + 1) * LEN_MUL) & MASK64))
    return keys
