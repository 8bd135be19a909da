#!/usr/bin/env python3
"""Every performance claim of the README against its named baseline, in one table.

    .venv/bin/python bench/all.py [--repeats 3] [--quick] [--only KEY,...] [--out bench/results]
    make bench            # the same; `make bench QUICK=1` for the short variant

Each benchmark is one of the scripts in bench/, run as a subprocess with `--json-out`: the
script alternates our side and the baseline run by run (neither side always second) and
writes every run's figure as pairs: {"claims": [{"claim", "baseline", "unit", "better",
"ours": [...], "base": [...]}]}, pair i = the two sides of repeat i. This script only runs
them and builds the table: the median of each side, and the median and [min-max] of the
per-pair ratios (baseline time / our time, or our rate / the baseline's: above 1 = ours is
faster). Claims whose baseline or data is not on this machine are listed as skipped, with
what they need.

The table is printed and written to OUT/latest.md (OUT/latest.json: every run's figures);
bench/results/ is git-ignored. The README quotes that file.
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
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared"
DATATROVE = Path(os.environ.get("DATATROVE_PYTHON", REPO.parent / "benchenv-clean" / "bin" / "python"))
DATATROVE_DEDUP = Path(os.environ.get("DEDUP_BENCH_PYTHON", REPO.parent / "benchenv-dedup" / "bin" / "python"))
NANOGPT = Path(os.environ.get("NANOGPT_DIR", REPO.parent / "benchenv-train" / "nanoGPT"))


# ------------------------------------------------------------------------------ the table
def pair_ratios(claim: dict) -> list[float]:
    """One figure per repeat: above 1 = ours is better (faster, or a higher rate). A
    "difference" claim (a loss, an F1) gives ours - baseline instead."""
    ours, base = claim["ours"], claim["base"]
    if len(ours) != len(base):
        raise ValueError(f"{claim['claim']}: {len(ours)} runs of ours against {len(base)} of the baseline")
    if claim.get("compare") == "difference":
        return [o - b for o, b in zip(ours, base)]
    if claim.get("better", "lower") == "lower":
        return [b / o for o, b in zip(ours, base)]
    return [o / b for o, b in zip(ours, base)]


def _num(x: float, unit: str) -> str:
    if unit == "s":
        return f"{x:.2f} s" if x < 10 else f"{x:.1f} s"
    if abs(x) >= 1000:
        return f"{x:,.0f} {unit}"
    return f"{x:.4g} {unit}"


def row_cells(claim: dict) -> list[str]:
    """[claim, ours, baseline, ratio, section] of one claim; the ratio is the median of the
    per-pair ratios with their [min-max], never a ratio of the two medians."""
    ratios = pair_ratios(claim)
    unit = claim.get("unit", "s")
    med = statistics.median(ratios)
    if claim.get("compare") == "difference":
        ratio = f"{med:+.4f} [{min(ratios):+.4f} to {max(ratios):+.4f}]"
    else:
        ratio = f"**{med:.2f}x** [{min(ratios):.2f}-{max(ratios):.2f}]"
        if claim.get("overhead"):  # (ours - baseline) / ours = 1 - ratio
            ratio += f"; overhead {100 * (1 - med):.1f} % [{100 * (1 - max(ratios)):.1f} to {100 * (1 - min(ratios)):.1f}]"
    return [claim["claim"], _num(statistics.median(claim["ours"]), unit),
            f"{_num(statistics.median(claim['base']), unit)} ({claim.get('baseline', '')})",
            f"{ratio} (n={len(ratios)})", claim.get("section", "")]


def table(claims: list[dict], skipped: list[tuple[str, str, str]]) -> str:
    """The markdown table: measured claims, then the skipped ones with what they need."""
    lines = ["| Claim | Ours (median) | Baseline (median) | Ratio: median [min-max] of the pairs | README section |",
             "|---|---|---|---|---|"]
    for c in claims:
        lines.append("| " + " | ".join(row_cells(c)) + " |")
    for claim, reason, section in skipped:
        lines.append(f"| {claim} | - | - | skipped: {reason} | {section} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the benchmarks
@dataclass
class Bench:
    key: str
    section: str
    claims: str  # what it measures, for the skipped line
    cmd: list  # arguments after `python bench/SCRIPT`; {n} = repeats
    quick: list | None  # the QUICK variant's arguments (None: not run with --quick)
    needs: list = field(default_factory=list)  # (path that must exist, what it is)
    json_flag: str = "--json-out"
    overhead: bool = False


def benches() -> list[Bench]:
    anchors = (SHARED / "anchors" / "make_bench_corpus.py", "../shared/anchors (the benchmark corpus)")
    web = (SHARED / "corpora" / "web", "../shared/corpora/web")
    return [
        Bench("flow-default", "The two commands; Orchestration",
              "default run: `opencorpus run` vs the stages called directly",
              ["flow_overhead.py", "--default", "--repeats", "{n}"],
              ["flow_overhead.py", "--default", "--homes", "fresh", "--repeats", "{n}"],
              overhead=True),
        Bench("tokenize", "Tokenizing", "tokenize stage vs bare encode_batch",
              ["tokenize_speed.py", "--repeat", "{n}", "--workers", "1", "2"],
              ["tokenize_speed.py", "--repeat", "{n}", "--workers", "1"], [anchors]),
        Bench("train", "Training", "trainer tokens/s and validation loss vs nanoGPT",
              ["train.py", "--steps", "200", "--repeats", "{n}"], ["train.py", "--steps", "30", "--repeats", "{n}"],
              [anchors, (NANOGPT / "train.py", f"nanoGPT's train.py in {NANOGPT} (bench/train.py docstring)")]),
        Bench("acquire", "Acquisition", "sources vs their raw readers",
              ["acquire.py", "--repeat", "{n}", "--bench-python", ""],
              ["acquire.py", "--repeat", "{n}", "--copies", "2", "--bench-python", ""], [web]),
        Bench("clean", "Cleaning", "clean chain vs datatrove's four filters",
              ["clean.py", "--repeats", "{n}"], None,
              [anchors, (DATATROVE, "datatrove's venv, ../benchenv-clean (bench/clean.py docstring)")]),
        Bench("dedup", "Deduplication", "dedup stage vs datatrove MinHash",
              ["dedup.py", "--scales", "1", "--repeats", "{n}"], None,
              [anchors, (DATATROVE_DEDUP, "datatrove's venv, ../benchenv-dedup (bench/dedup.py docstring)")],
              json_flag="--claims-out"),
        Bench("flow-large", "Orchestration", "corpus flow vs direct calls, 28 MB benchmark corpus",
              ["flow_overhead.py", "--scale", "1", "--repeats", "{n}"], None, [anchors], overhead=True),
    ]


NOT_RUN = [  # README figures make bench does not measure, and why
    ("GPU training tokens/s and MFU (bench/gpu_train.py)", "needs a GPU", "Training"),
    ("language ID: py3langid vs lingua, accuracy and speed (bench/clean.py --langid)",
     "not in make bench: accuracy run of ~10 min; needs ../shared/corpora/multilingual", "Cleaning"),
    ("keep/drop agreement with datatrove (bench/clean.py --agreement)",
     "not in make bench: datatrove at ~20 docs/s, ~10 min; not a timing", "Cleaning"),
    ("dedup F1 vs datasketch (bench/dedup_quality.py)", "not in make bench: deterministic, not a timing", "Deduplication"),
    ("unit-based dedup vs in-process, Dask (bench/engine_scale.py)", "not in make bench: ~30 min per size", "Orchestration"),
    ("MLM fine-tuning gain (bench/finetune_gain.py)", "not in make bench: accuracy, not a timing", "Masked LM"),
]


def gpu_present() -> bool:
    return shutil.which("nvidia-smi") is not None


def run_bench(b: Bench, repeats: int, quick: bool, out: Path) -> tuple[list[dict], str | None]:
    """(claims, None) or ([], why it was skipped or failed)."""
    missing = [what for path, what in b.needs if not Path(path).exists()]
    if missing:
        return [], "needs " + "; ".join(missing)
    args = [a.format(n=repeats) for a in (b.quick if quick else b.cmd)]
    result, log = out / f"{b.key}.json", out / "logs" / f"{b.key}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / args[0]), *args[1:], b.json_flag, str(result)]
    print(f"[{time.strftime('%H:%M:%S')}] {b.key}: {' '.join(cmd[1:])}  (log: {log})", flush=True)
    t = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT).returncode
    print(f"[{time.strftime('%H:%M:%S')}] {b.key}: exit {rc} after {time.perf_counter() - t:.0f} s", flush=True)
    if rc or not result.is_file():
        return [], f"failed (exit {rc}; see {log.relative_to(REPO) if log.is_relative_to(REPO) else log})"
    claims = json.loads(result.read_text())["claims"]
    for c in claims:
        c.setdefault("section", b.section)
        c["overhead"] = b.overhead
    return claims, None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each side (alternating), per benchmark")
    ap.add_argument("--quick", action="store_true", help="the short variant: fewer benchmarks, smaller workloads")
    ap.add_argument("--only", default=None, help="comma-separated benchmark keys: "
                    + ", ".join(b.key for b in benches()))
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    t0 = time.perf_counter()
    claims, skipped = [], []
    for b in benches():
        if only is not None and b.key not in only:
            continue
        if args.quick and b.quick is None:
            skipped.append((b.claims, "not in QUICK (run make bench)", b.section))
            continue
        got, why = run_bench(b, args.repeats, args.quick, args.out)
        claims += got
        if why:
            skipped.append((b.claims, why, b.section))
    if only is None:
        skipped += [(c, why if not (why == "needs a GPU" and gpu_present()) else "run bench/gpu_train.py", s)
                    for c, why, s in NOT_RUN]
    minutes = (time.perf_counter() - t0) / 60
    head = (f"`make bench{' QUICK=1' if args.quick else ''}`, {time.strftime('%Y-%m-%d %H:%M %Z')}, {args.repeats} repeats "
            f"per side alternating, {os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.1f}, "
            f"{minutes:.0f} min in all. Ratio above 1 = ours faster (baseline time / ours); "
            f"overhead = (ours - baseline) / ours.")
    text = head + "\n\n" + table(claims, skipped) + "\n"
    print("\n" + text)
    (args.out / "latest.md").write_text(text)
    (args.out / "latest.json").write_text(json.dumps({"header": head, "claims": claims, "skipped": skipped}, indent=1))
    print(f"written to {args.out / 'latest.md'}")


if __name__ == "__main__":
    main()
