#!/usr/bin/env python3
"""Dedup speed and memory: documents/s and peak RSS of the whole dedup stage, against datatrove.

    .venv/bin/python bench/dedup.py [--scales 1,5,14] [--repeats 1] [--workers 2] [--datatrove-python PATH]

For each size (make_bench_corpus.py --scale N: the quality corpus repeated N times with fresh word
bijections and fresh edits; 1 = 7,441 docs, 5 = 37,193, 14 = ~104k), in the same run:
  ours       `run_dedup` with the default config on CLEAN Parquet shards of 5,000 documents
             (the project's default shard size), --workers processes; one child process, timed
             from start to exit (interpreter start and imports included);
  datatrove  datatrove 0.10.1's four-stage MinHash (signatures, buckets, cluster, filter) with its
             default MinhashConfig, as ../shared/anchors/run_datatrove_minhash.py runs it: 2 JSONL
             input shards, tasks=2 and workers=2 for stages 1, 2 and 4; wall = sum of the four
             stage processes.
Wall time and peak RSS come from ../shared/anchors/measure.py (peak of the summed RSS of the
process tree, sampled every 0.1 s). The table gives medians over --repeats and the ratio.

datatrove runs in a separate venv (never a project dependency). Create it once:
    python3 -m venv ../benchenv-dedup
    ../benchenv-dedup/bin/pip install "datatrove[processing]==0.10.1"
    ../benchenv-dedup/bin/pip install spacy==3.8.18 orjson==3.13.0 datasketch==2.0.0
and pass --datatrove-python (default: $DEDUP_BENCH_PYTHON or ../benchenv-dedup/bin/python).
Corpora and run folders live under data/dedup_bench/ (git-ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ANCHORS = REPO.parent / "shared" / "anchors"
BENCH_DATA = REPO / "data" / "dedup_bench"
SHARD_DOCS = 5000


def build_corpus(scale: int) -> Path:
    out = BENCH_DATA / ("base" if scale == 1 else f"scale{scale}")
    if not (out / "corpus.jsonl").is_file() or not (out / "stats.json").is_file():
        print(f"building the benchmark corpus (scale {scale}) in {out} ...", flush=True)
        subprocess.run([sys.executable, str(ANCHORS / "make_bench_corpus.py"), "--scale", str(scale), "--out", str(out)], check=True)
    return out


def clean_shards(corpus: Path) -> Path:
    """corpus.jsonl as CLEAN_SCHEMA Parquet shards of SHARD_DOCS documents (untimed preparation)."""
    import pyarrow as pa

    from pipeline.io import list_shards, write_parquet
    from pipeline.schema import CLEAN_SCHEMA, conform

    folder = corpus / "clean_bench"
    done = folder / ".complete"
    if done.is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    batch, k = [], 0
    with open(corpus / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            batch.append({"id": r["id"], "text": r["text"], "source": r["source"], "kind": "prose"})
            if len(batch) == SHARD_DOCS:
                write_parquet(conform(pa.Table.from_pylist(batch), CLEAN_SCHEMA), folder / f"part-{k:05d}.parquet")
                batch, k = [], k + 1
    if batch:
        write_parquet(conform(pa.Table.from_pylist(batch), CLEAN_SCHEMA), folder / f"part-{k:05d}.parquet")
    done.write_text(str(len(list_shards(folder))))
    return folder


def measured(label: str, cmd: list[str], log: Path) -> dict:
    """Run cmd under the anchors' measure.py; return its JSON record (wall_s, tree_peak_rss_mb, ...)."""
    rec_file = log.with_suffix(".measure.jsonl")
    if rec_file.exists():
        rec_file.unlink()
    with open(log, "a") as out:
        subprocess.run([sys.executable, str(ANCHORS / "measure.py"), "--label", label, "--json-out", str(rec_file), "--", *cmd],
                       check=True, stdout=out, stderr=subprocess.STDOUT)
    return json.loads(rec_file.read_text().splitlines()[-1])


def run_ours(shards: Path, work: Path, workers: int, log: Path, executor: str = "threads") -> dict:
    out = work / "ours"
    shutil.rmtree(out, ignore_errors=True)
    rec = measured("ours", [sys.executable, str(Path(__file__).resolve()), "--child", str(shards), str(out), str(workers), executor], log)
    stats = json.loads((out / "stats.json").read_text())
    return {"wall_s": rec["wall_s"], "peak_mb": rec["tree_peak_rss_mb"], "proc_peak_mb": rec["proc_peak_rss_mb"],
            "removed": stats["docs_rejected"], "timings": stats["timings"]}


def run_datatrove(corpus: Path, work: Path, dt_python: str, log: Path) -> dict:
    w = work / "datatrove"
    shutil.rmtree(w, ignore_errors=True)
    script = str(ANCHORS / "run_datatrove_minhash.py")
    subprocess.run([dt_python, script, "split", "--corpus", str(corpus / "corpus.jsonl"), "--work", str(w), "--shards", "2"],
                   check=True, stdout=subprocess.DEVNULL)
    walls, peaks = [], []
    for stage in "1234":
        rec = measured(f"dt_s{stage}", [dt_python, script, stage, "--work", str(w), "--tasks", "2", "--workers", "2"], log)
        walls.append(rec["wall_s"])
        peaks.append(rec["tree_peak_rss_mb"])
    subprocess.run([dt_python, script, "dump", "--work", str(w)], check=True, stdout=subprocess.DEVNULL)
    removed = sum(1 for line in open(w / "removed.txt") if line.strip())
    return {"wall_s": sum(walls), "peak_mb": max(peaks), "stages_s": walls, "removed": removed}


def child(shards: str, out: str, workers: int, executor: str):
    """The measured process: the dedup stage alone, as the flow calls it."""
    from pipeline.dedup import DedupConfig, run_dedup
    from pipeline.io import list_shards

    stats = run_dedup(list_shards(shards), Path(out), DedupConfig(executor=executor), workers=workers)
    stats.write(Path(out) / "stats.json")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="1,5,14", help="comma-separated make_bench_corpus.py scales")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--datatrove-python", default=os.environ.get("DEDUP_BENCH_PYTHON", str(REPO.parent / "benchenv-dedup" / "bin" / "python")))
    ap.add_argument("--skip-datatrove", action="store_true")
    ap.add_argument("--datatrove-scales", default=None, help="run datatrove only at these scales (default: all)")
    ap.add_argument("--json-out", default=str(BENCH_DATA / "speed.jsonl"))
    ap.add_argument("--claims-out", help="also write the per-repeat pairs here (the claims bench/all.py reads)")
    ap.add_argument("--executor", default="threads", choices=["threads", "processes"], help="our DedupConfig.executor")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # SHARDS OUT WORKERS [EXECUTOR]
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1], int(a.child[2]), a.child[3] if len(a.child) > 3 else "threads")
        return
    if not a.skip_datatrove and not Path(a.datatrove_python).is_file():
        sys.exit(f"datatrove venv python not found at {a.datatrove_python}; see this script's docstring to create it")
    rows, claims = [], []
    for scale in [int(s) for s in a.scales.split(",") if s]:
        corpus = build_corpus(scale)
        shards = clean_shards(corpus)
        n_docs = json.loads((corpus / "stats.json").read_text()).get("docs") or sum(1 for _ in open(corpus / "corpus.jsonl"))
        work = corpus / "speed_runs"
        work.mkdir(parents=True, exist_ok=True)
        log = work / "log.txt"
        ours, dt = [], []
        with_dt = not a.skip_datatrove and (a.datatrove_scales is None or str(scale) in a.datatrove_scales.split(","))
        for rep in range(a.repeats):
            for side in ("ours", "dt") if rep % 2 == 0 else ("dt", "ours"):  # neither side always second
                if side == "ours":
                    ours.append(run_ours(shards, work, a.workers, log, a.executor))
                elif with_dt:
                    dt.append(run_datatrove(corpus, work, a.datatrove_python, log))
            print(f"scale {scale} repeat {rep}: ours {ours[-1]['wall_s']:.1f}s {ours[-1]['peak_mb']:.0f} MB"
                  + (f"; datatrove {dt[-1]['wall_s']:.1f}s {dt[-1]['peak_mb']:.0f} MB" if dt else ""), flush=True)
        row = {"scale": scale, "docs": n_docs, "loadavg_1m_end": round(os.getloadavg()[0], 1),
               "ours_wall_s": statistics.median(r["wall_s"] for r in ours), "ours_peak_mb": max(r["peak_mb"] for r in ours),
               "ours_removed": ours[-1]["removed"], "ours_timings": ours[-1]["timings"]}
        if dt:
            row.update(dt_wall_s=statistics.median(r["wall_s"] for r in dt), dt_peak_mb=max(r["peak_mb"] for r in dt),
                       dt_removed=dt[-1]["removed"], dt_stages_s=dt[-1]["stages_s"])
        rows.append(row)
        if dt:
            claims.append({"claim": f"dedup stage, {n_docs:,} docs, {a.workers} workers, vs datatrove MinHash (4 stages)",
                           "baseline": "datatrove 0.10.1 MinHash", "unit": "s", "better": "lower",
                           "ours": [r["wall_s"] for r in ours], "base": [r["wall_s"] for r in dt]})
        with open(a.json_out, "a") as f:
            f.write(json.dumps({**row, "repeats": a.repeats, "workers": a.workers, "time": time.strftime("%Y-%m-%d %H:%M")}) + "\n")

    if a.claims_out:
        Path(a.claims_out).write_text(json.dumps({"claims": claims}, indent=1))
    print(f"\n## Dedup speed ({a.workers} workers ({a.executor}), median of {a.repeats} run(s); peak RSS = whole process tree)\n")
    print("| Docs | ours wall s | ours docs/s | ours peak RSS MB | datatrove wall s | datatrove docs/s | datatrove peak RSS MB | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ours_rate = r["docs"] / r["ours_wall_s"]
        if "dt_wall_s" in r:
            dt_rate = r["docs"] / r["dt_wall_s"]
            print(f"| {r['docs']:,} | {r['ours_wall_s']:.1f} | {ours_rate:,.0f} | {r['ours_peak_mb']:.0f} | {r['dt_wall_s']:.1f} | "
                  f"{dt_rate:,.0f} | {r['dt_peak_mb']:.0f} | **{ours_rate / dt_rate:.1f}x** |")
        else:
            print(f"| {r['docs']:,} | {r['ours_wall_s']:.1f} | {ours_rate:,.0f} | {r['ours_peak_mb']:.0f} | - | - | - | - |")
    print("\nMachine load (1-minute load average on 2 cores) at the end of each size: "
          + ", ".join(f"{r['docs']:,} docs: {r['loadavg_1m_end']}" for r in rows))
    print("\nOur phase timings (s, last run): " + "; ".join(f"{r['docs']:,} docs: {r['ours_timings']}" for r in rows))


if __name__ == "__main__":
    main()
