"""PNG charts of a card's figures (matplotlib, Agg backend: no display needed).

Each chart is drawn from the figures dict only, so a card can be redrawn without the
Parquet files. Files carry no timestamp metadata: the same figures give the same bytes.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.card.figures import size_order  # noqa: E402
from pipeline.io import atomic_path  # noqa: E402

BLUE, ORANGE, GREY = "#3b6ea8", "#e08a2e", "#9aa5b1"
TOP_LANGUAGES = 15


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def _funnel(figures: dict, path: Path) -> Path | None:
    stages = [s for s in figures["funnel"]["stages"] if s.get("docs_in") is not None]
    if not stages:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, layout="constrained", figsize=(10, 3.4))
    names = [s["stage"] for s in stages]
    x = range(len(names))
    w = 0.4
    ax1.bar([i - w / 2 for i in x], [s["docs_in"] for s in stages], w, label="in", color=GREY)
    ax1.bar([i + w / 2 for i in x], [s["docs_out"] or 0 for s in stages], w, label="out", color=BLUE)
    ax1.set_title("Documents per stage")
    ax2.bar([i - w / 2 for i in x], [(s["bytes_in"] or 0) / 1e6 for s in stages], w, label="in", color=GREY)
    ax2.bar([i + w / 2 for i in x], [(s["bytes_out"] or 0) / 1e6 for s in stages], w, label="out", color=BLUE)
    ax2.set_title("MB of text per stage")
    for ax in (ax1, ax2):
        ax.set_xticks(list(x), names)
        ax.legend(frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def _filters(figures: dict, path: Path) -> Path | None:
    rows = [f for f in figures["funnel"]["filters"] if f.get("docs")][:25]
    if not rows:
        return None
    with_bytes = all(r.get("bytes") is not None for r in rows)
    fig, axes = plt.subplots(1, 2 if with_bytes else 1, sharey=True, layout="constrained",
                             figsize=(11 if with_bytes else 8, 0.35 * len(rows) + 1.2))
    axes = list(axes) if with_bytes else [axes]
    labels = [f"{r['stage']}: {r['filter']}" for r in rows]
    panels = [("documents removed", [r["docs"] for r in rows], lambda v: f" {v:,}")]
    if with_bytes:
        unit, scale = ("MB", 1e6) if max(r["bytes"] for r in rows) >= 1e6 else ("kB", 1e3)
        panels.append((f"{unit} of text removed", [r["bytes"] / scale for r in rows], lambda v: f" {v:,.1f}"))
    for ax, (xlabel, values, fmt) in zip(axes, panels):
        ax.barh(range(len(rows)), values, color=ORANGE)
        ax.set_xlabel(xlabel)
        for i, v in enumerate(values):
            ax.text(v, i, fmt(v), va="center", fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_yticks(range(len(rows)), labels)
    axes[0].invert_yaxis()
    fig.suptitle("Removed per filter")
    return _save(fig, path)


def _language_bars(figures: dict, key: str, xlabel: str, title: str, path: Path) -> Path | None:
    """One horizontal bar per language (the top ones), of the rows' `key`."""
    rows = [r for r in figures["languages"]["rows"][:TOP_LANGUAGES] if r.get(key)]
    if not rows:
        return None
    fig, ax = plt.subplots(layout="constrained", figsize=(7, 0.32 * len(rows) + 1.2))
    ax.barh(range(len(rows)), [r[key] for r in rows], color=BLUE)
    ax.set_yticks(range(len(rows)), [r["language"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def _languages(figures: dict, path: Path) -> Path | None:
    top = f" (top {TOP_LANGUAGES})" if len(figures["languages"]["rows"]) > TOP_LANGUAGES else ""
    return _language_bars(figures, "docs", "documents", "Languages" + top, path)


def _histogram(hist: dict | None, title: str, xlabel: str, path: Path, color: str) -> Path | None:
    if not hist:
        return None
    edges, counts = hist["edges"], hist["counts"]
    fig, ax = plt.subplots(layout="constrained", figsize=(7, 3.2))
    ax.bar(edges[:-1], counts, width=[max(b - a, 1) for a, b in zip(edges[:-1], edges[1:])], align="edge",
           color=color, edgecolor="white")
    ax.set_xscale("symlog" if edges[0] == 0 else "log", **({"linthresh": 1} if edges[0] == 0 else {}))
    ax.axvline(hist["median"], color="black", lw=1, ls="--")
    ax.text(hist["median"], max(counts) * 0.95, f" median {hist['median']:,.0f}", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("documents")
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def _bytes_per_token(figures: dict, path: Path) -> Path | None:
    return _language_bars(figures, "bytes_per_token", "UTF-8 bytes per token (higher = the tokenizer fits the language better)",
                          "Bytes per token per language", path)


def _clusters(figures: dict, path: Path) -> Path | None:
    sizes = {k: v for k, v in (figures["duplicates"].get("cluster_sizes") or {}).items() if k != "1" and v}
    if not sizes:
        return None
    fig, ax = plt.subplots(layout="constrained", figsize=(7, 3.2))
    xs = sorted(sizes, key=size_order)
    ax.bar(xs, [sizes[x] for x in xs], color=ORANGE)
    ax.set_yscale("log")
    ax.set_xlabel("documents in the cluster")
    ax.set_ylabel("clusters")
    ax.set_title("Duplicate cluster sizes")
    if len(xs) > 20:
        ax.set_xticks(range(0, len(xs), max(1, len(xs) // 20)))
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def _pii(figures: dict, path: Path) -> Path | None:
    pii = {k: v for k, v in (figures.get("pii") or {}).items() if v}
    if not pii:
        return None
    fig, ax = plt.subplots(layout="constrained", figsize=(6, 0.35 * len(pii) + 1.2))
    ax.barh(range(len(pii)), list(pii.values()), color=GREY)
    ax.set_yticks(range(len(pii)), list(pii))
    ax.invert_yaxis()
    ax.set_xlabel("spans replaced")
    ax.set_title("PII replaced, by type")
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def _quality(figures: dict, path: Path) -> Path | None:
    """Share of each source's scored documents per score bin, the threshold as a dashed line."""
    q = figures.get("quality")
    if not q or not any(s.get("scored") for s in q["sources"].values()):
        return None
    fig, ax = plt.subplots(layout="constrained", figsize=(8, 3.4))
    for name, s in sorted(q["sources"].items()):
        counts = s["counts"]
        total = sum(counts) or 1
        bins = len(counts)
        edges = [i / bins for i in range(bins + 1)]
        ax.stairs([c / total for c in counts], edges, label=f"{name} ({total:,} docs)", linewidth=1.8)
    ax.axvline(q["threshold"], color="black", linestyle="--", linewidth=1)
    ax.text(q["threshold"], ax.get_ylim()[1] * 0.95, f" threshold {q['threshold']:g}", va="top", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"quality score ({q['name']}: {q['model']})")
    ax.set_ylabel("share of the source's documents")
    ax.set_title("Learned quality score per source")
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def write_charts(figures: dict, assets_dir: str | Path) -> dict[str, str]:
    """Draw every chart the figures allow into assets_dir; returns {chart: file name}."""
    assets_dir = Path(assets_dir)
    assets_dir.mkdir(parents=True, exist_ok=True)
    charts = {
        "funnel": lambda p: _funnel(figures, p),
        "filters": lambda p: _filters(figures, p),
        "languages": lambda p: _languages(figures, p),
        "lengths": lambda p: _histogram(figures["lengths"]["histogram"], "Document length", "UTF-8 bytes per document", p, BLUE),
        "token_lengths": lambda p: _histogram(figures["tokens"].get("length_histogram"), "Tokens per document",
                                              "tokens per document (end-of-text included)", p, BLUE),
        "bytes_per_token": lambda p: _bytes_per_token(figures, p),
        "clusters": lambda p: _clusters(figures, p),
        "pii": lambda p: _pii(figures, p),
        "quality": lambda p: _quality(figures, p),
    }
    written = {}
    for name, draw in charts.items():
        path = assets_dir / f"{name}.png"
        if draw(path) is not None:
            written[name] = path.name
        elif path.exists():
            path.unlink()  # a chart from an earlier card that no longer applies
    return written
