"""What the Prefect orchestration costs: the corpus flow against the same pipeline functions
called directly, on the same ~50 MB corpus, in the same process, alternating.

    .venv/bin/python bench/flow_overhead.py [--corpus FILE.jsonl] [--workers 2] [--repeats 3]

The corpus (default data/bench/flow_overhead/corpus.jsonl, ~56 MB of text) is built once
with the shared benchmark-corpus builder, `../shared/anchors/make_bench_corpus.py --scale 2`
(WikiText, Dolma CC, Shakespeare, multilingual sentences and poetry, with injected near
duplicates). Both sides run ingest, clean (shards on `workers` processes), dedup, tokenizer
training, encoding, the manifest and the data card, each into a fresh folder:

    direct   pipeline functions; clean shards on a concurrent.futures process pool
    flow     flows.corpus.run_corpus (Prefect tasks, process-pool task runner, done records,
             progress log, artifact), the Prefect API server already running
    rerun    the flow again on the finished folder: every unit reused (resume cost)

The Prefect temporary server's start (once per `opencorpus run` without a configured
server) is reported on its own line. Prints medians and the flow/direct ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ANCHORS = REPO.parent / "shared" / "anchors"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def ensure_corpus(path: Path, scale: int = 2) -> Path:
    if path.is_file():
        return path
    print(f"building the benchmark corpus in {path.parent} (make_bench_corpus.py --scale {scale}) ...", flush=True)
    subprocess.run([sys.executable, str(ANCHORS / "make_bench_corpus.py"), "--scale", str(scale), "--out", str(path.parent)],
                   check=True)
    return path


def write_recipe(folder: Path, corpus: Path, shard_docs: int) -> Path:
    import yaml

    recipe = {
        "name": "flow-overhead",
        "sources": [{"name": "bench", "type": "jsonl", "license": "mixed", "paths": [str(corpus)]}],
        "ingest": {"shard_docs": shard_docs},
        "tokenize": {"vocab_size": 8192, "val_fraction": 0.05, "seed": 1234},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _clean_one(args):
    from pipeline.clean import clean_shard

    shard, out_dir, config = args
    name = Path(shard).name
    return clean_shard(shard, out_dir / "clean" / name, out_dir / "rejected" / f"clean-{name}", config)


def run_direct(recipe_path: Path, out: Path, workers: int) -> dict:
    """The same stages as the flow, without Prefect: plain calls and a process pool."""
    from pipeline import card
    from pipeline.dedup import run_dedup
    from pipeline.ingest import ingest_source
    from pipeline.manifest import build_manifest
    from pipeline.recipe import load_recipe
    from pipeline.records import CleanStats, IngestStats, Manifest, Stages
    from pipeline.tokenize import tokenize_corpus, train_tokenizer

    recipe = load_recipe(recipe_path)
    stages = Stages()
    t0 = time.perf_counter()
    per_source = [ingest_source(s, out, recipe.ingest.shard_docs) for s in recipe.source_objects(out)]
    stages.ingest = IngestStats.summed(per_source, time.perf_counter() - t0,
                                       sources={s.name: r for s, r in zip(recipe.sources, per_source)})
    shards = [out / s for r in per_source for s in r.shards]
    with ProcessPoolExecutor(workers) as pool:
        stages.clean = CleanStats.merged(list(pool.map(_clean_one, [(s, out, recipe.clean) for s in shards])))
    clean = sorted(out / "clean" / Path(s).name for s in shards)
    stages.dedup = run_dedup(clean, out, recipe.dedup, workers=workers)
    dedup = sorted(out / "dedup" / p.name for p in clean)
    train_tokenizer(dedup, out / "tokenizer.json", recipe.tokenize)
    stages.tokenize = tokenize_corpus(dedup, out / "tokenizer.json", out / "tokens", recipe.tokenize, workers=workers)
    manifest = build_manifest(recipe, str(recipe_path), stages, "bench")
    manifest.write(out / Manifest.file_name)
    card.write_card(out, manifest)
    return manifest


# ------------------------------------------------------------------ the default run, as a user runs it
DEFAULT_RECIPE = REPO / "recipes" / "default.yaml"
NO_HEAD_START = ", no head start"


def _user_env(prefect_home: Path) -> dict:
    """The environment of a user's shell: no API configured, Prefect's defaults otherwise."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_LOGGING_LEVEL")}
    env.update(PREFECT_HOME=str(prefect_home), PYTHONPATH=str(REPO))
    return env


def cli_command(recipe: Path, out: Path, workers: int, cli: str | None = None) -> list[str]:
    script = Path(cli or Path(sys.executable).with_name("opencorpus"))  # the console script `pip install` wrote
    head = [str(script)] if script.is_file() else [sys.executable, "-m", "flows.cli"]
    return head + ["run", str(recipe), "--output", str(out), "--workers", str(workers)]


def run_default_side(mode: str, recipe: Path, out: Path, workers: int, work: Path, cli: str | None = None
                     ) -> tuple[float, dict]:
    """Wall seconds of one side, a fresh process each, timed from outside (interpreter start,
    imports and, for the CLI, the supervisor, Prefect's server and the pool included)."""
    shutil.rmtree(out, ignore_errors=True)
    settle()
    if mode == "direct":
        cmd = [sys.executable, str(Path(__file__).resolve()), "--direct-child", str(recipe), str(out), str(workers)]
        home = work / "unused-home"
    else:
        cmd = cli_command(recipe, out, workers, cli)
        home = work / ("home-kept" if mode.startswith("cli, kept home") else f"home-fresh-{time.monotonic_ns()}")
    env = _user_env(home)
    if mode.endswith(NO_HEAD_START):
        env["OPENCORPUS_HEAD_START"] = "0"
    launch, t = time.time(), time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    wall, end = time.perf_counter() - t, time.time()
    if res.returncode:
        raise RuntimeError(f"{mode} failed ({' '.join(cmd)}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    if mode.startswith("cli, fresh home"):  # its server stops with it: the next fresh run starts its own (untimed)
        _stop_server(home)
        shutil.rmtree(home, ignore_errors=True)
    manifest = json.loads((out / "manifest.json").read_text())
    # Where the wall time went: until the first stage starts, the work, and the exit after it.
    if mode == "direct":
        marks = json.loads(res.stdout.strip().splitlines()[-1])
        start, done = marks["t_ready"], marks["t_done"]
    else:
        events = [json.loads(line) for line in (out / ".opencorpus" / "progress.jsonl").read_text().splitlines()]
        start = next(e["t"] for e in events if e["event"] == "stage_start")
        done = next(e["t"] for e in reversed(events) if e["event"] == "run_end")
    phases = {"start-up": start - launch, "stages, manifest, card": done - start, "exit": end - done}
    return wall, {k: v["seconds"] for k, v in manifest["stages"].items() if v}, phases


def _cpu_idle_fraction(window: float) -> float:
    def sample():
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    (idle0, total0), _ = sample(), time.sleep(window)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(total1 - total0, 1)


def settle(idle: float = 0.9, window: float = 0.5, limit: float = 30.0) -> None:
    """Wait (untimed, up to `limit` s) until the machine is idle: the previous run's processes
    gone, and a kept Prefect server done recording the events a run sent it (seconds of CPU
    after the command returned, which would otherwise land on the next run, of either side)."""
    if not Path("/proc/stat").is_file():
        time.sleep(2)
        return
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and _cpu_idle_fraction(window) < idle:
        pass


def _stop_server(prefect_home: Path):
    """Stop the Prefect server a CLI run kept for this home (flows/server.py), as `opencorpus server stop` does."""
    from flows.server import stop_server

    stop_server(prefect_home)


def default_run(args) -> dict:
    """`opencorpus run recipes/default.yaml` against the same stages called directly in one process."""
    work = Path(tempfile.mkdtemp(prefix="flow-overhead-default-"))
    recipe = DEFAULT_RECIPE
    modes = ("direct",) + tuple(f"cli, {h} home" for h in args.homes.split(","))
    if args.without_head_start:
        modes += tuple(m + NO_HEAD_START for m in modes[1:])
    # `make venv` makes Prefect's migrated database template (flows/server.py), as a user's install
    # does: a fresh home starts from a copy of it. Untimed here, once.
    subprocess.run([sys.executable, "-m", "flows.server", "template"], env=_user_env(work / "unused-home"),
                   cwd=REPO, check=True, capture_output=True)
    try:
        if "cli, kept home" in modes:  # its database is migrated and its server started by an untimed first run (a user's second run on)
            run_default_side("cli, kept home", recipe, work / "warm", args.workers, work, args.cli)
        times: dict[str, list[float]] = {m: [] for m in modes}
        stages: dict[str, list[dict]] = {m: [] for m in modes}
        phases: dict[str, list[dict]] = {m: [] for m in modes}
        for i in range(args.repeats):
            k = i % len(modes)
            order = modes[k:] + modes[:k]  # each side in each position in turn
            for mode in order:
                wall, st, ph = run_default_side(mode, recipe, work / "out", args.workers, work, args.cli)
                times[mode].append(wall)
                stages[mode].append(st)
                phases[mode].append(ph)
                print(f"  {mode:>16} #{i}: {wall:6.1f} s  (stages: "
                      + ", ".join(f"{k} {v:.1f}" for k, v in st.items()) + ")", flush=True)
    finally:
        _stop_server(work / "home-kept")
        shutil.rmtree(work, ignore_errors=True)
    direct = statistics.median(times["direct"])
    print(f"\n`opencorpus run {recipe.relative_to(REPO)} --workers {args.workers}` (a fresh process each, timed from "
          f"outside) against the same stages called directly in one process; {args.repeats} repeats, medians\n")
    print("| run | median s (runs) | stages s (median) | overhead: (run - direct) / run |")
    print("|---|---|---|---|")
    for mode in modes:
        med = statistics.median(times[mode])
        stage_s = statistics.median(sum(st.values()) for st in stages[mode])
        runs = ", ".join(f"{x:.1f}" for x in times[mode])
        over = "" if mode == "direct" else f"{100 * (med - direct) / med:.1f} %"
        print(f"| {mode} | {med:.1f} ({runs}) | {stage_s:.1f} | {over} |")
    names = list(phases["direct"][0])
    print("\nWhere the time went (medians, s): start-up = launch to the first stage's start (interpreter, "
          "imports; for the CLI the supervisor, Prefect's server, the flow run, the pool); exit = after the run's "
          "end (log flush, server stop)\n")
    print("| run | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for mode in modes:
        print(f"| {mode} | " + " | ".join(f"{statistics.median(p[n] for p in phases[mode]):.1f}" for n in names) + " |")
    if args.without_head_start:
        for mode in modes[1:]:
            if not mode.endswith(NO_HEAD_START):
                off, on = statistics.median(times[mode + NO_HEAD_START]), statistics.median(times[mode])
                print(f"\nhead start, {mode}: {on:.1f} s against {off:.1f} s without it ({off - on:+.1f} s)")
        modes = tuple(m for m in modes if not m.endswith(NO_HEAD_START))
    return {"claims": [
        {"claim": f"default run: `opencorpus run` ({mode.split(', ')[1].removesuffix(' home')} Prefect home) vs the stages called directly",
         "baseline": "pipeline functions called directly", "unit": "s", "better": "lower",
         "ours": times[mode], "base": times["direct"], "stages": stages[mode], "phases": phases[mode]}
        for mode in modes[1:]], "direct_stages": stages["direct"], "direct_phases": phases["direct"]}


def direct_child(recipe: str, out: str, workers: str):
    # What run_direct imports, before the start-up mark (the stage packages load their stages lazily).
    import pipeline.card, pipeline.dedup.stage, pipeline.ingest, pipeline.tokenize.stage  # noqa: E401, F401

    ready = time.time()
    run_direct(Path(recipe), Path(out), int(workers))
    print(json.dumps({"t_ready": ready, "t_done": time.time()}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=None,
                    help="default: data/bench/flow_overhead[-scaleN]/corpus.jsonl, built with make_bench_corpus.py --scale")
    ap.add_argument("--scale", type=int, default=2, help="make_bench_corpus.py --scale of the default corpus (2: ~56 MB)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shard-docs", type=int, default=1000, help="documents per shard (so, clean tasks)")
    ap.add_argument("--default", action="store_true",
                    help="measure the default run as a user runs it: `opencorpus run recipes/default.yaml` (CLI, fresh "
                         "and kept Prefect home: the server a first run started is kept for later runs) against the same stages called directly")
    ap.add_argument("--homes", default="fresh,kept",
                    help="--default: Prefect homes to run the CLI with: fresh (an empty folder each run, its "
                         "database copied from the migrated template `make venv` made, a server started: a user's "
                         "first run in a new home) and/or kept (a user's later runs)")
    ap.add_argument("--without-head-start", action="store_true",
                    help="--default: also run each CLI side with OPENCORPUS_HEAD_START=0 (flows/head_start.py), alternating")
    ap.add_argument("--cli", default=None, help="--default: the opencorpus executable (default: this venv's)")
    ap.add_argument("--json-out", help="also write the per-repeat pairs here (the claims bench/all.py reads)")
    ap.add_argument("--direct-child", nargs=3, help=argparse.SUPPRESS)  # RECIPE OUT WORKERS
    args = ap.parse_args(argv)
    if args.direct_child:
        return direct_child(*args.direct_child)
    if args.default:
        result = default_run(args)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(result, indent=1))
        return

    folder = "flow_overhead" if args.scale == 2 else f"flow_overhead-scale{args.scale}"
    corpus = ensure_corpus(args.corpus or REPO / "data" / "bench" / folder / "corpus.jsonl", args.scale)
    work = Path(tempfile.mkdtemp(prefix="flow-overhead-"))
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect-home"))  # this run's own server database
    recipe = write_recipe(work, corpus, args.shard_docs)

    from flows.corpus import run_corpus
    from flows.server import prefect_api

    t = time.perf_counter()
    with prefect_api():
        server_s = time.perf_counter() - t
        times: dict[str, list[float]] = {"direct": [], "flow": [], "rerun": []}
        docs = None
        for i in range(args.repeats):
            for mode in ("direct", "flow") if i % 2 == 0 else ("flow", "direct"):
                out = work / f"{mode}-{i}"
                t = time.perf_counter()
                if mode == "direct":
                    m = run_direct(recipe, out, args.workers)
                else:
                    m = run_corpus(str(recipe), str(out), args.workers, cards_dir=None)
                times[mode].append(time.perf_counter() - t)
                docs = m.stages.ingest.docs_out
                print(f"  {mode:>6} #{i}: {times[mode][-1]:7.1f} s", flush=True)
            t = time.perf_counter()
            run_corpus(str(recipe), str(work / f"flow-{i}"), args.workers, cards_dir=None)
            times["rerun"].append(time.perf_counter() - t)
            print(f"  {'rerun':>6} #{i}: {times['rerun'][-1]:7.1f} s", flush=True)
            for mode in ("direct", "flow"):
                shutil.rmtree(work / f"{mode}-{i}", ignore_errors=True)

    mb = corpus.stat().st_size / 1e6
    direct, flow, rerun = (statistics.median(times[k]) for k in ("direct", "flow", "rerun"))
    print()
    print(f"corpus {corpus} ({mb:.1f} MB JSONL, {docs:,} documents, {args.shard_docs} per shard), "
          f"workers {args.workers}, {args.repeats} repeats, medians")
    print()
    print("| run | median s | vs direct |")
    print("|---|---:|---:|")
    print(f"| direct pipeline calls | {direct:.1f} | 1.00 |")
    print(f"| corpus flow (Prefect) | {flow:.1f} | {flow / direct:.2f} |")
    print(f"| flow rerun, all units reused | {rerun:.1f} | {rerun / direct:.2f} |")
    print(f"| Prefect temporary server start (once per run without a server) | {server_s:.1f} | |")
    print()
    print(f"orchestration overhead: {100 * (flow / direct - 1):+.1f}% (target < 10%)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"claims": [
            {"claim": f"corpus flow (Prefect, server running) vs direct calls, {mb:.1f} MB corpus",
             "baseline": "pipeline functions called directly", "unit": "s", "better": "lower",
             "ours": times["flow"], "base": times["direct"]}]}, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
