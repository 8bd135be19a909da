"""Compare two corpora (`opencorpus card --diff A B`): the basis of data ablations.

Side by side, as Markdown: what differs in the recipes, sizes, the funnel, what each
filter removed, languages, duplicate rates, and the evaluation of the models trained on
each (matched by preset, so a row compares like with like).
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.card.figures import kept_share
from pipeline.card.format import cell, count, mb, pct
from pipeline.card.write import load_figures

TOP_LANGUAGES = 12


def _ratio(a, b) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not a:
        return "n/a"
    return f"{b / a:.3f}"


def _delta(a, b, fmt=count) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return "n/a"
    d = b - a
    return ("+" if d > 0 else "") + fmt(d) if d else "0"


def _row(cells) -> str:
    return "| " + " | ".join(cell(c) for c in cells) + " |"


def _head(cols: list[str], align: str) -> list[str]:
    return [_row(cols), "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]


def _flatten(d, prefix="") -> dict:
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(d, list) and d and all(isinstance(x, dict) and "name" in x for x in d):
        for x in d:
            out.update(_flatten(x, f"{prefix}[{x['name']}]"))
    else:
        out[prefix] = d
    return out


def _recipe_diff(dir_a: Path, dir_b: Path) -> list[str]:
    def recipe(d: Path) -> dict:
        m = d / "manifest.json"
        return json.loads(m.read_text(encoding="utf-8")).get("recipe") or {} if m.is_file() else {}

    ra, rb = recipe(dir_a), recipe(dir_b)
    sa = {s["name"]: s for s in ra.get("sources") or [] if isinstance(s, dict) and "name" in s}
    sb = {s["name"]: s for s in rb.get("sources") or [] if isinstance(s, dict) and "name" in s}
    rows = []
    for name in sorted(sa.keys() ^ sb.keys()):  # a source in one corpus only: one row, not one per option
        s = sa.get(name) or sb.get(name)
        desc = f"{s.get('type')} source" + (f", license {s['license']}" if s.get("license") else "")
        rows.append((f"sources[{name}]", desc if name in sa else "—", desc if name in sb else "—"))
    fa = _flatten(ra | {"sources": [s for n, s in sa.items() if n in sb]})
    fb = _flatten(rb | {"sources": [s for n, s in sb.items() if n in sa]})
    for k in sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k) and k not in ("name", "description")):
        rows.append((k, json.dumps(fa[k], ensure_ascii=False) if k in fa else "—",
                     json.dumps(fb[k], ensure_ascii=False) if k in fb else "—"))
    out = ["## Recipe differences", ""]
    if not rows:
        return out + ["The recipes are identical (apart from name and description).", ""]
    out += _head(["Setting", "A", "B"], "lll")
    out += [_row(r) for r in rows[:60]]
    if len(rows) > 60:
        out.append(f"\n… and {len(rows) - 60} more settings differ.")
    return out + [""]


def _sizes(a: dict, b: dict) -> list[str]:
    def median(f, key):
        h = f[key]["histogram"] if key == "lengths" else f["tokens"].get("length_histogram")
        return h["median"] if h else None

    rows = [
        ("documents", a["summary"].get("docs"), b["summary"].get("docs"), count),
        ("text (bytes)", a["summary"].get("bytes"), b["summary"].get("bytes"), count),
        ("tokens, train", a["tokens"].get("tokens_train"), b["tokens"].get("tokens_train"), count),
        ("tokens, validation", a["tokens"].get("tokens_val"), b["tokens"].get("tokens_val"), count),
        ("median document (bytes)", median(a, "lengths"), median(b, "lengths"), count),
        ("median document (tokens)", median(a, "tokens"), median(b, "tokens"), count),
        ("bytes per token", a["tokens"].get("bytes_per_token"), b["tokens"].get("bytes_per_token"), lambda x: f"{x:.3f}"),
        ("sources", len(a["sources"]), len(b["sources"]), count),
        ("languages", len(a["languages"]["rows"]), len(b["languages"]["rows"]), count),
    ]
    out = ["## Sizes", ""] + _head(["", "A", "B", "B − A", "B / A"], "lrrrr")
    for name, x, y, fmt in rows:
        fx = "n/a" if x is None else fmt(x)
        fy = "n/a" if y is None else fmt(y)
        out.append(_row([name, fx, fy, _delta(x, y, fmt), _ratio(x, y)]))
    return out + [""]


def _funnel(a: dict, b: dict) -> list[str]:
    sa = {s["stage"]: s for s in a["funnel"]["stages"]}
    sb = {s["stage"]: s for s in b["funnel"]["stages"]}
    out = ["## Funnel", ""] + _head(["Stage", "A in → out", "A kept", "B in → out", "B kept", "Kept, B − A"], "lrrrrr")

    def kept(s):
        return kept_share(s) if s else None

    for stage in list(dict.fromkeys(list(sa) + list(sb))):
        x, y = sa.get(stage), sb.get(stage)
        ka, kb = kept(x), kept(y)
        out.append(_row([stage, f"{count(x['docs_in'])} → {count(x['docs_out'])}" if x else "—", pct(ka),
                         f"{count(y['docs_in'])} → {count(y['docs_out'])}" if y else "—", pct(kb),
                         f"{(kb - ka) * 100:+.2f} pp" if ka is not None and kb is not None else "n/a"]))
    out.append("")
    fa = {(f["stage"], f["filter"]): f for f in a["funnel"]["filters"]}
    fb = {(f["stage"], f["filter"]): f for f in b["funnel"]["filters"]}
    keys = list(dict.fromkeys(list(fa) + list(fb)))
    if keys:
        out += ["### Removed per filter", ""] + _head(["Stage", "Filter", "A docs", "B docs", "B − A", "A text", "B text"], "llrrrrr")
        for k in keys:
            x, y = fa.get(k, {}), fb.get(k, {})
            out.append(_row([k[0], k[1], count(x.get("docs", 0)), count(y.get("docs", 0)), _delta(x.get("docs", 0), y.get("docs", 0)),
                             mb(x.get("bytes")) if x else "—", mb(y.get("bytes")) if y else "—"]))
        out.append("")
    return out


def _languages(a: dict, b: dict) -> list[str]:
    la = {r["language"]: r for r in a["languages"]["rows"]}
    lb = {r["language"]: r for r in b["languages"]["rows"]}
    if not la and not lb:
        return ["## Languages", "", "_Not recorded for either corpus._", ""]
    order = sorted(la.keys() | lb.keys(), key=lambda k: (-max((la.get(k) or {}).get("docs", 0), (lb.get(k) or {}).get("docs", 0)), k))
    out = ["## Languages", ""] + _head(["Language", "A docs", "A share", "B docs", "B share", "Share, B − A", "A bytes/token", "B bytes/token"], "lrrrrrrr")

    def bpt(r):
        return "n/a" if not r or r.get("bytes_per_token") is None else f"{r['bytes_per_token']:.2f}"

    for lang in order[:TOP_LANGUAGES]:
        x, y = la.get(lang), lb.get(lang)
        sx, sy = (x or {}).get("share") or 0.0, (y or {}).get("share") or 0.0
        out.append(_row([lang, count((x or {}).get("docs", 0)), pct(sx), count((y or {}).get("docs", 0)), pct(sy),
                         f"{(sy - sx) * 100:+.2f} pp", bpt(x), bpt(y)]))
    if len(order) > TOP_LANGUAGES:
        out.append(f"\n… and {len(order) - TOP_LANGUAGES} more languages.")
    return out + [""]


def _duplicates(a: dict, b: dict) -> list[str]:
    da, db = a["duplicates"], b["duplicates"]
    out = ["## Duplicates", ""] + _head(["", "A", "B"], "lrr")
    out.append(_row(["entering dedup", count(da.get("docs_in")), count(db.get("docs_in"))]))
    out.append(_row(["exact removed", f"{count(da.get('exact_removed'))} ({pct(da.get('exact_rate'))})",
                     f"{count(db.get('exact_removed'))} ({pct(db.get('exact_rate'))})"]))
    out.append(_row(["near removed", f"{count(da.get('near_removed'))} ({pct(da.get('near_rate'))})",
                     f"{count(db.get('near_removed'))} ({pct(db.get('near_rate'))})"]))
    out.append(_row(["clusters (2+ documents)", count(da.get("clusters")), count(db.get("clusters"))]))
    return out + [""]


def _models(a: dict, b: dict) -> list[str]:
    ma = [m for m in a.get("models") or [] if m.get("kind", "pretrain") == "pretrain"]
    mb = [m for m in b.get("models") or [] if m.get("kind", "pretrain") == "pretrain"]
    out = ["## Models trained on each", ""]
    if not ma and not mb:
        return out + ["No evaluated model on either corpus yet (`opencorpus eval RUN_DIR` records one).", ""]

    def best(models, preset):
        # lowest bits per byte, or lowest loss where bits per byte is not measured (masked LM)
        ms = [m for m in models if (m.get("preset"), m.get("objective") or "clm") == preset
              and isinstance(m.get("val_bits_per_byte", m.get("val_loss")), (int, float))]
        key = lambda m: (m.get("val_bits_per_byte") if m.get("val_bits_per_byte") is not None else float("inf"), m.get("val_loss") or 0)  # noqa: E731
        return min(ms, key=key) if ms else None

    def fmt(x, d=4):
        return "n/a" if not isinstance(x, (int, float)) else f"{x:.{d}f}"

    out += ["Best run per preset and objective (lowest validation bits per byte; bits per byte compares across "
            "tokenizers, loss only within one):", ""]
    out += _head(["Preset", "A run", "A tokens seen", "A val loss", "A bits/byte", "B run", "B tokens seen", "B val loss",
                  "B bits/byte", "Bits/byte, B − A"], "llrrrlrrrr")
    for preset in sorted({(m.get("preset"), m.get("objective") or "clm") for m in ma + mb if m.get("preset")}):
        x, y = best(ma, preset), best(mb, preset)
        both = x and y and x.get("val_bits_per_byte") is not None and y.get("val_bits_per_byte") is not None
        d = f"{y['val_bits_per_byte'] - x['val_bits_per_byte']:+.4f}" if both else "n/a"
        out.append(_row([preset[0] if preset[1] == "clm" else f"{preset[0]} ({preset[1]})", (x or {}).get("run", "—"), count((x or {}).get("tokens_seen")), fmt((x or {}).get("val_loss")),
                         fmt((x or {}).get("val_bits_per_byte")), (y or {}).get("run", "—"), count((y or {}).get("tokens_seen")),
                         fmt((y or {}).get("val_loss")), fmt((y or {}).get("val_bits_per_byte")), d]))
    out += ["", "Each model is evaluated on its own corpus's validation split: a difference mixes the data's "
            "effect on the model with the validation text's difficulty; evaluate both runs on one corpus "
            "(`opencorpus eval RUN_DIR --data DIR`) for a like-for-like number.", ""]
    return out


def diff_cards(dir_a: str | Path, dir_b: str | Path) -> str:
    """Markdown comparison of corpus A and corpus B (figures from card.json, or recounted)."""
    dir_a, dir_b = Path(dir_a), Path(dir_b)
    a, b = load_figures(dir_a), load_figures(dir_b)
    lines = [f"# Corpus comparison: A = {a['name']}, B = {b['name']}", "",
             f"- A: `{dir_a}` (recipe hash `{(a.get('recipe_hash') or '?')[:12]}`, built {a.get('created')})",
             f"- B: `{dir_b}` (recipe hash `{(b.get('recipe_hash') or '?')[:12]}`, built {b.get('created')})", ""]
    lines += _recipe_diff(dir_a, dir_b)
    lines += _sizes(a, b)
    lines += _funnel(a, b)
    lines += _languages(a, b)
    lines += _duplicates(a, b)
    lines += _models(a, b)
    return "\n".join(lines)
