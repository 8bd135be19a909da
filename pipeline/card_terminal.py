"""The card on the terminal: a few rich tables (`opencorpus card DIR`)."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.card import _int, _mb, _pct, load_figures
from pipeline.card_stats import kept_share

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
    t.add_row("documents", _int(s.get("docs")))
    t.add_row("text", _mb(s.get("bytes")))
    t.add_row("tokens", f"{_int(s.get('tokens'))} ({_int(tok.get('tokens_train'))} train / {_int(tok.get('tokens_val'))} val)")
    t.add_row("languages", ", ".join(s.get("languages") or [])[:80] or "not recorded")
    t.add_row("licenses", ", ".join(s.get("licenses") or {})[:80] or "not recorded")
    t.add_row("built", str(f.get("created")))
    t.add_row("reproduce", str(f.get("command")))
    out.append(t)

    t = _table("Sources", ["source", "type", "license", "docs read", "docs kept", "kept text", "tokens"], right_from=3)
    for src in f["sources"]:
        t.add_row(src["name"], src.get("type") or "", src.get("license") or "not stated", _int(src.get("docs_in")),
                  _int(src.get("final_docs")), _mb(src.get("final_bytes")), _int(src.get("tokens")))
    out.append(t)

    t = _table("Funnel", ["stage", "docs in", "docs out", "rejected", "kept", "text in", "text out", "seconds"])
    for st in f["funnel"]["stages"]:
        kept = kept_share(st)
        t.add_row(st["stage"], _int(st["docs_in"]), _int(st["docs_out"]), _int(st["docs_rejected"]), _pct(kept),
                  _mb(st["bytes_in"]), _mb(st["bytes_out"]), "n/a" if st.get("seconds") is None else f"{st['seconds']:.1f}")
    out.append(t)

    if f["funnel"]["filters"]:
        t = _table("Removed per filter", ["stage", "filter", "docs", "text"], right_from=2)
        for x in f["funnel"]["filters"]:
            t.add_row(x["stage"], x["filter"], _int(x["docs"]), _mb(x.get("bytes")))
        out.append(t)

    langs = f["languages"]["rows"]
    if langs:
        t = _table(f"Languages (top {TOP})" if len(langs) > TOP else "Languages", ["language", "docs", "share", "bytes/token"])
        for r in langs[:TOP]:
            t.add_row(r["language"], _int(r["docs"]), _pct(r.get("share")),
                      "n/a" if r.get("bytes_per_token") is None else f"{r['bytes_per_token']:.2f}")
        out.append(t)

    d = f["duplicates"]
    t = _table("Duplicates", ["", "docs", "rate"])
    t.add_row("entering dedup", _int(d.get("docs_in")), "")
    t.add_row("exact removed", _int(d.get("exact_removed")), _pct(d.get("exact_rate")))
    t.add_row("near removed", _int(d.get("near_removed")), _pct(d.get("near_rate")))
    t.add_row("clusters (2+)", _int(d.get("clusters")), "")
    out.append(t)

    if f.get("pii"):
        t = _table("PII replaced", ["type", "spans"])
        for k, v in f["pii"].items():
            t.add_row(k, _int(v))
        out.append(t)

    models = f.get("models") or []
    if models:
        t = _table("Models trained on this corpus", ["run", "preset", "tokens seen", "val loss", "bits/byte"], right_from=2)
        for m in models:
            loss, bpb = m.get("val_loss"), m.get("val_bits_per_byte")
            t.add_row(m.get("run", ""), m.get("preset") or m.get("kind", ""), _int(m.get("tokens_seen")),
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
