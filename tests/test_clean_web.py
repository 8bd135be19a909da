"""Web-text filters of the clean stage on generated data: URL block lists (UT1 format) and bad
words in URLs, decontamination against evaluation sets (exact and lightly edited passages, and no
false hits), the learned quality scorer (training, model file, scores in clean/ and rejected/,
re-thresholding from the recorded scores) and the errors raised before any work starts."""
from __future__ import annotations

import json
import random
import re

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fixtures_corpus import wiki_text
from pipeline.clean import CleanConfig, clean_shard, clean_table
from pipeline.clean import hashing
from pipeline.clean.decontam import build_index
from pipeline.clean.quality import QualityModel, QualityModelError, roc_auc, train
from pipeline.recipe import RecipeError, parse_recipe
from pipeline.records import CleanStats
from pipeline.schema import CLEAN_SCHEMA, DOC_SCHEMA, REJECTED_SCHEMA

NO_RULES = {k: {"enabled": False} for k in ("gopher_repetition", "gopher_quality", "c4", "fineweb")}


def table(texts, urls=None, source="web", kind="prose", prefix="d") -> pa.Table:
    n = len(texts)
    return pa.Table.from_pydict({
        "id": [f"{prefix}{i}" for i in range(n)], "text": list(texts), "source": [source] * n,
        "license": [None] * n, "kind": [kind] * n if isinstance(kind, str) else list(kind),
        "url": list(urls) if urls else [None] * n, "path": [None] * n, "meta": [None] * n,
    }, schema=DOC_SCHEMA)


def config(**extra) -> CleanConfig:
    return CleanConfig.model_validate({**NO_RULES, "max_symbol_ratio": None, **extra})


def conserved(result, n):
    assert result.kept.num_rows + result.rejected.num_rows == n
    assert result.kept.schema.equals(CLEAN_SCHEMA) and result.rejected.schema.equals(REJECTED_SCHEMA)
    assert result.stats.conservation_error() is None


def recipe_with(clean: dict, base):
    return parse_recipe({"name": "r", "sources": [{"name": "s", "type": "text", "paths": ["x.txt"]}],
                         "clean": clean}, base)


# ----------------------------------------------------------------------------- synthetic prose

SYLLABLES = ["ka", "lo", "mi", "re", "tan", "so", "vu", "ne", "por", "li", "da", "fe", "gu", "bri", "sto", "an"]


def vocabulary(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def prose(rng: random.Random, vocab: list[str], words: int) -> str:
    out, sentence = [], []
    for _ in range(words):
        sentence.append(rng.choice(vocab))
        if len(sentence) >= rng.randint(8, 18):
            out.append(" ".join(sentence).capitalize() + rng.choice([".", ".", "!", "?"]))
            sentence = []
    if sentence:
        out.append(" ".join(sentence).capitalize() + ".")
    return " ".join(out)


# ----------------------------------------------------------------------------- URL filtering


@pytest.fixture
def ut1(tmp_path):
    """A UT1-format category folder, and a bad-words list."""
    adult = tmp_path / "ut1" / "adult"
    adult.mkdir(parents=True)
    (adult / "domains").write_text("# UT1 adult\nexample-adult.com\nbadsite.org\n\n", encoding="utf-8")
    (adult / "urls").write_text("goodhost.com/private/\nfree-hosting.net/~spam\n", encoding="utf-8")
    (tmp_path / "url_words.txt").write_text("porn\nxxx\ntwo girls one cup\n", encoding="utf-8")
    return tmp_path


URLS = [
    ("https://www.example-adult.com/page", "url.domain", "'example-adult.com'"),
    ("http://cdn.img.badsite.org:8080/a.jpg", "url.domain", "'badsite.org'"),
    ("https://goodhost.com/private/x.html", "url.substring", "'goodhost.com/private/'"),
    ("http://free-hosting.net/~spam/index", "url.substring", "'free-hosting.net/~spam'"),
    ("https://news.com/2019/free-PORN-videos", "url.bad_words", "'porn'"),
    ("https://shock.net/two-girls-one-cup.html", "url.bad_words", "'two girls one cup'"),
    ("https://notbadsite.org/", None, None),
    ("https://goodhost.com/public/", None, None),
    ("https://sussex.ac.uk/pornography-research-ethics", None, None),  # a longer word, not the listed token
    (None, None, None),
]


def test_url_filter_blocks_listed_domains_substrings_and_words(ut1):
    cfg = config(urls={"block_lists": [str(ut1 / "ut1" / "adult")], "bad_words_path": str(ut1 / "url_words.txt")})
    texts = [f"Page number {i} with some ordinary words in it." for i in range(len(URLS))]
    res = clean_table(table(texts, [u for u, _, _ in URLS]), cfg)
    conserved(res, len(URLS))
    rej = {i: (f, r) for i, f, r in zip(*(res.rejected.column(c).to_pylist() for c in ("id", "filter", "reason")))}
    for i, (url, filt, entry) in enumerate(URLS):
        if filt is None:
            assert f"d{i}" not in rej, (url, rej.get(f"d{i}"))
        else:
            assert rej[f"d{i}"][0] == filt and entry in rej[f"d{i}"][1], (url, rej.get(f"d{i}"))
    assert list(res.stats.filters)[:3] == ["url.domain", "url.substring", "url.bad_words"]
    assert res.stats.rejected_by_filter == {"url.domain": 2, "url.substring": 2, "url.bad_words": 2}


def test_url_lists_checked_when_the_recipe_is_read(ut1, tmp_path):
    empty = tmp_path / "empty_domains"
    empty.write_text("# nothing here\n\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="empty"):
        recipe_with({"urls": {"block_domains": ["empty_domains"]}}, tmp_path)
    with pytest.raises(RecipeError, match="no such file"):
        recipe_with({"urls": {"block_urls": ["missing.txt"]}}, tmp_path)
    with pytest.raises(RecipeError, match="no such folder"):
        recipe_with({"urls": {"block_lists": ["ut1/gambling"]}}, tmp_path)
    r = recipe_with({"urls": {"block_lists": ["ut1/adult"]}}, tmp_path)
    assert r.clean.urls.block_lists == [str((tmp_path / "ut1" / "adult").resolve())]


# ----------------------------------------------------------------------------- decontamination


def light_edits(passage: str, kind: int, rng: random.Random) -> str:
    if kind == 0:
        return passage
    if kind == 1:
        return passage.upper()
    if kind == 2:  # whitespace: line breaks, tabs and doubled spaces between words
        return "".join(w + rng.choice(["\n", "  ", "\t", " \n "]) for w in passage.split(" "))
    if kind == 3:  # punctuation: removed, and added around words
        bare = re.sub(r"[.!?,]", "", passage)
        return " ".join(rng.choice(["", '"', "("]) + w + rng.choice(["", ",", ";", ")", "..."]) for w in bare.split())
    return passage.title().replace(" ", " - ")  # casing and punctuation together


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evals")
    rng = random.Random(7)
    vocab = vocabulary(3000, 1)
    qa = [{"question": prose(rng, vocab, rng.randint(25, 40)), "answer": prose(rng, vocab, 15), "label": 1}
          for _ in range(20)]
    with open(folder / "trivia.jsonl", "w", encoding="utf-8") as f:
        for row in qa:
            f.write(json.dumps(row) + "\n")
    (folder / "reading.txt").write_text("\n\n".join(prose(rng, vocab, 60) for _ in range(10)), encoding="utf-8")
    return folder, qa, vocab


def test_decontamination_finds_every_injected_passage_exact_and_edited(benchmark):
    folder, qa, vocab = benchmark
    reading = (folder / "reading.txt").read_text(encoding="utf-8").split("\n\n")
    rng = random.Random(11)
    corpus_vocab = vocabulary(3000, 2)
    docs = [prose(rng, corpus_vocab, rng.randint(80, 300)) for _ in range(300)]
    injected = {}
    for k in range(30):  # 30 documents carry a benchmark passage, in 5 kinds of edit
        i = k * 10
        passage = qa[k % 20]["question"] if k % 2 else " ".join(reading[k % 10].split()[:30])
        words = docs[i].split(" ")
        cut = rng.randint(0, len(words))
        docs[i] = " ".join(words[:cut] + [light_edits(passage, k % 5, rng)] + words[cut:])
        injected[f"d{i}"] = "trivia" if k % 2 else "reading"
    cfg = config(decontaminate={"paths": [{"path": str(folder / "trivia.jsonl"), "fields": ["question", "answer"]},
                                          str(folder / "reading.txt")]})
    res = clean_table(table(docs), cfg)
    conserved(res, len(docs))
    rej = dict(zip(res.rejected.column("id").to_pylist(), res.rejected.column("filter").to_pylist()))
    assert rej == {i: f"decontaminate.{s}" for i, s in injected.items()}  # all found, nothing else
    reason = res.rejected.column("reason")[0].as_py()
    assert "13-gram" in reason and "evaluation set" in reason and "first: '" in reason
    c = res.stats.contamination
    assert c["trivia"].docs == 15 and c["reading"].docs == 15 and c["trivia"].items == 40
    assert c["trivia"].sources == {"web": 15}


def test_decontamination_has_no_false_hits_on_a_clean_corpus(benchmark):
    folder, _, _ = benchmark
    rng = random.Random(5)
    vocab = vocabulary(3000, 3)
    docs = [prose(rng, vocab, 200) for _ in range(200)]
    docs += [p for p in wiki_text(40).split("\n = ") if p.strip()]
    cfg = config(decontaminate={"paths": [str(folder)]})  # a folder: every file in it
    res = clean_table(table(docs), cfg)
    assert res.rejected.num_rows == 0 and res.kept.num_rows == len(docs)
    assert {k: v.docs for k, v in res.stats.contamination.items()} == {folder.name: 0}


def test_decontamination_flag_keeps_the_document_and_marks_its_meta(benchmark):
    folder, qa, _ = benchmark
    docs = ["An unrelated page of text about rivers and lanes in a village.", "Intro. " + qa[3]["question"]]
    cfg = config(decontaminate={"paths": [str(folder / "trivia.jsonl")], "action": "flag"})
    res = clean_table(table(docs), cfg)
    assert res.rejected.num_rows == 0
    metas = res.kept.column("meta").to_pylist()
    assert metas[0] is None and json.loads(metas[1])["contamination"]["set"] == "trivia"
    assert res.stats.contamination["trivia"].docs == 1 and "decontaminate.trivia" not in res.stats.filters


def test_evaluation_sets_in_every_format(tmp_path):
    passage = "the quick brown fox jumps over the lazy dog while seven bright stars watch the silent hills tonight"
    pq.write_table(pa.table({"ctx": [passage], "n": [1]}), tmp_path / "hella.parquet")
    (tmp_path / "task.tsv").write_text(f"id\tsentence\tlabel\n1\t{passage}\t0\n2\tsomething else\t1\n"
                                       + "".join(f"{k}\tfiller {k}\t{k % 2}\n" for k in range(3, 23)), encoding="utf-8")
    (tmp_path / "task.yaml").write_text("name: t\nsource: {format: tsv, path: task.tsv}\n"
                                        "columns: {text: sentence, label: label}\nsplit: {validation: 0.1, test: 0.2, seed: 0}\n",
                                        encoding="utf-8")
    (tmp_path / "lm_eval").mkdir()
    (tmp_path / "lm_eval" / "test.jsonl").write_text(json.dumps({"query": passage, "choices": ["a", "b"]}) + "\n")
    doc = "Header text. " + passage.upper().replace(" ", ",  ") + " And more."
    for path in ("hella.parquet", "task.yaml", "lm_eval"):
        index = build_index([("s", str(tmp_path / path), None)], 13)
        assert index.check([doc, "nothing to see here at all"])[0] is not None, path
        assert index.check([doc, "nothing to see here at all"])[1] is None


def test_decontamination_errors_before_work_starts(tmp_path):
    with pytest.raises(RecipeError, match="no such file"):
        recipe_with({"decontaminate": {"paths": ["evals/missing.jsonl"]}}, tmp_path)
    (tmp_path / "short.txt").write_text("too short to hold a 13-gram\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="no 13-gram"):
        recipe_with({"decontaminate": {"paths": ["short.txt"]}}, tmp_path)
    (tmp_path / "bad.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="not valid JSON"):
        recipe_with({"decontaminate": {"paths": ["bad.jsonl"]}}, tmp_path)


# ----------------------------------------------------------------------------- quality scorer


def scorer_data(n: int, seed: int):
    """Positives: prose over one vocabulary; negatives: another, with 'buy'/'click' spam words mixed in."""
    rng = random.Random(seed)
    shared = vocabulary(800, 10)
    good = shared[:400] + vocabulary(300, 11)
    bad = shared[400:] + ["buy", "click", "cheap", "offer", "now"] * 20
    pos = [prose(rng, good, rng.randint(30, 200)) for _ in range(n)]
    neg = [prose(rng, bad, rng.randint(30, 200)) for _ in range(n)]
    return pos, neg


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    pos, neg = scorer_data(150, 1)
    model, report = train(pos, neg, bits=14, steps=150)
    return model.save(tmp_path_factory.mktemp("model") / "q.npz"), report


def test_scorer_trains_and_reports_held_out_figures(model_file):
    path, report = model_file
    held = report["held_out"]
    assert held["examples"] == 60 and held["roc_auc"] > 0.95 and held["accuracy"] > 0.9
    m = QualityModel.load(path)
    assert m.meta["format"] == "opencorpus-quality/1" and m.meta["report"]["held_out"] == held
    pos, neg = scorer_data(40, 2)  # new examples of the same kinds
    s = m.score(pos + neg)
    assert s.dtype == np.float32 and roc_auc(s, np.r_[np.ones(40), np.zeros(40)].astype(bool)) > 0.95
    # each text is scored on its own: the batch it comes in does not change its score
    assert np.allclose(m.score(pos[:3]), s[:3], atol=1e-6)
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool)) == 0.75


def test_word_hashes_ignore_case_whitespace_and_punctuation():
    a = hashing.words(["Hello, World!  It's   fine.", "hello world it s fine", "HELLO\nWORLD -- it; s (fine)"])
    rows = [a.hashes[a.starts[i]:a.starts[i + 1]].tolist() for i in range(3)]
    assert rows[0] == rows[1] == rows[2] and len(rows[0]) == 5
    assert hashing.words(["hello"]).hashes.tolist() == hashing.words(["hello"]).hashes.tolist()


def test_quality_scores_in_clean_and_rejected_and_rethreshold(model_file, tmp_path):
    path, _ = model_file
    pos, neg = scorer_data(30, 3)
    texts = pos + neg + ["def f():\n    return 1\n"]
    kinds = ["prose"] * 60 + ["code"]
    src = tmp_path / "documents.parquet"
    pq.write_table(table(texts, kind=kinds), src)
    out, rej = tmp_path / "clean" / "part-0.parquet", tmp_path / "rejected" / "clean-part-0.parquet"
    cfg = config(quality={"model": str(path), "threshold": 0.5, "name": "spam"}, code={"licenses": None})
    stats = clean_shard(src, out, rej, cfg)
    assert stats.docs_in == stats.docs_out + stats.docs_rejected == 61
    kept, rejected = pl.read_parquet(out), pl.read_parquet(rej)
    assert kept.filter(pl.col("kind") == "prose")["quality_score"].min() >= 0.5
    assert kept.filter(pl.col("kind") == "code")["quality_score"].null_count() == 1
    assert (rejected["filter"] == "quality.spam").all() and rejected["quality_score"].max() < 0.5
    assert "of scorer 'spam' (q.npz) is below the threshold 0.5" in rejected["reason"][0]
    assert stats.quality.threshold == 0.5 and sum(stats.quality.sources["web"].counts) == 60
    assert stats.quality.sources["web"].rejected == rejected.height
    # re-threshold at 0.8 from the recorded scores, without scoring again: the same as a run at 0.8
    at_08 = pl.concat([kept.select("id", "quality_score"), rejected.select("id", "quality_score")]).filter(
        pl.col("quality_score") >= 0.8)["id"].sort().to_list()
    rerun = clean_table(table(texts, kind=kinds), config(quality={"model": str(path), "threshold": 0.8},
                                                          code={"licenses": None}))
    assert sorted(i for i, k in zip(rerun.kept["id"].to_pylist(), rerun.kept["kind"].to_pylist())
                  if k == "prose") == at_08
    merged = CleanStats.merged([stats, stats])
    assert merged.quality.sources["web"].scored == 120


def test_bad_model_files_fail_when_the_recipe_is_read(tmp_path, model_file):
    with pytest.raises(RecipeError, match="not found"):
        recipe_with({"quality": {"model": "missing.npz"}}, tmp_path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(RecipeError, match="not an opencorpus quality model"):
        recipe_with({"quality": {"model": "junk.npz"}}, tmp_path)
    np.savez(tmp_path / "other.npz", weights=np.zeros(4), bias=np.zeros(1),
             meta=np.frombuffer(json.dumps({"format": "someone-else/3"}).encode(), np.uint8))
    with pytest.raises(RecipeError, match="retrain"):
        recipe_with({"quality": {"model": "other.npz"}}, tmp_path)
    with pytest.raises(QualityModelError):
        QualityModel.load(tmp_path / "junk.npz")
    r = recipe_with({"quality": {"model": str(model_file[0])}}, tmp_path)
    assert len(r.clean.quality.model_sha256) == 64


def test_quality_train_command(tmp_path, capsys):
    from flows.cli import main

    pos, neg = scorer_data(60, 4)
    with open(tmp_path / "good.jsonl", "w") as f:
        for t in pos:
            f.write(json.dumps({"text": t, "id": "x"}) + "\n")
    (tmp_path / "bad").mkdir()
    for k, t in enumerate(neg):
        (tmp_path / "bad" / f"{k}.txt").write_text(t, encoding="utf-8")
    rc = main(["quality", "train", "--positive", str(tmp_path / "good.jsonl"), "--negative", str(tmp_path / "bad"),
               "--field", "text", "--out", str(tmp_path / "m.npz"), "--bits", "14", "--steps", "100",
               "--report", str(tmp_path / "report.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "held_out" in out and "ROC AUC" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["held_out"]["roc_auc"] > 0.9
    assert QualityModel.load(tmp_path / "m.npz").meta["trained_on"]["field"] == ["text"]
    assert main(["quality", "train", "--positive", str(tmp_path / "nope.jsonl"), "--negative", str(tmp_path / "bad"),
                 "--out", str(tmp_path / "x.npz")]) == 2
    assert "no such file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- data card


def test_card_shows_score_distribution_and_contamination(model_file, benchmark, tmp_path):
    from pipeline.card.charts import write_charts
    from pipeline.card.figures import collect_figures
    from pipeline.card.markdown import render_markdown
    from pipeline.records import Manifest, Stages

    folder, qa, _ = benchmark
    pos, neg = scorer_data(20, 5)
    docs = pos + neg + ["Intro. " + qa[0]["question"]]
    cfg = config(quality={"model": str(model_file[0]), "threshold": 0.6},
                 decontaminate={"paths": [str(folder / "trivia.jsonl")]})
    a = clean_table(table(docs[:20], source="forum"), cfg).stats
    b = clean_table(table(docs[20:], source="news", prefix="n"), cfg).stats
    stats = CleanStats.merged([a, b])
    assert stats.contamination["trivia"].docs == 1 and stats.contamination["trivia"].sources == {"news": 1}
    manifest = Manifest(name="c", created="2026-12-03T00:00:00Z", recipe_hash="x", recipe={}, code_version="t",
                        stages=Stages(clean=stats))
    figures = collect_figures(None, manifest)
    assert figures["quality"]["threshold"] == 0.6 and set(figures["quality"]["sources"]) == {"forum", "news"}
    charts = write_charts(figures, tmp_path / "assets")
    assert (tmp_path / "assets" / charts["quality"]).stat().st_size > 1000
    md = render_markdown(figures, "assets", charts)
    assert "## Quality scores and contamination" in md and "threshold 0.6" in md and "0.6 ▼" in md
    assert "| trivia |" in md and "news 1" in md
    # a corpus without either has no such section
    plain = Manifest(name="c", created="2026-12-03T00:00:00Z", recipe_hash="x", recipe={}, code_version="t",
                     stages=Stages(clean=clean_table(table(pos[:3]), config()).stats))
    assert "Quality scores" not in render_markdown(collect_figures(None, plain))


def test_url_from_meta_for_sources_that_keep_the_url_in_metadata(ut1):
    t = table(["Some page text here."] * 3)
    meta = [json.dumps({"metadata": {"warc_url": "http://ok.com/", "url": "cdn.badsite.org/x"}}),
            json.dumps({"metadata": {"url": "ok.com/page"}}), None]
    t = t.set_column(t.schema.get_field_index("meta"), "meta", pa.array(meta, pa.string()))
    cfg = config(urls={"block_lists": [str(ut1 / "ut1" / "adult")], "url_from_meta": "url"})
    res = clean_table(t, cfg)
    assert res.rejected.column("id").to_pylist() == ["d0"] and "badsite.org" in res.rejected.column("reason")[0].as_py()


def test_quality_train_from_a_task_file(tmp_path, capsys):
    from flows.cli import main

    pos, neg = scorer_data(40, 6)
    with open(tmp_path / "ex.jsonl", "w") as f:
        for t, lab in [(t, "good") for t in pos] + [(t, "bad") for t in neg]:
            f.write(json.dumps({"body": t, "y": lab}) + "\n")
    (tmp_path / "task.yaml").write_text("name: q\nsource: {format: jsonl, path: ex.jsonl}\n"
                                        "columns: {text: body, label: y}\nsplit: {validation: 0.1, test: 0.25, seed: 0}\n")
    rc = main(["quality", "train", "--task", str(tmp_path / "task.yaml"), "--positive-label", "good",
               "--out", str(tmp_path / "m.npz"), "--bits", "14", "--steps", "80"])
    assert rc == 0 and "held_out" in capsys.readouterr().out
    index = build_index([("q", str(tmp_path / "task.yaml"), None)], 13)  # the same file as an evaluation set
    assert index.sets[0].items == 80 and index.check([pos[0]])[0] is not None


def test_validation_split_checked_against_training_split(tmp_path):
    from pipeline.clean.decontam import split_overlap

    rng = random.Random(9)
    vocab = vocabulary(2000, 12)
    docs = [prose(rng, vocab, 120) for _ in range(60)]
    ids = [f"d{i}" for i in range(60)]
    val = {"d3", "d17", "d40"}
    docs[10] = docs[10] + " " + " ".join(docs[17].split()[5:25]).upper()  # a training page quoting a validation page
    for k in range(2):
        pq.write_table(table(docs[k * 30:(k + 1) * 30], prefix="tmp").set_column(
            0, "id", pa.array(ids[k * 30:(k + 1) * 30])), tmp_path / f"part-{k}.parquet")
    r = split_overlap(sorted(tmp_path.glob("*.parquet")), lambda xs: [x in val for x in xs])
    assert r["val_docs"] == 3 and r["train_docs"] == 57
    assert r["val_docs_shared"] == 1 and r["train_docs_sharing"] == 1
    assert r["examples"] == [{"val": "d17", "train": "d10"}]


def test_evaluation_set_names_are_distinct(tmp_path):
    with pytest.raises(RecipeError, match="distinct"):
        recipe_with({"decontaminate": {"paths": ["a/test.jsonl", "b/test.jsonl"]}}, tmp_path)
