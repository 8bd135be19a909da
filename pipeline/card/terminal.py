"""The card on the terminal: a few rich tables (`opencorpus card DIR`)."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.card.figures import kept_share
from pipeline.card.format import count, mb, pct
from pipeline.card.write import load_figures

TOP = 10


def _table(title: str, columns: list[str], right_from: int = 1) -> Table:
    t = Table(title=title, title_justify="left", title_style="bold")
    for i, c in enumerate(columns):
        t.add_column(c, justify="right" if i >= right_from else "left")
    return t


def summary_tables(figures: dict) -> list[Table]:
    f = figures
    s, tok = f["summary"], f["tokens"]
    out = []
    t = _table(f"Corpus {f['name']}", ["", "value"], right_from=9)
    t.add_row("documents", count(s.get("docs")))
    t.add_row("text", mb(s.get("bytes")))
    t.add_row("tokens", f"{count(s.get('tokens'))} ({count(tok.get('tokens_train'))} train / {count(tok.get('tokens_val'))} val)")
    t.add_row("languages", ", ".join(s.get("languages") or [])[:80] or "not recorded")
    t.add_row("licenses", ", ".join(s.get("licenses") or {})[:80] or "not recorded")
    t.add_row("built", str(f.get("created")))
    t.add_row("reproduce", str(f.get("command")))
    out.append(t)

    t = _table("Sources", ["source", "type", "license", "docs read", "docs kept", "kept text", "tokens"], right_from=3)
    for src in f["sources"]:
        t.add_row(src["name"], src.get("type") or "", src.get("license") or "not stated", count(src.get("docs_in")),
                  count(src.get("final_docs")), mb(src.get("final_bytes")), count(src.get("tokens")))
    out.append(t)

    t = _table("Funnel", ["stage", "docs in", "docs out", "rejected", "kept", "text in", "text out", "seconds"])
    for st in f["funnel"]["stages"]:
        kept = kept_share(st)
        t.add_row(st["stage"], count(st["docs_in"]), count(st["docs_out"]), count(st["docs_rejected"]), pct(kept),
                  mb(st["bytes_in"]), mb(st["bytes_out"]), "n/a" if st.get("seconds") is None else f"{st['seconds']:.1f}")
    out.append(t)

    if f["funnel"]["filters"]:
        t = _table("Removed per filter", ["stage", "filter", "docs", "text"], right_from=2)
        for x in f["funnel"]["filters"]:
            t.add_row(x["stage"], x["filter"], count(x["docs"]), mb(x.get("bytes")))
        out.append(t)

    langs = f["languages"]["rows"]
    if langs:
        t = _table(f"Languages (top {TOP})" if len(langs) > TOP else "Languages", ["language", "docs", "share", "bytes/token"])
        for r in langs[:TOP]:
            t.add_row(r["language"], count(r["docs"]), pct(r.get("share")),
                      "n/a" if r.get("bytes_per_token") is None else f"{r['bytes_per_token']:.2f}")
        out.append(t)

    d = f["duplicates"]
    t = _table("Duplicates", ["", "docs", "rate"])
    t.add_row("entering dedup", count(d.get("docs_in")), "")
    t.add_row("exact removed", count(d.get("exact_removed")), pct(d.get("exact_rate")))
    t.add_row("near removed", count(d.get("near_removed")), pct(d.get("near_rate")))
    t.add_row("clusters (2+)", count(d.get("clusters")), "")
    out.append(t)

    if f.get("pii"):
        t = _table("PII replaced", ["type", "spans"])
        for k, v in f["pii"].items():
            t.add_row(k, count(v))
        out.append(t)

    models = f.get("models") or []
    if models:
        t = _table("Models trained on this corpus", ["run", "preset", "tokens seen", "val loss", "bits/byte"], right_from=2)
        for m in models:
            loss, bpb = m.get("val_loss"), m.get("val_bits_per_byte")
            t.add_row(m.get("run", ""), m.get("preset") or m.get("kind", ""), count(m.get("tokens_seen")),
                      "n/a" if loss is None else f"{loss:.4f}", "n/a" if bpb is None else f"{bpb:.4f}")
        out.append(t)
    return out


def print_summary(corpus_dir: str | Path, console: Console | None = None) -> None:
    """Print DIR's card as terminal tables (figures from card.json, or recounted)."""
    console = console or Console()
    figures = load_figures(corpus_dir)
    for table in summary_tables(figures):
        console.print(table)
    notes = figures.get("limitations") or []
    if notes:
        console.print("[bold]Limitations[/bold]")
        for n in notes:
            console.print(f" • {n}")
    card = Path(corpus_dir) / "README.md"
    if card.is_file():
        console.print(f"Full card: {card}")
