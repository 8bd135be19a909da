#!/usr/bin/env python3
"""Dedup quality: precision, recall and F1 of the removed set against a near-duplicate ground truth.

    .venv/bin/python bench/dedup_quality.py [--scale 1] [--threshold 0.75] [--configs default,fineweb,...]

The benchmark corpus and its ground truth come from ../shared/anchors/make_bench_corpus.py (real
text from ../shared/corpora: WikiText, CC pages, Shakespeare, 79 languages, Chinese poetry; 10 % of
the originals get exact copies and word-level edits at 1/5/15/30 %; the exact word 5-gram Jaccard
of every (original, variant) pair and of natural pairs is recorded). It is built once under
data/dedup_bench/ (git-ignored). Scoring uses ../shared/anchors/evaluate_dedup.py's definitions:
a removed document is a true positive while a copy of its true cluster (Jaccard >= threshold)
survives.

In the same run, plain `datasketch.MinHash` + `MinHashLSH` (112 perms, 14 x 8, the anchors'
dedup_datasketch.py) is scored on the same corpus. Each of our configurations runs the real
`run_dedup` on the corpus written as CLEAN Parquet shards.

Two ground truths are reported:
  words   the anchors' truth: Jaccard of whitespace-word 5-grams for every document;
  project the same pairs with Jaccard recomputed under the project's default shingling, i.e.
          lowercase, and character 5-grams for Chinese/Japanese text (whitespace words there are whole
          poem lines, so one edited line changes 5 of ~60 "word" shingles).
Also printed: detection probability (share of labelled pairs put in one cluster) per true-Jaccard
bin, next to the LSH S-curve 1 - (1 - J^r)^b of the bands x rows used.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ANCHORS = REPO.parent / "shared" / "anchors"
BENCH_DATA = REPO / "data" / "dedup_bench"

from pipeline.dedup import DedupConfig, run_dedup  # noqa: E402
from pipeline.dedup.exact import normalize  # noqa: E402
from pipeline.dedup.minhash import Signer, detection_probability, shingle_strings  # noqa: E402
from pipeline.io import list_shards, write_parquet  # noqa: E402
from pipeline.schema import CLEAN_SCHEMA, conform  # noqa: E402

CONFIGS = {
    "default": {},
    "cjk-words": {"minhash": {"cjk": "words"}},
    "verify-signature": {"minhash": {"verify": "signature"}},
    "no-verify (11x11)": {"minhash": {"verify": "none"}},
    "fineweb preset": {"minhash": {"preset": "fineweb"}},
}


def _load_evaluator():
    sys.path.insert(0, str(ANCHORS))
    import evaluate_dedup  # noqa: E402

    return evaluate_dedup


def build_corpus(scale: int) -> Path:
    out = BENCH_DATA / ("base" if scale == 1 else f"scale{scale}")
    if not (out / "ground_truth.jsonl").is_file():
        print(f"building the benchmark corpus (scale {scale}) in {out} ...", flush=True)
        subprocess.run([sys.executable, str(ANCHORS / "make_bench_corpus.py"), "--scale", str(scale), "--out", str(out)], check=True)
    return out


def write_clean_shards(corpus: Path, shards: int = 4) -> list[Path]:
    """corpus.jsonl as CLEAN_SCHEMA shards, contiguous slices in corpus order (kept = earliest)."""
    folder = corpus / f"clean{shards}"
    if len(list_shards(folder)) == shards:
        return list_shards(folder)
    recs = [json.loads(line) for line in open(corpus / "corpus.jsonl", encoding="utf-8")]
    per = -(-len(recs) // shards)
    for k in range(shards):
        part = recs[k * per : (k + 1) * per]
        t = pa.Table.from_pylist([{"id": r["id"], "text": r["text"], "source": r["source"], "kind": "prose"} for r in part])
        write_parquet(conform(t, CLEAN_SCHEMA), folder / f"part-{k:05d}.parquet")
    return list_shards(folder)


def project_truth(corpus: Path) -> Path:
    """The anchors' ground truth with every Jaccard recomputed under the project's default shingling."""
    out = corpus / "ground_truth_project.jsonl"
    if out.is_file():
        return out
    texts = {}
    for line in open(corpus / "corpus.jsonl", encoding="utf-8"):
        d = json.loads(line)
        texts[d["id"]] = d["text"]
    cfg = DedupConfig()
    signer = Signer(cjk=cfg.minhash.cjk, cjk_min_ratio=cfg.minhash.cjk_min_ratio)
    ids = list(texts)
    toks, _ = signer.tokens(normalize(pa.array([texts[i] for i in ids]), cfg.normalize))
    sets = {i: set(shingle_strings(t, cfg.minhash.ngram)) for i, t in zip(ids, toks.to_pylist())}

    def jac(a, b):
        sa, sb = sets[a], sets[b]
        return len(sa & sb) / len(sa | sb) if sa or sb else 1.0

    with open(out, "w", encoding="utf-8") as f:
        for line in open(corpus / "ground_truth.jsonl", encoding="utf-8"):
            g = json.loads(line)
            if g["type"] == "natural":
                g["jaccard"] = round(jac(g["a"], g["b"]), 6)
            else:
                for m in g["members"]:
                    m["jaccard"] = round(jac(g["original"], m["id"]), 6)
            f.write(json.dumps(g) + "\n")
    return out


def run_ours(name: str, overrides: dict, shards: list[Path], work: Path, threshold: float) -> dict:
    cfg = DedupConfig.model_validate({**overrides, "threshold": threshold} if "preset" not in json.dumps(overrides) else overrides)
    out = work / name.replace(" ", "_").replace("(", "").replace(")", "")
    t = time.perf_counter()
    stats = run_dedup(shards, out, cfg, workers=2)
    wall = time.perf_counter() - t
    removed, pairs = [], []
    for p in list_shards(out / "rejected", "dedup-*.parquet"):
        removed += pq.read_table(p, columns=["id"]).column("id").to_pylist()
    for p in list_shards(out / "clusters"):
        c = pq.read_table(p, columns=["id", "cluster_id", "kept"])
        pairs += [(cid, i) for i, cid, k in zip(*(c.column(x).to_pylist() for x in ("id", "cluster_id", "kept"))) if not k]
    (out / "removed.txt").write_text("\n".join(removed) + "\n")
    (out / "pairs.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in pairs))
    return {"name": name, "dir": out, "wall_s": wall, "bands": stats.bands, "rows": stats.rows, "verify": stats.verify}


def run_datasketch(corpus: Path, work: Path) -> dict:
    out = work / "datasketch"
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, str(ANCHORS / "dedup_datasketch.py"), "--corpus", str(corpus / "corpus.jsonl"), "--work", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return {"name": "datasketch MinHashLSH 14x8 (plain)", "dir": out, "wall_s": time.perf_counter() - t, "bands": 14, "rows": 8, "verify": "none"}


BINS = ["J[0.00,0.50)", "J[0.50,0.60)", "J[0.60,0.70)", "J[0.70,0.75)", "J[0.75,0.80)", "J[0.80,0.90)", "J[0.90,1.00)", "J=1.0"]
BIN_MID = [0.25, 0.55, 0.65, 0.725, 0.775, 0.85, 0.95, 1.0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=1, help="make_bench_corpus.py --scale (1 = 7,441 docs)")
    ap.add_argument("--threshold", type=float, default=0.75)
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of: " + ", ".join(CONFIGS))
    ap.add_argument("--json-out", help="append the results as JSON lines")
    a = ap.parse_args()
    ev = _load_evaluator()
    corpus = build_corpus(a.scale)
    shards = write_clean_shards(corpus)
    truths = {"words": corpus / "ground_truth.jsonl", "project": project_truth(corpus)}
    work = corpus / "quality_runs"
    runs = [run_ours(n, CONFIGS[n], shards, work, a.threshold) for n in a.configs.split(",") if n]
    runs.append(run_datasketch(corpus, work))

    rows = []
    for r in runs:
        removed = {x.strip() for x in open(r["dir"] / "removed.txt") if x.strip()}
        res = {t: ev.score(str(p), removed, str(r["dir"] / "pairs.tsv"), a.threshold) for t, p in truths.items()}
        rows.append((r, res))
    n_docs = sum(1 for _ in open(corpus / "corpus.jsonl"))
    print(f"\n## Dedup quality at Jaccard >= {a.threshold} ({n_docs:,} docs, scale {a.scale})\n")
    print("| Tool / config | bands x rows | verify | removed | P (words) | R (words) | F1 (words) | P (project) | R (project) | F1 (project) | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r, res in rows:
        w, p = res["words"], res["project"]
        print(f"| {r['name']} | {r['bands']} x {r['rows']} | {r['verify']} | {w['removed']} | {w['precision']:.4f} | {w['recall']:.4f} | "
              f"**{w['f1']:.4f}** | {p['precision']:.4f} | {p['recall']:.4f} | **{p['f1']:.4f}** | {r['wall_s']:.1f} |")
    print("\n## Detection probability vs true word 5-gram Jaccard (labelled pairs put in one cluster; in brackets the LSH S-curve at the bin's middle)\n")
    print("| Tool / config | " + " | ".join(BINS) + " |")
    print("|---|" + "---|" * len(BINS))
    for r, res in rows:
        by = res["words"].get("pair_recall_by_jaccard", {})
        cells = []
        for b, mid in zip(BINS, BIN_MID):
            s = by.get(b, "-")
            frac = s.split("= ")[-1] if "=" in s else "-"
            cells.append(f"{frac} ({detection_probability(mid, r['bands'], r['rows']):.2f})")
        print(f"| {r['name']} | " + " | ".join(cells) + " |")
    print("\nPair recall by injected kind (words truth):\n")
    for r, res in rows:
        print(f"- {r['name']}: " + ", ".join(f"{k} {v}" for k, v in res["words"].get("pair_recall_by_kind", {}).items()))
    if a.json_out:
        with open(a.json_out, "a") as f:
            for r, res in rows:
                f.write(json.dumps({"name": r["name"], "scale": a.scale, "wall_s": r["wall_s"], **{t: v for t, v in res.items()}}, default=str) + "\n")


if __name__ == "__main__":
    main()
