"""The report of an ablation (flows/ablate.py): per variant and metric, the mean over seeds with a
95% interval, the paired difference to the base with a bootstrap interval, the base's
seed-to-seed spread as the noise floor, and a verdict.

Statistics, stated once:
* a run's metric is computed over all items of an evaluation set (held-out passages: summed loss
  over summed tokens, or over bytes for bits per byte; tasks: the share of items right);
* mean and 95% interval over seeds: Student's t (n - 1 degrees of freedom), none for one seed;
* paired difference to the base: seeds are paired (variant at seed s against base at seed s).
  The bootstrap (`bootstrap` resamples, seeded) draws seeds with replacement and, independently,
  items with replacement (the same items on both sides), and recomputes the mean difference; the
  interval is its 2.5th to 97.5th percentile. It thus counts both sources of noise: training
  seeds and the finite evaluation set;
* noise floor: the standard deviation of the base's metric over its seeds;
* verdict: "better" or "worse" when the bootstrap interval excludes 0 and the mean difference is
  larger than the noise floor; otherwise "within noise". With one seed there is no noise floor,
  and the verdict says so.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pipeline.io import write_json, write_text

# two-sided 95% Student t quantiles by degrees of freedom (1..10), then the normal's
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def _metrics(result: dict) -> dict[str, tuple[str, dict]]:
    """metric name -> (kind, per-item arrays) of one run's result file."""
    out = {}
    for name, rows in result["heldout"].items():
        items = {k: np.array([r[k] for r in rows], float) for k in ("nll", "tokens", "bytes")}
        out[f"{name}: loss"] = ("loss", items)
        out[f"{name}: bits/byte"] = ("bpb", items)
    for name, rows in result["tasks"].items():
        items = {k: np.array([r[k] for r in rows], float) for k in ("acc", "acc_norm", "chance")}
        out[f"{name}: acc"] = ("acc", items)
        out[f"{name}: acc_norm"] = ("acc_norm", items)
    return out


def _value(kind: str, items: dict, idx: np.ndarray | None = None) -> np.ndarray | float:
    """The metric over the items (or over each row of resampled item indices `idx`)."""
    pick = (lambda a: a) if idx is None else (lambda a: a[idx])
    if kind == "loss":
        return pick(items["nll"]).sum(-1) / pick(items["tokens"]).sum(-1)
    if kind == "bpb":
        return pick(items["nll"]).sum(-1) / math.log(2) / pick(items["bytes"]).sum(-1)
    return pick(items[kind]).mean(-1)


LOWER_IS_BETTER = {"loss", "bpb"}


def summarize(results: dict[str, dict[int, dict]], bootstrap: int = 1000, seed: int = 0) -> dict:
    """results[variant][seed] = result file -> the report's figures (report.json)."""
    rng = np.random.default_rng(seed)
    base = results.get("base", {})
    names = sorted({m for per_seed in results.values() for r in per_seed.values() for m in _metrics(r)})
    parsed = {v: {s: _metrics(r) for s, r in per_seed.items()} for v, per_seed in results.items()}
    out = {"metrics": {}}
    for metric in names:
        kind = next(parsed[v][s][metric][0] for v in parsed for s in parsed[v] if metric in parsed[v][s])
        base_vals = [float(_value(kind, parsed["base"][s][metric][1])) for s in sorted(base) if metric in parsed["base"][s]]
        floor = float(np.std(base_vals, ddof=1)) if len(base_vals) > 1 else None
        rows = {}
        for v in parsed:
            seeds = sorted(s for s in parsed[v] if metric in parsed[v][s])
            vals = [float(_value(kind, parsed[v][s][metric][1])) for s in seeds]
            row = {"seeds": seeds, "values": vals, "mean": float(np.mean(vals)) if vals else None}
            if len(vals) > 1:
                half = T95.get(len(vals) - 1, 1.96) * float(np.std(vals, ddof=1)) / math.sqrt(len(vals))
                row["ci95"] = [row["mean"] - half, row["mean"] + half]
            paired = [s for s in seeds if s in base and metric in parsed["base"][s]]
            if v != "base" and paired:
                diffs = [float(_value(kind, parsed[v][s][metric][1]) - _value(kind, parsed["base"][s][metric][1])) for s in paired]
                n_items = len(next(iter(parsed[v][paired[0]][metric][1].values())))
                idx = rng.integers(0, n_items, size=(bootstrap, n_items))
                per_seed = np.stack([_value(kind, parsed[v][s][metric][1], idx) - _value(kind, parsed["base"][s][metric][1], idx)
                                     for s in paired])  # seeds x resamples
                picks = rng.integers(0, len(paired), size=(bootstrap, len(paired)))
                boot = per_seed[picks, np.arange(bootstrap)[:, None]].mean(axis=1)
                lo, hi = (float(x) for x in np.percentile(boot, [2.5, 97.5]))
                mean_diff = float(np.mean(diffs))
                better = mean_diff < 0 if kind in LOWER_IS_BETTER else mean_diff > 0
                if floor is None:
                    verdict = "no noise floor (one seed)"
                elif (lo > 0 or hi < 0) and abs(mean_diff) > floor:
                    verdict = "better" if better else "worse"
                else:
                    verdict = "within noise"
                row.update(diff=mean_diff, diff_ci95=[lo, hi], paired_seeds=paired, verdict=verdict)
            rows[v] = row
        out["metrics"][metric] = {"kind": kind, "lower_is_better": kind in LOWER_IS_BETTER, "noise_floor_sd": floor,
                                  "base_range": [min(base_vals), max(base_vals)] if base_vals else None, "variants": rows}
    return out


def _fmt(x, digits=4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def write_report(plan) -> Path:
    """report.json, report.md and charts/ of the ablation from the result files on disk."""
    results: dict[str, dict[int, dict]] = {}
    for v in plan.variants:
        for s in plan.ab.seeds:
            p = plan.result_path(v, s)
            if p.is_file():
                results.setdefault(v, {})[s] = json.loads(p.read_text())
    expected = len(plan.variants) * len(plan.ab.seeds)
    done = sum(len(x) for x in results.values())
    figures = summarize(results, plan.ab.bootstrap) if "base" in results else {"metrics": {}}
    figures.update(name=plan.ab.name, runs_done=done, runs_expected=expected, partial=done < expected,
                   budget_tokens=plan.steps * plan.cfg.tokens_per_step, preset=plan.ab.preset, seeds=plan.ab.seeds,
                   variants={v: plan.variants[v] for v in plan.variants},
                   runs=[{k: r.get(k) for k in ("variant", "seed", "run", "corpus", "steps", "tokens_seen", "train_seconds", "mixture")}
                         for per in results.values() for r in per.values()])
    out = plan.out
    write_json(figures, out / "report.json")
    charts = _charts(figures, out / "charts")
    lines = [f"# Ablation {plan.ab.name}", ""]
    if figures["partial"]:
        lines += [f"**Partial:** {done} of {expected} runs finished; the figures below use those only.", ""]
    lines += [f"Base recipe `{plan.base_path.name}`; {len(plan.ab.seeds)} seeds ({', '.join(map(str, plan.ab.seeds))}); "
              f"every run trains {figures['budget_tokens']:,} tokens ({plan.steps} steps, preset `{plan.ab.preset}`"
              + (f", overrides {plan.ab.train}" if plan.ab.train else "") + ").", "",
              "| Variant | Overrides of the base recipe | Corpus |", "|---|---|---|"]
    for v, over in plan.variants.items():
        lines.append(f"| {v} | `{json.dumps(over) if over else '—'}` | `{plan.corpus_dir(v).name}` |")
    lines += ["", "Held-out sets: " + (", ".join(f"`{p.name}`" for p in plan.heldout) or "none")
              + " (no line of them is in any variant's training documents: checked before training). "
              "Tasks: " + (", ".join(f"`{p.name}`" for p in plan.tasks) or "none") + ".", ""]
    for metric, m in figures["metrics"].items():
        better = "lower is better" if m["lower_is_better"] else "higher is better"
        lines += [f"## {metric} ({better})", "",
                  f"Noise floor (the base's standard deviation over seeds): {_fmt(m['noise_floor_sd'])}.", "",
                  "| Variant | Mean | 95% interval (seeds) | Difference to base | 95% bootstrap interval | Verdict |",
                  "|---|---:|---|---:|---|---|"]
        for v, r in m["variants"].items():
            ci = f"[{_fmt(r['ci95'][0])}, {_fmt(r['ci95'][1])}]" if r.get("ci95") else "—"
            dci = f"[{_fmt(r['diff_ci95'][0])}, {_fmt(r['diff_ci95'][1])}]" if r.get("diff_ci95") else "—"
            lines.append(f"| {v} | {_fmt(r['mean'])} | {ci} | {_fmt(r.get('diff'))} | {dci} | {r.get('verdict', 'base' if v == 'base' else '—')} |")
        if metric in charts:
            lines += ["", f"![{metric}]({charts[metric]})"]
        lines.append("")
    lines += ["## Runs", "", "| Variant | Seed | Steps | Tokens | Train s | Mixture consumed |", "|---|---:|---:|---:|---:|---|"]
    for r in figures["runs"]:
        mix = (r.get("mixture") or {}).get("tokens") or {}
        total = sum(mix.values()) or 1
        shares = ", ".join(f"{k} {100 * n / total:.0f}%" for k, n in sorted(mix.items()))
        lines.append(f"| {r['variant']} | {r['seed']} | {r['steps']} | {r['tokens_seen']:,} | {r['train_seconds']} | {shares} |")
    lines += ["", "Statistics: flows/ablation_report.py (paired by seed; bootstrap over seeds and items). "
              "Reproduce: `opencorpus ablate " + (plan.ab.file or f"{plan.ab.name}.yaml") + "` (finished corpora and runs are reused).", ""]
    return write_text("\n".join(lines), out / "report.md")


def _charts(figures: dict, folder: Path) -> dict[str, str]:
    """One PNG per metric: each variant's mean with its 95% interval, the base's mean and noise floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, (metric, m) in enumerate(figures["metrics"].items()):
        rows = [(v, r) for v, r in m["variants"].items() if r["mean"] is not None]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(rows), 3.0))
        means = [r["mean"] for _, r in rows]
        err = [[r["mean"] - r["ci95"][0] if r.get("ci95") else 0 for _, r in rows],
               [r["ci95"][1] - r["mean"] if r.get("ci95") else 0 for _, r in rows]]
        ax.bar(range(len(rows)), means, yerr=err, capsize=4, color=["#888" if v == "base" else "#3a7" for v, _ in rows])
        base = m["variants"].get("base", {}).get("mean")
        if base is not None and m["noise_floor_sd"]:
            ax.axhspan(base - m["noise_floor_sd"], base + m["noise_floor_sd"], color="#ccc", alpha=0.5, zorder=0)
        ax.set_xticks(range(len(rows)), [v for v, _ in rows], rotation=20)
        lo, hi = min(means), max(means)
        pad = (hi - lo) * 0.5 + 1e-3 + (m["noise_floor_sd"] or 0) * 2
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(metric, fontsize=9)
        fig.tight_layout()
        name = f"metric-{k}.png"
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)
        out[metric] = f"charts/{name}"
    return out
