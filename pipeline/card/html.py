"""The data card as one self-contained HTML page (`opencorpus card DIR --html`).

The page is the card's Markdown rendered with markdown-it (CommonMark + tables), its
charts inlined as base64 `data:` URIs and its style inline, so it can be mailed or
opened offline with nothing next to it. The YAML metadata becomes a small table.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from markdown_it import MarkdownIt

from pipeline.card.markdown import slug
from pipeline.io import write_text

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; margin: 0; background: #f6f8fa; }
main { max-width: 1060px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { border-bottom: 2px solid #3b6ea8; padding-bottom: 6px; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 4px; margin-top: 2em; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; vertical-align: top; }
th { background: #f0f3f6; }
td { max-width: 520px; overflow-wrap: anywhere; }
tr:nth-child(even) td { background: #fafbfc; }
code { background: #eff1f3; padding: 1px 4px; border-radius: 4px; font-size: 90%; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; padding: 10px; overflow-x: auto; }
pre code { background: none; padding: 0; }
img { max-width: 100%; border: 1px solid #eee; margin: 4px 0 12px; }
details { margin: 6px 0 12px; }
summary { cursor: pointer; color: #3b6ea8; }
.meta { font-size: 13px; color: #57606a; }
"""


def _inline_images(md: MarkdownIt, base_dir: Path):
    """Render every image whose file exists under base_dir as a base64 data URI."""
    default = md.renderer.rules.get("image")

    def image(renderer, tokens, idx, options, env):
        token = tokens[idx]
        src = token.attrGet("src") or ""
        path = (base_dir / src).resolve()
        if not src.startswith(("data:", "http:", "https:")) and path.is_file():
            mime = "image/png" if path.suffix.lower() == ".png" else "image/" + path.suffix.lower().lstrip(".")
            token.attrSet("src", f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii"))
        return default(tokens, idx, options, env) if default else renderer.renderToken(tokens, idx, options, env)

    md.add_render_rule("image", image)


def _heading_ids(md: MarkdownIt):
    """Give every heading the id its Markdown anchor has, so the card's contents links work."""

    def heading_open(renderer, tokens, idx, options, env):
        inline = tokens[idx + 1]
        tokens[idx].attrSet("id", slug("".join(t.content for t in inline.children or [])))
        return renderer.renderToken(tokens, idx, options, env)

    md.add_render_rule("heading_open", heading_open)


def _split_front_matter(text: str) -> tuple[str, str]:
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end != -1:
            return text[4:end], text[end + 5:]
    return "", text


def _meta_table(front: str) -> str:
    import yaml

    try:
        meta = yaml.safe_load(front) or {}
    except yaml.YAMLError:
        return ""
    rows = []
    for k, v in meta.items():
        if k == "configs":
            v = "; ".join(f"{c.get('config_name')}: " + ", ".join(f"{d['split']}={d['path']}" for d in c.get("data_files", []))
                          for c in v)
        elif isinstance(v, list):
            v = ", ".join(map(str, v))
        rows.append(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>")
    return ("<details class=\"meta\"><summary>Hugging Face metadata</summary><table>" + "".join(rows) + "</table></details>") if rows else ""


def render_html(markdown_text: str, base_dir: str | Path, title: str) -> str:
    """A complete HTML page from a card's Markdown; images resolve against base_dir."""
    front, body = _split_front_matter(markdown_text)
    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    _inline_images(md, Path(base_dir))
    _heading_ids(md)
    content = md.render(body)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)} — data card</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"{_meta_table(front)}\n{content}\n</main>\n</body>\n</html>\n"
    )


def write_html(corpus_dir: str | Path, out_path: str | Path | None = None) -> Path:
    """Write DIR's card as a self-contained HTML page (default DIR/card.html)."""
    corpus_dir = Path(corpus_dir)
    card = corpus_dir / "README.md"
    if not card.is_file():
        raise FileNotFoundError(f"{card}: no data card; build the corpus first (opencorpus run RECIPE)")
    out = Path(out_path) if out_path is not None else corpus_dir / "card.html"
    text = card.read_text(encoding="utf-8")
    title = corpus_dir.resolve().name
    for line in text.splitlines():
        if line.startswith("# "):
            title = line[2:].strip()
            break
    return write_text(render_html(text, corpus_dir, title), out)
