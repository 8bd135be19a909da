"""Writing a card: README.md, charts and card.json in the corpus folder (and a copy in
data_cards/), and the models trained on the corpus (`models.json`, typed as
pipeline.records.ModelList) added after `opencorpus eval` or `opencorpus finetune`.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

from pipeline.card.charts import write_charts
from pipeline.card.figures import FIGURES_FILE, collect_figures, read_models
from pipeline.card.markdown import render_markdown
from pipeline.io import write_json, write_text
from pipeline.records import EvalRecord, FinetuneRecord, Manifest, ModelEntry, ModelList, RecordError, RunRecord


def assets_dir(name: str) -> str:
    """Folder of a card's charts, next to the card (the same name in DIR and in data_cards/)."""
    return f"{name}_assets"


MODEL_PATHS = ("run_dir", "evaluated_on", "report")


def _portable(figures: dict, charts: dict, card_dir: Path) -> dict:
    """The figures as written next to a card: the models' folders relative to the card's
    folder, so a published or committed card.json holds no path of the machine that made it."""
    models = []
    for m in figures.get("models") or []:
        m = dict(m)
        for key in MODEL_PATHS:
            if m.get(key) and os.path.isabs(m[key]):
                m[key] = Path(os.path.relpath(m[key], card_dir.resolve())).as_posix()
        models.append(m)
    return figures | {"models": models, "charts": charts}


def _write_all(out_dir: Path, figures: dict, charts: dict, data_cards_dir: Path | None) -> Path:
    name = figures["name"]
    path = write_text(render_markdown(figures, assets_dir(name), charts, out_dir), out_dir / "README.md")
    write_json(_portable(figures, charts, out_dir), out_dir / FIGURES_FILE)
    if data_cards_dir is not None:
        data_cards_dir = Path(data_cards_dir)
        assets = data_cards_dir / assets_dir(name)
        if assets.exists():
            shutil.rmtree(assets)
        if charts:
            assets.mkdir(parents=True)
            for file in charts.values():
                shutil.copyfile(out_dir / assets_dir(name) / file, assets / file)
        write_text(render_markdown(figures, assets_dir(name), charts, data_cards_dir), data_cards_dir / f"{name}.md")
        write_json(_portable(figures, charts, data_cards_dir), data_cards_dir / f"{name}.json")
    return path


def write_card(out_dir: Path, manifest: Manifest, data_cards_dir: Path | None = None) -> Path:
    """Gather the corpus's figures, draw its charts and write its card (and the copy)."""
    out_dir = Path(out_dir)
    figures = collect_figures(out_dir, manifest)
    charts = write_charts(figures, out_dir / assets_dir(figures["name"]))
    return _write_all(out_dir, figures, charts, data_cards_dir)


def _default_copy_dir(name: str) -> Path | None:
    """./data_cards when it holds this corpus's copy (the corpus flow runs from the repo root)."""
    d = Path("data_cards")
    return d if (d / f"{name}.md").is_file() else None


def rewrite_card(corpus_dir: str | Path, data_cards_dir: str | Path | None = None) -> Path:
    """Regenerate DIR's card from its manifest.json and Parquet files (`opencorpus card DIR --write`)."""
    corpus_dir = Path(corpus_dir)
    manifest = _manifest_of(corpus_dir)
    copy = Path(data_cards_dir) if data_cards_dir is not None else _default_copy_dir(manifest.name)
    return write_card(corpus_dir, manifest, copy)


def _manifest_of(corpus_dir: Path) -> Manifest:
    path = corpus_dir / Manifest.file_name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest.json; build the corpus first (opencorpus run RECIPE)")
    return Manifest.load(path)


def load_figures(corpus_dir: str | Path) -> dict:
    """The figures of a corpus: its card.json when written, else gathered from its manifest and files."""
    corpus_dir = Path(corpus_dir)
    path = corpus_dir / FIGURES_FILE
    if path.is_file():
        figures = json.loads(path.read_text(encoding="utf-8"))
        figures["models"] = read_models(corpus_dir)  # newer than the card when a run was added since
        return figures
    return collect_figures(corpus_dir, _manifest_of(corpus_dir))


# ---------------------------------------------------------------- models trained on the corpus


def _upsert_entry(corpus_dir: Path, entry: ModelEntry, data_cards_dir: Path | None) -> ModelEntry:
    """Add or replace (same kind and run folder) an entry in models.json and rewrite the card."""
    path = corpus_dir / ModelList.file_name
    models = ModelList.load(path).models if path.is_file() else []
    models = [m for m in models if not (m.run_dir == entry.run_dir and m.kind == entry.kind)] + [entry]
    models.sort(key=lambda m: (m.kind, m.run, m.run_dir))
    ModelList(models=models).write(path)
    if (corpus_dir / Manifest.file_name).is_file():
        figures = load_figures(corpus_dir)
        charts = figures.pop("charts", None)
        if charts is None:
            charts = write_charts(figures, corpus_dir / assets_dir(figures["name"]))
        if data_cards_dir is None:
            data_cards_dir = _default_copy_dir(figures["name"])
        _write_all(corpus_dir, figures, charts, data_cards_dir)
    return entry


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _corpus_dir(data_dir: str | None, record_path: Path) -> Path:
    if not data_dir:
        raise RecordError(f"{record_path}: does not name the corpus it was trained on (corpus.data_dir)")
    if not (Path(data_dir) / Manifest.file_name).is_file():
        raise FileNotFoundError(f"{record_path}: corpus folder {data_dir} has no manifest.json")
    return Path(data_dir).resolve()


def add_model_entry(run_dir: str | Path, data_cards_dir: str | Path | None = None, ablation: str | None = None) -> ModelEntry:
    """Record an evaluated run (eval.json + run.json) in the card of the corpus it trained on;
    `ablation`: the ablation that trained it (its report is ablations/<name>/report.md).

    Idempotent: evaluating the same run again replaces its entry. Returns the entry."""
    run_dir = Path(run_dir).resolve()
    ev = EvalRecord.load(run_dir / EvalRecord.file_name)
    run = RunRecord.load(run_dir / RunRecord.file_name)
    corpus_dir = _corpus_dir(run.corpus.data_dir, run_dir / RunRecord.file_name)
    report = run_dir / "report.md"
    entry = ModelEntry(
        kind="pretrain", run=run_dir.name, run_dir=str(run_dir), preset=run.preset,
        objective=ev.objective,  # a masked-LM loss is not a next-token loss: the card keeps them apart
        n_params=ev.n_params, step=ev.step, tokens_seen=ev.tokens_seen, val_loss=ev.val_loss,
        val_perplexity=ev.val_perplexity, val_bits_per_byte=ev.val_bits_per_byte, val_tokens=ev.val_tokens,
        evaluated_on=ev.corpus.data_dir, report=str(report) if report.is_file() else None,
        manifest_sha256=run.corpus.manifest_sha256, mixture=run.mixture, ablation=ablation, recorded_at=_now(),
    )
    return _upsert_entry(corpus_dir, entry, Path(data_cards_dir) if data_cards_dir else None)


def add_finetune_entry(ft_dir: str | Path, corpus_dir: str | Path | None = None,
                       data_cards_dir: str | Path | None = None) -> ModelEntry:
    """Record a fine-tuning result (`FT_DIR/eval.json`) in the card of the corpus it was
    pretrained on (or `corpus_dir`)."""
    ft_dir = Path(ft_dir).resolve()
    path = ft_dir / FinetuneRecord.file_name
    res = FinetuneRecord.load(path)
    corpus = Path(corpus_dir).resolve() if corpus_dir else _corpus_dir(res.corpus.data_dir, path)
    metrics = {k: v for k, v in res.dump().items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    report = ft_dir / "report.md"
    entry = ModelEntry(kind="finetune", run=ft_dir.name, run_dir=str(ft_dir), task=res.task, base=res.base_model,
                       metrics=metrics, report=str(report) if report.is_file() else None, recorded_at=_now())
    return _upsert_entry(corpus, entry, Path(data_cards_dir) if data_cards_dir else None)
