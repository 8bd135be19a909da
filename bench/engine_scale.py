#!/usr/bin/env python3
"""Dedup and tokenize as units of work: the local pool against a Dask LocalCluster, and against
the in-process dedup of an earlier revision, at several corpus sizes.

    .venv/bin/python bench/engine_scale.py [--scales 5,14,27] [--repeats 1] [--workers 2] [--baseline-rev REV]
    .venv/bin/python bench/engine_scale.py --scales 135 --sizes 100000,300000,1000000 --engines local,dask --stages dedup

For each size (../shared/anchors/make_bench_corpus.py --scale N: 5 = 37,193 documents, 14 = ~104k,
27 = ~200k, 135 = ~1M), on CLEAN shards of 5,000 documents, in the same run, alternating:
  baseline   `run_dedup` of --baseline-rev (default c6a8efb, before the stage became units:
             one process, `workers` threads of its own)
  local      today's `run_dedup`, its units on the library's LocalMapper (`workers` threads)
  dask       today's `run_dedup`, its units submitted to a dask.distributed LocalCluster of
             `workers` single-threaded worker processes (the driver stays in this process)
and tokenize (`tokenize_corpus`, tokenizer trained once, untimed) the same three ways (baseline: one
process encoding batches on `workers` processes of its own; today: one unit per shard).
--sizes takes the first shards of the corpus (5,000 documents each) up to each size, so the sizes
are prefixes of one corpus. Each run is a child process. Reported: wall seconds, documents/s, peak RSS of the driver
(VmHWM) and of each Dask worker, the peak size of the scratch folder (sampled), and whether
the outputs are byte-identical to the first engine's (so F1 against the ground truth is equal
too; for tokenize, today's engines are compared with each other: the baseline wrote one series of
token shards for the corpus, today one per input shard). Corpora and run folders live under data/engine_bench/ (git-ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
from pipeline.units import scratch_dir  # noqa: E402
DATA = REPO / "data" / "engine_bench"

CHILD = r"""
import json, os, sys, time
from pathlib import Path

def status_mb(field):  # VmHWM (peak RSS) or VmRSS of this process, MB
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

def reset_peak():  # peak RSS so far, then VmHWM := VmRSS (Linux: clear_refs 5), so that a phase's or a unit's peak is its own
    before = status_mb("VmHWM")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return before

def measured(fn, *args):  # a unit on a Dask worker: its own peak RSS and the RSS it started from
    prev = reset_peak()
    rss0 = status_mb("VmRSS")
    result = fn(*args)
    return result, {"pid": os.getpid(), "prev_hwm": prev, "rss_before": rss0, "hwm": status_mb("VmHWM")}

def dask_spilled(dask_worker):  # bytes Dask itself wrote to its spill directory (not our scratch files)
    total = sum(v for k, v in dask_worker.digests_total.items() if "disk-write" in str(k) and "bytes" in str(k))
    return {"digest_bytes": total, "now_on_disk": int(dask_worker.data.spilled_total.disk) if hasattr(dask_worker.data, "spilled_total") else 0}

src, engine, stage, shards, out, workers = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), Path(sys.argv[5]), int(sys.argv[6])
sys.path.insert(0, src)
from pipeline.io import list_shards
paths = list_shards(shards)
mapper, cluster, client = None, None, None
driver_phase, driver_floor, worker_phase, worker_all = {}, {}, {}, {}  # phase -> MB; (phase, pid) -> {peak, floor}; pid -> peak
overall = [0.0]
try:  # today's code: peaks per phase (the baseline has no Work)
    import pipeline.units as units
    _run = units.Work.run
    def run_phase(self, mapper_, phase, unit_list):
        overall[0] = max(overall[0], reset_peak())
        driver_floor.setdefault(phase, status_mb("VmRSS"))
        try:
            return _run(self, mapper_, phase, unit_list)
        finally:
            driver_phase[phase] = max(driver_phase.get(phase, 0), status_mb("VmHWM"))
    units.Work.run = run_phase
except (ImportError, AttributeError):
    pass
if engine == "dask":
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           local_directory=str(out / "dask-local"))
    client = Client(cluster)
    def mapper(phase, fn, arg_lists):
        got = client.gather([client.submit(measured, fn, *a, pure=False) for a in arg_lists])
        for _, m in got:
            w = worker_phase.setdefault(phase + "|" + str(m["pid"]), {"peak": 0, "floor": 0, "units": 0})
            w["peak"] = max(w["peak"], m["hwm"]); w["floor"] = max(w["floor"], m["rss_before"]); w["units"] += 1
            worker_all[m["pid"]] = max(worker_all.get(m["pid"], 0), m["prev_hwm"], m["hwm"])
        return [r for r, _ in got]
t = time.perf_counter()
if stage == "dedup":
    from pipeline.dedup import DedupConfig, run_dedup
    kw = {"mapper": mapper} if mapper else {}
    st = run_dedup(paths, out, DedupConfig(), workers=workers, **kw)
else:
    from pipeline.tokenize import TokenizeConfig, tokenize_corpus
    kw = {"mapper": mapper} if mapper else {}
    st = tokenize_corpus(paths, out / "tokenizer.json", out / "tokens", TokenizeConfig(), workers=workers, **kw)
wall = time.perf_counter() - t
workers_mb, spilled = [], {}
if client is not None:
    for pid, mb in client.run(lambda: (os.getpid(), status_mb("VmHWM"))).values():
        worker_all[pid] = max(worker_all.get(pid, 0), mb)
    workers_mb = sorted(worker_all.values())
    spilled = client.run(dask_spilled)
    client.close(); cluster.close()
extra = {}
if stage == "dedup":
    extra = {k: getattr(st, k, None) for k in ("exact_removed", "near_removed", "duplicate_ids", "url_removed",
                                               "candidate_pairs", "verified_pairs", "docs_in_clusters", "timings")}
print(json.dumps({"wall": wall, "docs_in": st.docs_in, "docs_out": st.docs_out,
                  "driver_mb": max(overall[0], status_mb("VmHWM")), "workers_mb": workers_mb,
                  "driver_phase_mb": driver_phase, "driver_phase_start_mb": driver_floor, "worker_phase_mb": worker_phase,
                  "dask_spilled_bytes": sum(v["digest_bytes"] for v in spilled.values()),
                  "dask_spilled_now": sum(v["now_on_disk"] for v in spilled.values()), **extra}))
"""


def folder_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


def run(src: Path, engine: str, stage: str, shards: Path, out: Path, workers: int) -> dict:
    scratch = [scratch_dir(out, stage), out / "dedup_work"]  # today's, and the baseline's
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.5):
            peak[0] = max(peak[0], sum(folder_bytes(f) for f in scratch))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(src), engine, stage, str(shards), str(out), str(workers)],
                              capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as e:
        sys.exit(f"{engine} {stage} failed:\n{e.stderr[-3000:]}")
    finally:
        done.set()
        sampler.join()
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["scratch_mb"] = peak[0] / 2**20
    return result


def outputs(root: Path, stage: str) -> dict[str, bytes]:
    folders = ("dedup", "clusters", "rejected") if stage == "dedup" else ("tokens",)
    return {p.relative_to(root).as_posix(): p.read_bytes() for f in folders for p in sorted((root / f).rglob("*.parquet"))}


def prefix(shards: Path, size: int | None) -> Path:
    """A folder linking the first shards of `shards` holding `size` documents (all of them: None)."""
    if size is None:
        return shards
    from pipeline.io import list_shards

    dest = DATA / f"{shards.parent.name}-first-{size}"
    if not dest.is_dir():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        import pyarrow.parquet as pq

        n = 0
        for p in list_shards(shards):
            if n >= size:
                break
            os.symlink(p, tmp / p.name)
            n += pq.ParquetFile(p).metadata.num_rows
        tmp.rename(dest)
    return dest


def baseline_source(rev: str) -> Path:
    dest = DATA / f"src-{rev}"
    if not (dest / "pipeline").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "pipeline"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def phase_line(r: dict) -> str:
    """Peak RSS per phase: the driver's (VmHWM reset at each phase's start) and, on Dask, the
    largest over the workers of each unit's own peak (reset at each unit's start) and of the RSS a
    unit started from (what earlier units left behind)."""
    drv = ", ".join(f"{k} {v:.0f}" for k, v in r.get("driver_phase_mb", {}).items())
    per: dict[str, list[float]] = {}
    for key, w in r.get("worker_phase_mb", {}).items():
        ph = key.split("|")[0]
        a = per.setdefault(ph, [0, 0, 0])
        a[0], a[1], a[2] = max(a[0], w["peak"]), max(a[1], w["floor"]), a[2] + w["units"]
    wrk = ", ".join(f"{k} {v[0]:.0f} (start {v[1]:.0f}, {v[2]} units)" for k, v in per.items())
    return f"driver per phase MB: {drv}" + (f"; worker per phase MB: {wrk}" if wrk else "")


# docs/dedup.md: the driver's cluster unit holds 16 B x removals + 20 B x near edges + 48 B x
# documents in edges + 8 B x candidate pairs, on top of the libraries
def driver_formula(r: dict) -> str:
    removals = sum(r.get(k) or 0 for k in ("exact_removed", "near_removed", "duplicate_ids", "url_removed"))
    edges, in_edges, pairs = r.get("verified_pairs") or 0, r.get("docs_in_clusters") or 0, r.get("candidate_pairs") or 0
    pred = (16 * removals + 20 * edges + 48 * in_edges + 8 * pairs) / 2**20
    start = r.get("driver_phase_start_mb", {}).get("cluster", 0)
    peak = r.get("driver_phase_mb", {}).get("cluster", 0)
    return (f"driver formula: removals {removals:,}, near edges {edges:,}, docs in edges {in_edges:,}, candidate pairs "
            f"{pairs:,} -> {pred:.1f} MB predicted for the cluster unit; measured: cluster phase peak {peak:.0f} MB "
            f"- RSS at its start {start:.0f} MB = {peak - start:.0f} MB; driver peak {r['driver_mb']:.0f} MB")


def bench_stage(scale: int, size: int | None, shards: Path, stage: str, args, base_src: Path, rows: list):
    engines = args.engines.split(",")
    if stage == "tokenize":
        tok = DATA / f"tokenizer-{scale}-{size}.json"
        if not tok.is_file():  # in a child: its memory must not count in the timed children's peak
            tok.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "from pipeline.io import list_shards; from pipeline.tokenize import TokenizeConfig, train_tokenizer; "
                            "train_tokenizer(list_shards(sys.argv[2]), sys.argv[3], TokenizeConfig())",
                            str(REPO), str(shards), str(tok)], check=True)
    results = {e: [] for e in engines}
    reference, identical = None, {e: True for e in engines}
    for rep in range(args.repeats):
        for engine in (engines if rep % 2 == 0 else engines[::-1]):
            out = DATA / f"run-{scale}-{size}-{stage}-{engine}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            if stage == "tokenize":
                shutil.copy(tok, out / "tokenizer.json")
            src = base_src if engine == "baseline" else REPO
            r = run(src, engine, stage, shards, out, args.workers)
            results[engine].append(r)
            got = outputs(out, stage)
            if stage == "tokenize" and engine == "baseline":
                identical[engine] = None  # one token shard series for the corpus, not one per input shard
            else:
                reference = got if reference is None else reference
                identical[engine] &= got == reference
            print(f"scale {scale} {stage} {engine}: {r['wall']:.1f} s, driver {r['driver_mb']:.0f} MB, "
                  f"workers {[round(x) for x in r['workers_mb']]} MB, scratch {r['scratch_mb']:.0f} MB, "
                  f"Dask spilled {r.get('dask_spilled_bytes', 0):.0f} B", flush=True)
            print("  " + phase_line(r), flush=True)
            if stage == "dedup" and engine != "baseline":
                print("  " + driver_formula(r), flush=True)
            r.update(scale=scale, size=size, stage=stage, engine=engine, rep=rep)
            with open(DATA / "results.jsonl", "a") as f:
                f.write(json.dumps(r) + "\n")
    base = statistics.median(x["wall"] for x in results[engines[0]])
    for e in engines:
        walls = [x["wall"] for x in results[e]]
        med = statistics.median(walls)
        last = results[e][-1]
        rows.append((scale, last["docs_in"], stage, e, med, min(walls), max(walls), last["docs_in"] / med,
                     max(x["driver_mb"] for x in results[e]), max((max(x["workers_mb"], default=0) for x in results[e])),
                     max(x["scratch_mb"] for x in results[e]), max(x.get("dask_spilled_bytes", 0) for x in results[e]) / 2**20,
                     med / base, identical[e]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="5")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--baseline-rev", default="c6a8efb")
    ap.add_argument("--stages", default="dedup,tokenize")
    ap.add_argument("--engines", default="baseline,local,dask")
    ap.add_argument("--sizes", default="", help="document counts: prefixes of the corpus's shards (default: all of it)")
    args = ap.parse_args()
    import dedup as dedup_bench  # bench/dedup.py: the corpus builder and CLEAN sharding

    base_src = baseline_source(args.baseline_rev)
    rows = []
    for scale in [int(s) for s in args.scales.split(",")]:
        corpus = dedup_bench.build_corpus(scale)
        all_shards = dedup_bench.clean_shards(corpus)
        for size in [int(x) for x in args.sizes.split(",") if x] or [None]:
            for stage in args.stages.split(","):
                bench_stage(scale, size, prefix(all_shards, size), stage, args, base_src, rows)
    print()
    print("| docs | stage | engine | median s (min-max) | docs/s | driver peak MB | worker peak MB | scratch peak MB | Dask spilled MB | vs first | same bytes |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for scale, docs, stage, e, med, lo, hi, rate, drv, wrk, scr, spill, ratio, same in rows:
        print(f"| {docs:,} | {stage} | {e} | {med:.1f} ({lo:.1f}-{hi:.1f}) | {rate:,.0f} | {drv:,.0f} | "
              f"{wrk:,.0f} | {scr:,.0f} | {spill:,.1f} | {ratio:.2f}x | {'n/a' if same is None else 'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
