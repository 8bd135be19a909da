"""Data cards: the corpus's story, generated from its typed records and Parquet files.

The card is written as `DIR/README.md` (so the output folder is a ready Hugging Face
dataset repository, YAML metadata first), its charts as `DIR/<name>_assets/*.png`, and
every figure as `DIR/card.json`. With `data_cards_dir`, the same card is copied to
`data_cards/<name>.md` (charts in `data_cards/<name>_assets/`, figures in
`data_cards/<name>.json`).

    figures.py   every figure, gathered once from the manifest (and Parquet where no stage records it)
    markdown.py  the Markdown card and its Hugging Face metadata
    charts.py    the PNG charts
    html.py      a self-contained HTML page (`opencorpus card DIR --html`)
    terminal.py  rich tables (`opencorpus card DIR`)
    diff.py      two corpora side by side (`opencorpus card --diff A B`)
    write.py     writing the card and its copy; models trained on the corpus (models.json)
    format.py    numbers and table cells for people, shared by the renderings

Modules depend downwards only (format, figures <- markdown, charts <- html, write <-
terminal, diff); this file re-exports the public API.
"""
from pipeline.card.diff import diff_cards
from pipeline.card.figures import collect_figures
from pipeline.card.html import write_html
from pipeline.card.markdown import card_metadata, funnel_markdown, render_card, render_markdown
from pipeline.card.terminal import print_summary
from pipeline.card.write import add_finetune_entry, add_model_entry, assets_dir, load_figures, rewrite_card, write_card

__all__ = ["add_finetune_entry", "add_model_entry", "assets_dir", "card_metadata", "collect_figures", "diff_cards",
           "funnel_markdown", "load_figures", "print_summary", "render_card", "render_markdown", "rewrite_card",
           "write_card", "write_html"]
