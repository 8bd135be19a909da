"""A learned quality score: hashed word uni+bigram logistic regression (numpy only).

Why this model: at corpus scale the scorer must cost less than the heuristic chain it joins.
A linear model over hashed word n-grams (the same family as GPT-3's quality filter and
DCLM's fastText classifier, without fastText's embedding layer) scores a whole batch with one
Arrow regex split, numpy hashing and one `bincount`: no Python code per document or word, no
new dependency, a model file of one array. A small encoder would be more accurate on subtle
cases but costs one to two orders of magnitude more CPU per document.

Features: the normalized words of `pipeline.clean.hashing` (lowercase, punctuation and
whitespace ignored) and their bigrams, hashed into 2**bits buckets; a document's vector holds
each n-gram's count divided by sqrt(number of n-grams) (about unit length). Training:
class-balanced logistic loss with L2, full-batch Adam. The model file is an `.npz` holding
`weights` (float32), `bias` and `meta` (JSON: format version, settings, what it was trained
on and its held-out figures).

    model = train(pos_texts, neg_texts)                 -> (QualityModel, report dict)
    model.save("m.npz"); m = QualityModel.load("m.npz") -> QualityModelError if unusable
    m.score(texts)                                      -> float32 array in [0, 1] (1 = like the positives)
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.clean import hashing

FORMAT = "opencorpus-quality/1"
_PAIR = np.uint64(0xD6E8FEB86659FD93)


class QualityModelError(ValueError):
    """A model file that cannot be used; the message names the file and what is wrong."""


@dataclass
class Features:
    doc: np.ndarray  # int64: the row of each feature occurrence
    bucket: np.ndarray  # int64
    value: np.ndarray  # float32, 1/sqrt(features of its row)
    n_rows: int


def featurize(texts, bits: int, ngrams: tuple[int, ...] = (1, 2)) -> Features:
    w = hashing.words(texts)
    n_rows = len(w.starts) - 1
    hs, docs = [], []
    for n in ngrams:
        if n == 1:
            hs.append(w.hashes)
            docs.append(w.doc)
        else:
            g, first = hashing.ngrams(w, n)
            with np.errstate(over="ignore"):
                hs.append(hashing.mix64(g ^ _PAIR * np.uint64(n)))
            docs.append(w.doc[first])
    h = np.concatenate(hs) if hs else np.zeros(0, np.uint64)
    doc = np.concatenate(docs) if docs else np.zeros(0, np.int64)
    bucket = (h >> np.uint64(64 - bits)).astype(np.int64)
    per_row = np.bincount(doc, minlength=n_rows).astype(np.float32)
    norm = np.zeros(n_rows, np.float32)
    nz = per_row > 0
    norm[nz] = 1.0 / np.sqrt(per_row[nz])
    return Features(doc, bucket, norm[doc], n_rows)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


@dataclass
class QualityModel:
    weights: np.ndarray  # float32, 2**bits
    bias: float
    meta: dict = field(default_factory=dict)
    path: str | None = None
    sha256: str | None = None

    @property
    def bits(self) -> int:
        return int(self.meta["bits"])

    @property
    def ngrams(self) -> tuple[int, ...]:
        return tuple(self.meta.get("ngrams", (1, 2)))

    def logits(self, texts) -> np.ndarray:
        f = featurize(texts, self.bits, self.ngrams)
        return self.bias + np.bincount(f.doc, weights=self.weights[f.bucket] * f.value, minlength=f.n_rows)

    def score(self, texts) -> np.ndarray:
        """P(positive) per text, float32 in [0, 1]; a text without a word scores sigmoid(bias)."""
        return _sigmoid(self.logits(texts)).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        from pipeline.io import atomic_path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez_compressed(buf, weights=self.weights.astype(np.float32), bias=np.array([self.bias], np.float64),
                            meta=np.frombuffer(json.dumps(self.meta, sort_keys=True).encode(), np.uint8))
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "QualityModel":
        path = Path(path)
        if not path.is_file():
            raise QualityModelError(f"{path}: quality model file not found (train one: opencorpus quality train)")
        raw = path.read_bytes()
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                weights = z["weights"].astype(np.float32)
                bias = float(z["bias"][0])
        except Exception as e:  # noqa: BLE001 - numpy/zip/json raise many types for a damaged file
            raise QualityModelError(f"{path}: not an opencorpus quality model (.npz with weights, bias, meta): "
                                    f"{type(e).__name__}: {e}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise QualityModelError(f"{path}: model format {meta.get('format') if isinstance(meta, dict) else None!r} "
                                    f"is not {FORMAT!r}; retrain it with this opencorpus (opencorpus quality train)")
        bits = meta.get("bits")
        if not isinstance(bits, int) or weights.shape != (2 ** bits,) or not np.isfinite(weights).all():
            raise QualityModelError(f"{path}: weights of shape {weights.shape} do not match bits={bits!r} "
                                    "(or are not finite): the file is damaged")
        return cls(weights, bias, meta, str(path), hashlib.sha256(raw).hexdigest())


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), np.float64)
    # average ranks of ties
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    labels = np.asarray(labels, bool)
    pred = scores >= threshold
    return {
        "examples": int(len(labels)), "positives": int(labels.sum()), "negatives": int((~labels).sum()),
        "accuracy": round(float((pred == labels).mean()), 4) if len(labels) else None,
        "roc_auc": round(roc_auc(scores, labels), 4),
        "threshold": threshold,
        "kept_positive": round(float(pred[labels].mean()), 4) if labels.any() else None,
        "kept_negative": round(float(pred[~labels].mean()), 4) if (~labels).any() else None,
    }


def train(pos: list[str], neg: list[str], *, bits: int = 18, ngrams: tuple[int, ...] = (1, 2),
          steps: int = 300, lr: float = 0.05, l2: float = 1e-5, holdout: float = 0.2, seed: int = 0,
          test_pos: list[str] | None = None, test_neg: list[str] | None = None,
          threshold: float = 0.5, meta: dict | None = None) -> tuple[QualityModel, dict]:
    """Train on positives and negatives; report held-out figures: on `test_pos`/`test_neg` when
    given, else on a seeded, stratified `holdout` share of the examples (not trained on)."""
    if not pos or not neg:
        raise ValueError(f"training needs positive and negative examples (got {len(pos)} positive, {len(neg)} negative)")
    t0 = time.perf_counter()
    texts = list(pos) + list(neg)
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]).astype(np.float64)
    rng = np.random.default_rng(seed)
    if test_pos is not None or test_neg is not None:
        tr_idx = np.arange(len(texts))
        te_texts = list(test_pos or []) + list(test_neg or [])
        te_y = np.concatenate([np.ones(len(test_pos or [])), np.zeros(len(test_neg or []))]).astype(bool)
        held = "given held-out files"
    elif holdout > 0:
        te = []
        for cls in (1.0, 0.0):
            idx = np.flatnonzero(y == cls)
            rng.shuffle(idx)
            te.append(idx[: max(1, int(round(len(idx) * holdout)))])
        te_idx = np.sort(np.concatenate(te))
        mask = np.ones(len(texts), bool)
        mask[te_idx] = False
        tr_idx = np.flatnonzero(mask)
        te_texts = [texts[i] for i in te_idx]
        te_y = y[te_idx].astype(bool)
        held = f"{holdout:.0%} of each class, seed {seed}, not trained on"
    else:
        tr_idx, te_texts, te_y, held = np.arange(len(texts)), [], np.zeros(0, bool), "none"
    f = featurize([texts[i] for i in tr_idx], bits, ngrams)
    ytr = y[tr_idx]
    n = len(ytr)
    # class-balanced weights: each class counts as half of the loss
    cw = np.where(ytr > 0, 0.5 / max(ytr.sum(), 1), 0.5 / max((1 - ytr).sum(), 1))
    w = np.zeros(2 ** bits, np.float64)
    b = 0.0
    m_w, v_w = np.zeros_like(w), np.zeros_like(w)
    m_b = v_b = 0.0
    b1, b2, eps = 0.9, 0.999, 1e-8
    touched = np.unique(f.bucket)
    for t in range(1, steps + 1):
        z = b + np.bincount(f.doc, weights=w[f.bucket] * f.value, minlength=n)
        r = (_sigmoid(z) - ytr) * cw
        g_w = np.bincount(f.bucket, weights=r[f.doc] * f.value, minlength=len(w))
        g_w[touched] += l2 * w[touched]
        g_b = float(r.sum())
        m_w[touched] = b1 * m_w[touched] + (1 - b1) * g_w[touched]
        v_w[touched] = b2 * v_w[touched] + (1 - b2) * g_w[touched] ** 2
        m_b = b1 * m_b + (1 - b1) * g_b
        v_b = b2 * v_b + (1 - b2) * g_b ** 2
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        w[touched] -= lr * (m_w[touched] / c1) / (np.sqrt(v_w[touched] / c2) + eps)
        b -= lr * (m_b / c1) / (np.sqrt(v_b / c2) + eps)
    model = QualityModel(w.astype(np.float32), b, {
        "format": FORMAT, "bits": bits, "ngrams": list(ngrams), "features": "hashed word n-grams, count/sqrt(n)",
        "words": "pipeline.clean.hashing (lowercase; split on non-letters/digits)",
        "training": {"positives": int(ytr.sum()), "negatives": int(n - ytr.sum()), "steps": steps, "lr": lr,
                     "l2": l2, "seed": seed, "held_out": held},
        **(meta or {}),
    })
    report = {"train": evaluate(model.score([texts[i] for i in tr_idx]), ytr.astype(bool), threshold)}
    if len(te_texts):
        report["held_out"] = evaluate(model.score(te_texts), te_y, threshold)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    model.meta["report"] = report
    return model, report


def hold_out(texts: list[str], share: float, seed: int) -> tuple[list[str], list[str]]:
    """(kept for training, held out): a seeded `share` of the texts, whole."""
    idx = np.random.default_rng(seed).permutation(len(texts))
    k = max(1, int(round(len(texts) * share))) if texts else 0
    test = set(idx[:k].tolist())
    return [t for i, t in enumerate(texts) if i not in test], [t for i, t in enumerate(texts) if i in test]


def chunk_words(texts: list[str], words: int) -> list[str]:
    """Texts cut into pieces of at most `words` whitespace-separated words (the last piece of a
    text is kept if it has at least a quarter of that)."""
    out = []
    for t in texts:
        ws = t.split()
        if len(ws) <= words:
            out.append(t)
            continue
        for i in range(0, len(ws), words):
            piece = ws[i:i + words]
            if len(piece) >= words // 4 or i == 0:
                out.append(" ".join(piece))
    return out


def read_examples(paths: list[str], fields: list[str] | None, what: str) -> list[str]:
    from pipeline.clean.textfiles import read_texts

    out = []
    for p in paths:
        out += [t for _, t in read_texts(p, fields, what)]
    return out


def format_report(report: dict) -> str:
    lines = [f"{'split':<9} {'examples':>8} {'pos':>6} {'neg':>6} {'accuracy':>8} {'ROC AUC':>7} "
             f"{'kept pos':>8} {'kept neg':>8}  (threshold {report['train']['threshold']:g})"]
    for split in ("train", "held_out"):
        r = report.get(split)
        if r:
            lines.append(f"{split:<9} {r['examples']:>8,} {r['positives']:>6,} {r['negatives']:>6,} {r['accuracy']:>8.4f} "
                         f"{r['roc_auc']:>7.4f} {r['kept_positive']:>8.3f} {r['kept_negative']:>8.3f}")
    return "\n".join(lines)
