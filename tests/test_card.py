"""Data cards of a small real corpus built in the test (stage functions, no Prefect).

Every figure the card shows is recomputed here from manifest.json and the Parquet files
with polars, and the card's metadata goes through huggingface_hub and datasets."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from card_corpus import build_corpus, card_recipe

from pipeline.records import IngestStats, Manifest, RecordError, Stages

SECTIONS = [
    "## Summary", "## Sources", "## Processing funnel", "### Removed, per filter", "### Examples of removed documents",
    "## Languages, lengths and tokens", "### Languages", "### Document length", "### Tokens", "## Duplicates",
    "### Cluster sizes", "### Largest clusters", "## PII replaced", "## Models trained on this corpus",
    "## Limitations and licensing notes",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory, corpora):
    root = tmp_path_factory.mktemp("card")
    out = root / "corpus"
    manifest = build_corpus(out, root / "data_cards", card_recipe(corpora, root))
    return out, root / "data_cards", manifest.dump()  # as manifest.json holds it


def _figures(out: Path) -> dict:
    return json.loads((out / "card.json").read_text(encoding="utf-8"))


def _card(out: Path) -> str:
    return (out / "README.md").read_text(encoding="utf-8")


def _dedup(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "dedup" / "*.parquet").with_columns(pl.col("text").str.len_bytes().alias("bytes"))


def _tokens(out: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(out / "tokens" / s / "*.parquet").select("id", "n_tokens").with_columns(split=pl.lit(s))
                      for s in ("train", "val")])


def test_every_section_is_there(built):
    out, cards, manifest = built
    text = _card(out)
    for heading in SECTIONS:
        assert f"\n{heading}\n" in text, heading
    assert text.startswith("---\n")
    recipe_dir = Path(manifest["recipe_path"]).parent  # the card's paths are relative to it
    assert f"\n{manifest['command'].replace(str(recipe_dir) + '/', '')}\n" in text  # reproduction command
    assert manifest["recipe_hash"] in text
    assert "Not recorded" not in text  # this corpus records every stage


def test_summary_figures_match_parquet(built):
    out, _, manifest = built
    docs = _dedup(out)
    tok = _tokens(out)
    f = _figures(out)
    assert f["summary"]["docs"] == docs.height == manifest["stages"]["dedup"]["docs_out"]
    assert f["summary"]["bytes"] == int(docs["bytes"].sum()) == manifest["stages"]["dedup"]["bytes_out"]
    train, val = (int(tok.filter(pl.col("split") == s)["n_tokens"].sum()) for s in ("train", "val"))
    assert (f["tokens"]["tokens_train"], f["tokens"]["tokens_val"]) == (train, val)
    assert (train, val) == (manifest["stages"]["tokenize"]["tokens_train"], manifest["stages"]["tokenize"]["tokens_val"])
    text = _card(out)
    assert f"- Documents: {docs.height:,} (" in text
    assert f"- Tokens: {train + val:,} ({train:,} train / {val:,} validation" in text


def test_sources_match_parquet(built):
    out, _, manifest = built
    docs = _dedup(out)
    tok = _tokens(out).join(docs.select("id", "source"), on="id")
    f = _figures(out)
    text = _card(out)
    names = [s["name"] for s in manifest["recipe"]["sources"]]
    assert [s["name"] for s in f["sources"]] == names
    for s in f["sources"]:
        sub = docs.filter(pl.col("source") == s["name"])
        assert s["final_docs"] == sub.height
        assert s["final_bytes"] == int(sub["bytes"].sum())
        assert s["tokens"] == int(tok.filter(pl.col("source") == s["name"])["n_tokens"].sum())
        ingest = manifest["stages"]["ingest"]["sources"][s["name"]]
        assert s["docs_in"] == ingest["docs_in"]
        row = next(line for line in text.splitlines() if line.startswith(f"| {s['name']} |"))
        assert f"| {ingest['docs_in']:,} |" in row and f"| {sub.height:,} |" in row
        for p in ingest["provenance"]:  # every input file with its size and sha256
            entry = next(x for x in s["files"] if x["path"] == os.path.relpath(p["path"], Path(manifest["recipe_path"]).parent))
            assert entry["size"] == Path(p["path"]).stat().st_size
            assert f"`{entry['sha256']}`" in text
            assert len(entry["sha256"]) == 64


def test_funnel_and_filters_match_manifest_and_rejected(built):
    out, _, manifest = built
    text = _card(out)
    for name, s in manifest["stages"].items():
        assert f"| {name} | {s['docs_in']:,} | {s['docs_out']:,} | {s['docs_rejected']:,} |" in text
    rej = pl.read_parquet(out / "rejected" / "*.parquet")
    counts = {(r["stage"], r["filter"]): r["len"] for r in rej.group_by("stage", "filter").len().iter_rows(named=True)}
    f = _figures(out)
    assert {(x["stage"], x["filter"]): x["docs"] for x in f["funnel"]["filters"]} == counts
    for (stage, flt), n in counts.items():
        assert f"| {stage} | `{flt}` | {n:,} |" in text
    # every clean filter the stage reported is in the card with the same count
    for flt, st in manifest["stages"]["clean"]["filters"].items():
        assert counts.get(("clean", flt), 0) == st["docs"]
        if not st["docs"]:
            assert flt in _figures(out)["funnel"]["idle_filters"]["clean"]
    # examples are real rejected records, truncated
    for x in f["funnel"]["filters"]:
        for e in x["examples"]:
            src = rej.filter(pl.col("id") == e["id"])
            assert src.height >= 1 and e["reason"] in src["reason"].to_list()
            assert len(e["text"] or "") <= 240
    assert (out / "card-test_assets" / "funnel.png").is_file() and (out / "card-test_assets" / "filters.png").is_file()


def test_languages_lengths_tokens_match_parquet(built):
    out, _, _ = built
    docs = _dedup(out).with_columns(pl.col("language").fill_null("unknown"))
    tok = _tokens(out)
    f = _figures(out)
    want = {r["language"]: r["len"] for r in docs.group_by("language").len().iter_rows(named=True)}
    assert {r["language"]: r["docs"] for r in f["languages"]["rows"]} == want
    assert len(want) >= 4  # en, de, fr, ru, es pages
    joined = docs.join(tok, on="id")
    for r in f["languages"]["rows"]:
        sub = joined.filter(pl.col("language") == r["language"])
        assert r["bytes_per_token"] == pytest.approx(sub["bytes"].sum() / (sub["n_tokens"] - 1).sum(), rel=1e-3)
    # agrees with the tokenize stage's own count
    stage = json.loads((out / "manifest.json").read_text())["stages"]["tokenize"].get("bytes_per_token_per_language") or {}
    for lang, s in stage.items():
        row = next(r for r in f["languages"]["rows"] if r["language"] == lang)
        assert row["bytes_per_token"] == pytest.approx(s["bytes_per_token"], rel=1e-3)
    h = f["lengths"]["histogram"]
    assert sum(h["counts"]) == docs.height
    assert h["median"] == pytest.approx(float(docs["bytes"].median()))
    assert h["max"] == int(docs["bytes"].max())
    th = f["tokens"]["length_histogram"]
    assert sum(th["counts"]) == tok.height and th["max"] == int(tok["n_tokens"].max())
    text = _card(out)
    top = f["languages"]["rows"][0]
    assert f"| {top['language']} | {top['docs']:,} |" in text
    for chart in ("languages", "lengths", "token_lengths", "bytes_per_token"):
        assert f"](card-test_assets/{chart}.png)" in text


def test_duplicates_match_clusters(built):
    out, _, manifest = built
    cl = pl.read_parquet(out / "clusters" / "*.parquet")
    rej = pl.read_parquet(out / "rejected" / "dedup-*.parquet")
    f = _figures(out)["duplicates"]
    exact = rej.filter(pl.col("filter") == "exact_duplicate").height
    near = rej.filter(pl.col("filter") == "near_duplicate").height
    assert exact >= 2 and near >= 2  # the mirror source copies and edits web pages
    assert (f["exact_removed"], f["near_removed"]) == (exact, near)
    assert (exact, near) == (manifest["stages"]["dedup"]["exact_removed"], manifest["stages"]["dedup"]["near_removed"])
    docs_in = manifest["stages"]["dedup"]["docs_in"]
    assert f["exact_rate"] == pytest.approx(exact / docs_in)
    sizes = cl.group_by("cluster_id").len().filter(pl.col("len") > 1)
    want = {str(k): v for k, v in sizes.group_by("len").len(name="n").select("len", "n").iter_rows()}
    got = {k: v for k, v in f["cluster_sizes"].items() if k != "1"}
    assert got == want
    assert f["cluster_sizes"]["1"] == docs_in - int(sizes["len"].sum())
    biggest = sizes.sort(["len", "cluster_id"], descending=[True, False]).row(0, named=True)
    top = f["largest"][0]
    assert (top["cluster_id"], top["size"]) == (biggest["cluster_id"], biggest["len"])
    kept = cl.filter((pl.col("cluster_id") == biggest["cluster_id"]) & pl.col("kept"))["id"].to_list()
    assert top["kept"] == kept[0]
    assert all(m["text"] for m in top["members"])  # examples carry their text
    text = _card(out)
    assert f"- Exact duplicates removed: {exact:,} (" in text and f"- Near duplicates removed: {near:,} (" in text
    assert f"**Cluster `{top['cluster_id']}`: {top['size']} documents" in text


def test_pii_and_limitations(built):
    out, _, manifest = built
    f = _figures(out)
    pii = {k: v for k, v in manifest["stages"]["clean"]["pii"].items()}
    assert sum(pii.values()) > 0  # the generated web pages carry e-mail and IP addresses
    assert f["pii"] == dict(sorted(pii.items(), key=lambda kv: (-kv[1], kv[0])))
    text = _card(out)
    for k, v in pii.items():
        assert f"| {k} | {v:,} |" in text
    limits = "\n".join(f["limitations"])
    assert "Mixed licenses" in limits  # MIT, Apache-2.0 and the Common Crawl terms
    assert "mirror" in limits  # the mirror source states no license
    assert "Small corpus" in limits
    for note in f["limitations"]:
        assert f"- {note}" in text
    # examples of removed documents show no PII (whatever the stage that removed them did)
    email = re.compile(r"[\w.%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}")
    assert not email.findall(text)
    from pipeline.card.figures import truncate

    shown = truncate("Write to webmaster@atlantis-fleet.org or call +1 202 555 0143.   Thanks.")
    assert shown == "Write to <EMAIL_ADDRESS> or call <PHONE_NUMBER>. Thanks."


def test_metadata_passes_huggingface_hub(built):
    from huggingface_hub import DatasetCard, DatasetCardData

    out, cards, _ = built
    for path in (out / "README.md", cards / "card-test.md"):
        card = DatasetCard.load(path)
        assert isinstance(card.data, DatasetCardData)
        meta = card.data.to_dict()
        assert meta["pretty_name"] == "card-test"
        assert set(meta["license"]) == {"mit", "apache-2.0", "other"} and meta["license_name"]
        assert "en" in meta["language"] and all(re.fullmatch(r"[a-z]{2,3}", x) for x in meta["language"])
        assert meta["size_categories"] == ["n<1K"] and meta["task_categories"] == ["text-generation"]
        assert {c["config_name"] for c in meta["configs"]} == {"documents", "tokens", "rejected", "clusters"}
        # round trip through the typed model keeps every field
        again = DatasetCardData(**meta).to_dict()
        assert again["configs"] == meta["configs"] and again["license"] == meta["license"]


def test_metadata_configs_load_with_datasets(built, tmp_path):
    import datasets

    out, _, _ = built
    cache = str(tmp_path / "hf-cache")  # the default cache can hold an earlier corpus at a reused path
    docs = datasets.load_dataset(str(out), "documents", split="train", cache_dir=cache)
    assert docs.num_rows == _dedup(out).height
    val = datasets.load_dataset(str(out), "tokens", split="validation", cache_dir=cache)
    assert val.num_rows == _tokens(out).filter(pl.col("split") == "val").height


def test_charts_linked_in_both_places_and_json_copy(built):
    out, cards, _ = built
    for md_path in (out / "README.md", cards / "card-test.md"):
        links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md_path.read_text(encoding="utf-8"))
        assert len(links) >= 8
        for link in links:
            png = md_path.parent / link
            assert png.is_file(), link
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((cards / "card-test.json").read_text()) == _figures(out)
    assert (cards / "card-test.md").read_text() == _card(out)  # same text: links are relative the same way


def test_charts_are_deterministic(built, tmp_path):
    from pipeline.card.charts import write_charts

    out, _, _ = built
    f = _figures(out)
    written = write_charts(f, tmp_path)
    assert written == f["charts"]
    for name in written.values():
        assert (tmp_path / name).read_bytes() == (out / "card-test_assets" / name).read_bytes(), name


def test_card_from_manifest_alone_and_missing_stages(built):
    from pipeline.card import render_card

    out, _, manifest = built
    text = render_card(Manifest.parse(manifest))
    assert f"- Documents: {manifest['stages']['dedup']['docs_out']:,} (" in text
    bare = {k: v for k, v in manifest.items() if k != "stages"} | {"stages": {"ingest": manifest["stages"]["ingest"]}}
    text = render_card(Manifest.parse(bare))
    for heading in ("## Duplicates", "## PII replaced", "### Tokens", "### Languages"):
        section = text.split(heading, 1)[1]
        assert section.lstrip().startswith("_Not recorded"), heading


@pytest.fixture(scope="module")
def tiny_run(built, tmp_path_factory):
    """A real (tiny) model trained 2 steps on the corpus and evaluated: run.json, eval.json, report.md."""
    from model.evaluate import evaluate
    from model.train import train

    out, _, _ = built
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train(out, run_dir, preset="cpu-tiny", max_steps=2, n_layer=1, n_head=2, n_embd=32, block_size=64, batch_size=4,
          progress=False, checkpoint_every=2, warmup_steps=1)
    return run_dir, evaluate(run_dir, max_tokens=2048, samples=False)


def test_model_entry_is_added_once(built, tiny_run, monkeypatch):
    from pipeline.card import add_model_entry

    out, cards, _ = built
    run_dir, result = tiny_run
    monkeypatch.chdir(cards.parent)  # the flow's copy lives in ./data_cards
    add_model_entry(run_dir)
    add_model_entry(run_dir)  # idempotent: evaluating again replaces the entry
    models = [m for m in json.loads((out / "models.json").read_text())["models"] if m["kind"] == "pretrain"]
    assert len(models) == 1 and models[0]["run"] == "tiny" and models[0]["val_loss"] == result["val_loss"]
    for md_path in (out / "README.md", cards / "card-test.md"):
        text = md_path.read_text(encoding="utf-8")
        section = text.split("## Models trained on this corpus", 1)[1].split("\n## ", 1)[0]
        models_table, mixture_table = section.split("Training mixture consumed", 1)
        rows = [line for line in models_table.splitlines() if line.startswith("| tiny |")]
        assert len(rows) == 1
        # the mixture the run consumed: one row, shares of its training tokens summing to 100 %
        mix_rows = [line for line in mixture_table.splitlines() if line.startswith("| tiny |")]
        assert len(mix_rows) == 1
        assert abs(sum(float(c.strip().split()[0]) for c in mix_rows[0].strip("|").split("|")[1:]) - 100) < 0.5
        assert f"| {result['val_loss']:.4f} |" in rows[0] and f"| {result['val_bits_per_byte']:.4f} |" in rows[0]
        assert f"| {result['tokens_seen']:,} |" in rows[0] and "| cpu-tiny | clm |" in rows[0]
        # the run folder is neither published nor committed with the card: named, never linked or absolute
        assert "`tiny/report.md`" in rows[0] and "](" not in rows[0] and str(run_dir) not in text
    assert json.loads((out / "models.json").read_text())["models"][0]["run_dir"] == str(run_dir.resolve())
    for folder, figures_file in ((out, out / "card.json"), (cards, cards / "card-test.json")):
        written = json.loads(figures_file.read_text())["models"][0]  # what is published: no machine path
        assert not any(os.path.isabs(written[k]) for k in ("run_dir", "evaluated_on", "report") if written.get(k))
        assert (folder / written["run_dir"]).resolve() == run_dir.resolve()


@pytest.mark.slow
def test_finetune_entry(built, tiny_run, corpora, tmp_path):
    from model.finetune import finetune

    from pipeline.card import add_finetune_entry

    out, _, _ = built
    run_dir, _ = tiny_run
    task = tmp_path / "lang.yaml"
    task.write_text(json.dumps({
        "name": "lang-id", "source": {"format": "text-files", "path": str(corpora / "multilingual" / "sentences"),
                                      "classes": ["de", "fr"], "max_per_class": 30},
        "finetune": {"max_steps": 2, "batch_size": 8, "max_len": 32, "eval_batch_size": 64}}), encoding="utf-8")
    ft = finetune(run_dir, task, tmp_path / "ft", progress=False)
    add_finetune_entry(tmp_path / "ft")
    add_finetune_entry(tmp_path / "ft")
    models = [m for m in json.loads((out / "models.json").read_text())["models"] if m["kind"] == "finetune"]
    assert len(models) == 1 and models[0]["metrics"]["accuracy"] == ft["accuracy"]
    text = _card(out)
    section = text.split("### Fine-tuned on this corpus", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ft |")]
    assert len(rows) == 1 and "| lang-id | tiny |" in rows[0] and f"| {ft['accuracy']:.4f} |" in rows[0]


def test_html_is_self_contained(built, tmp_path):
    from pipeline.card import write_html

    out, _, _ = built
    path = write_html(out, tmp_path / "card.html")
    html = path.read_text(encoding="utf-8")
    srcs = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert len(srcs) >= 8 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in html and "<script" not in html
    for heading in SECTIONS:
        assert f">{heading.lstrip('#').strip()}</h" in html, heading
    assert "<table>" in html
    anchors = re.findall(r'href="#([^"]+)"', html)
    ids = set(re.findall(r'<h\d id="([^"]+)"', html))
    assert len(anchors) >= 8 and set(anchors) <= ids  # the contents line's links land on their sections


CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), shutil.which("chromium"))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_html_renders_in_headless_chromium(built, tmp_path):
    from PIL import Image

    from pipeline.card import write_html

    out, _, _ = built
    page = write_html(out, tmp_path / "card.html")
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120)
    assert shot.is_file()
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 2400)
    px = np.asarray(img).reshape(-1, 3).astype(int)
    # a rendered page, not a blank one: many distinct colours (text, tables, chart bars)
    assert len(np.unique(px[::7], axis=0)) > 50
    # the charts' blue bars are on screen (the funnel chart is in the first screen)
    blue = (np.abs(px - [0x3B, 0x6E, 0xA8]) < 20).all(axis=1).sum()
    assert blue > 1000


def test_terminal_summary(built):
    from rich.console import Console

    from pipeline.card import print_summary

    out, _, manifest = built
    console = Console(record=True, width=140)
    print_summary(out, console)
    text = console.export_text()
    f = _figures(out)
    for s in f["sources"]:
        assert s["name"] in text
    assert f"{f['summary']['docs']:,}" in text
    assert f"{manifest['stages']['clean']['docs_rejected']:,}" in text
    assert "Duplicates" in text and "Funnel" in text


@pytest.mark.slow  # builds a second corpus
def test_diff_of_two_corpora(built, tiny_run, corpora, tmp_path):
    from pipeline.card import add_model_entry, diff_cards

    out, _, _ = built
    run_dir, result = tiny_run
    add_model_entry(run_dir)
    recipe = card_recipe(corpora, tmp_path, name="card-test-b")
    recipe["sources"] = [s for s in recipe["sources"] if s["name"] in ("mirror", "sentences")]
    recipe["dedup"] = {"exact": True, "minhash": None}
    b = tmp_path / "b"
    build_corpus(b, None, recipe)
    text = diff_cards(out, b)
    for heading in ("## Recipe differences", "## Sizes", "## Funnel", "## Languages", "## Duplicates", "## Models trained on each"):
        assert f"\n{heading}\n" in text, heading
    fa, fb = _figures(out), _figures(b)
    assert f"| documents | {fa['summary']['docs']:,} | {fb['summary']['docs']:,} |" in text
    assert "dedup.minhash" in text  # B turned MinHash off
    assert fb["duplicates"]["near_removed"] == 0
    row = next(line for line in text.splitlines() if line.startswith("| near removed |"))
    assert f"{fa['duplicates']['near_removed']:,} (" in row and "| 0 (0.00%) |" in row
    row = next(line for line in text.splitlines() if line.startswith("| cpu-tiny |"))  # A's model, none on B
    assert f"| tiny | {result['tokens_seen']:,} | {result['val_loss']:.4f} | {result['val_bits_per_byte']:.4f} | — |" in row


def test_cli_card_summary_html_write_and_diff(built, tmp_path, capsys):
    from flows.cli import main

    out, _, _ = built
    page = tmp_path / "page.html"
    assert main(["card", str(out), "--html", str(page)]) == 0
    printed = capsys.readouterr().out
    assert f"{_figures(out)['summary']['docs']:,}" in printed and f"HTML card: {page}" in printed
    assert page.read_text(encoding="utf-8").count('src="data:image/png;base64,') >= 8
    before = _card(out)
    assert main(["card", str(out), "--write"]) == 0  # regenerated from the same files: the same card
    assert _card(out).split("## Versions")[0] == before.split("## Versions")[0]
    capsys.readouterr()
    assert main(["card", "--diff", str(out), str(out)]) == 0
    diff = capsys.readouterr().out
    assert "The recipes are identical" in diff and "| documents |" in diff
    assert main(["card"]) == 2


def test_downloaded_sources_show_url_sha256_and_fetch_time(corpora, tmp_path):
    """An http source (loopback server): the card's inputs table comes from raw/MANIFEST.jsonl;
    a corpus stopped after ingest still gets a card, its missing sections say so."""
    import hashlib

    from httpserver import FileServer

    from pipeline.card import write_card
    from pipeline.ingest import ingest_source
    from pipeline.manifest import build_manifest
    from pipeline.recipe import parse_recipe

    rel = "web/small.jsonl.gz"
    with FileServer({"/corpora": corpora}) as srv:
        url = srv.url(f"/corpora/{rel}")
        recipe = parse_recipe({"name": "dl", "sources": [{"name": "cc", "type": "http", "license": "ODC-By", "urls": [url]}], "allow_private_networks": True}, tmp_path)
        out = tmp_path / "dl"
        stats = ingest_source(recipe.source_objects(out)[0], out, 100)
    stages = Stages(ingest=IngestStats.summed([stats], sources={"cc": stats}))
    manifest = build_manifest(recipe, None, stages, "opencorpus run dl.yaml")
    write_card(out, manifest)
    text = _card(out)
    want = hashlib.sha256((corpora / rel).read_bytes()).hexdigest()
    row = next(line for line in text.splitlines() if line.startswith(f"| {url} |"))
    assert f"`{want}`" in row and f"| {(corpora / rel).stat().st_size:,} |" in row
    fetched = json.loads((out / "raw" / "MANIFEST.jsonl").read_text().splitlines()[0])["fetched_at"]
    assert fetched in row
    for heading in ("## Duplicates", "## PII replaced", "### Tokens"):
        assert text.split(heading, 1)[1].lstrip().startswith("_Not recorded"), heading


def test_partial_corpus_gets_a_card_and_bad_records_are_named(built, tmp_path):
    """Folders go missing: the card is drawn from the records and says what it lacks. A
    manifest whose stats do not have the recorded shape is refused, naming the file and
    the field; an 0.1 manifest loads through its migration, a newer one names its version."""
    from rich.console import Console

    from pipeline.card import diff_cards, print_summary, rewrite_card

    out, _, manifest = built
    part = tmp_path / "partial"
    shutil.copytree(out, part, ignore=shutil.ignore_patterns("tokens", "clusters", "rejected", "models.json", "card.json"))
    rewrite_card(part, data_cards_dir=tmp_path / "cards")
    text = _card(part)
    d = manifest["stages"]["dedup"]
    assert f"| dedup | {d['docs_in']:,} | {d['docs_out']:,} | {d['docs_rejected']:,} |" in text
    for flt, n in manifest["stages"]["clean"]["rejected_by_filter"].items():
        assert f"| clean | `{flt}` | {n:,} |" in text  # counts from the record when rejected/ is gone
    console = Console(record=True, width=120)
    print_summary(part, console)
    assert "Funnel" in console.export_text()
    assert "## Sizes" in diff_cards(part, out)

    bad = json.loads(json.dumps(manifest))
    bad["stages"]["dedup"]["docs_in"] = "five"
    (part / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(RecordError, match=r"manifest.json: .*stages.dedup.docs_in"):
        rewrite_card(part)

    old = json.loads(json.dumps(manifest))
    del old["format_version"]
    for src in old["stages"]["ingest"]["sources"].values():
        src["rejected_by_reason"] = src.pop("rejected_by_filter")
    for stage in ("ingest", "clean", "dedup"):
        del old["stages"][stage]["rejected_by_filter"]
    migrated = Manifest.parse(old, "old.json")
    assert migrated.stages.clean.rejected_by_filter == manifest["stages"]["clean"]["rejected_by_filter"]
    assert migrated.stages.dedup.rejected_by_filter == manifest["stages"]["dedup"]["rejected_by_filter"]
    newer = json.loads(json.dumps(manifest)) | {"format_version": 99}
    with pytest.raises(RecordError, match="format_version 99"):
        Manifest.parse(newer, "new.json")

