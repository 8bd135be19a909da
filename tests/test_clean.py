"""Clean stage on generated text (tests/fixtures_text.py: seeded sentences in many languages and
scripts) and the stdlib's Python sources: public API, conservation, each rule set, CJK/Thai
word counting, PII, code rules, repair and bad input. The tests marked `shared` repeat the
script checks on real text from ../shared/corpora."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fixtures_text
from conftest import require_shared
from fixtures_corpus import BAD_WORDS, wiki_text
from pipeline.clean import CleanConfig, clean_shard, clean_table
from pipeline.clean.rules import license_allowed
from pipeline.clean.text import repair, split_words
from pipeline.recipe import parse_recipe
from pipeline.records import CleanStats
from pipeline.schema import CLEAN_SCHEMA, DOC_SCHEMA, REJECTED_SCHEMA

STDLIB = Path(os.__file__).parent


def docs_table(texts, kind="prose", license=None, paths=None, prefix="d") -> pa.Table:
    n = len(texts)
    return pa.Table.from_pydict(
        {
            "id": [f"{prefix}{i}" for i in range(n)],
            "text": list(texts),
            "source": ["test"] * n,
            "license": list(license) if isinstance(license, list) else [license] * n,
            "kind": [kind] * n if isinstance(kind, str) else list(kind),
            "url": [None] * n,
            "path": list(paths) if paths else [None] * n,
            "meta": [None] * n,
        },
        schema=DOC_SCHEMA,
    )


def wikitext_articles(n: int) -> list[str]:
    return [p for p in wiki_text(60).split("\n = ") if len(p) > 2000][:n]


def sentences(lang: str, per_doc: int = 10, n_docs: int = 10) -> list[str]:
    lines = fixtures_text.sentences(lang, per_doc * n_docs)
    return ["\n".join(lines[i : i + per_doc]) for i in range(0, per_doc * n_docs, per_doc)]


def english_prose(n_docs: int = 10) -> list[str]:
    return sentences("en", 10, n_docs)


def only(**rule_sets) -> CleanConfig:
    """A config with only the named rule sets on (for testing one at a time)."""
    off = {k: {"enabled": False} for k in ("gopher_repetition", "gopher_quality", "c4", "fineweb")}
    off.update(rule_sets)
    return CleanConfig(**off)


def rejected_by(result) -> dict[str, tuple[str, str]]:
    r = result.rejected
    return {i: (f, why) for i, f, why in zip(r.column("id").to_pylist(), r.column("filter").to_pylist(), r.column("reason").to_pylist())}


# ----------------------------------------------------------------------------- API and conservation


def test_clean_shard_conserves_and_writes_schemas(tmp_path):
    texts = wikitext_articles(20) + english_prose(5) + ["", "nul \x00 inside " * 3, "short"]
    src = tmp_path / "documents" / "part-00000.parquet"
    src.parent.mkdir()
    pq.write_table(docs_table(texts), src)
    out, rej = tmp_path / "clean" / "part-00000.parquet", tmp_path / "rejected" / "clean-part-00000.parquet"
    stats = clean_shard(src, out, rej, CleanConfig())
    kept, rejected = pq.read_table(out), pq.read_table(rej)
    assert kept.schema.equals(CLEAN_SCHEMA) and rejected.schema.equals(REJECTED_SCHEMA)
    assert stats.docs_in == len(texts) == stats.docs_out + stats.docs_rejected
    assert stats.docs_out == kept.num_rows and stats.docs_rejected == rejected.num_rows
    ids = set(kept.column("id").to_pylist()) | set(rejected.column("id").to_pylist())
    assert ids == {f"d{i}" for i in range(len(texts))}
    assert set(kept.column("id").to_pylist()).isdisjoint(rejected.column("id").to_pylist())
    assert all(rejected.column("reason").to_pylist()) and set(rejected.column("stage").to_pylist()) == {"clean"}
    assert sum(f.docs for f in stats.filters.values()) == stats.docs_rejected == sum(stats.rejected_by_filter.values())
    assert stats.rejected_by_filter == {k: f.docs for k, f in stats.filters.items() if f.docs}
    rejected_ids = set(rejected.column("id").to_pylist())
    assert sum(f.bytes for f in stats.filters.values()) == sum(
        len(t.encode()) for i, t in enumerate(texts) if f"d{i}" in rejected_ids)
    for f in stats.filters.values():
        assert len(f.examples) <= 3 and all(len(e.text) <= 200 and e.reason for e in f.examples)
    assert stats.languages.get("en", 0) >= 5 and set(kept.column("language").to_pylist()) >= {"en"}
    assert stats.bytes_out == sum(len(t.encode()) for t in kept.column("text").to_pylist())


def test_empty_shard_writes_empty_outputs(tmp_path):
    src = tmp_path / "part-00000.parquet"
    pq.write_table(DOC_SCHEMA.empty_table(), src)
    stats = clean_shard(src, tmp_path / "clean.parquet", tmp_path / "rej.parquet", CleanConfig())
    assert stats.docs_in == stats.docs_out == 0
    assert pq.read_table(tmp_path / "clean.parquet").schema.equals(CLEAN_SCHEMA)
    assert pq.read_table(tmp_path / "rej.parquet").num_rows == 0


def test_merge_stats_and_worker_independence():
    texts = wikitext_articles(10) + english_prose(10)
    table = docs_table(texts)
    whole = clean_table(table, CleanConfig())
    a = clean_table(table.slice(0, 7), CleanConfig())
    b = clean_table(table.slice(7), CleanConfig())
    merged = CleanStats.merged([a.stats, b.stats])
    for k in ("docs_in", "docs_out", "docs_rejected", "bytes_in", "bytes_out", "rejected_by_filter", "languages", "pii"):
        assert getattr(merged, k) == getattr(whole.stats, k), k
    assert {k: v.docs for k, v in merged.filters.items()} == {k: v.docs for k, v in whole.stats.filters.items()}
    assert list(merged.filters) == list(whole.stats.filters)  # pipeline order kept
    assert pa.concat_tables([a.kept, b.kept]).equals(whole.kept)
    assert pa.concat_tables([a.rejected, b.rejected]).equals(whole.rejected)


# ----------------------------------------------------------------------------- rule sets on real text


def test_gopher_repetition_catches_repeated_paragraphs():
    article = wikitext_articles(1)[0]
    para = max(article.split("\n"), key=len).strip()
    res = clean_table(docs_table([article, "\n\n".join([para] * 4)]), only(gopher_repetition={"enabled": True}))
    rej = rejected_by(res)
    assert "d0" not in rej
    f, why = rej["d1"]
    assert f == "gopher_repetition.dup_para_frac" and "0.75, maximum 0.3" in why


def test_gopher_quality_rules_and_reasons():
    en = english_prose(3)
    short = "This sentence is too short to be a document."
    bullets = "\n".join("- " + s for s in en[0].splitlines())
    res = clean_table(docs_table([en[1], short, bullets]), only(gopher_quality={"enabled": True}))
    rej = rejected_by(res)
    assert "d0" not in rej
    assert rej["d1"][0] == "gopher_quality.short_doc" and "minimum 50" in rej["d1"][1]
    assert rej["d2"][0] == "gopher_quality.bullet_lines" and "maximum 0.9" in rej["d2"][1]
    # Counting punctuation tokens as words (datatrove), WikiText's "@-@" and "@,@" push articles
    # under Gopher's 80 % alphabetic-word share
    res = clean_table(docs_table(wikitext_articles(20)),
                      only(gopher_quality={"enabled": True, "alpha_ratio_ignores_punctuation": False}))
    reasons = [why for f, why in rejected_by(res).values() if f == "gopher_quality.alpha_words"]
    assert reasons and all("minimum 0.8" in r for r in reasons)


def test_stop_words_apply_per_language():
    de = sentences("de", 10, 5)
    default = clean_table(docs_table(de), only(gopher_quality={"enabled": True}))
    assert default.stats.docs_out >= 4  # German is not judged by English stop words
    everywhere = clean_table(docs_table(de), only(gopher_quality={"enabled": True, "stop_words_languages": None}))
    assert {f for f, _ in rejected_by(everywhere).values()} >= {"gopher_quality.stop_words"}


def test_c4_rules_and_line_cleaning():
    en = english_prose(3)
    lorem = en[0] + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit."
    code_as_prose = (STDLIB / "json" / "encoder.py").read_text(encoding="utf-8")
    menu = "Home\nAbout us\nContact\n" + en[1] + "\nThis site uses cookies to improve your experience."
    res = clean_table(docs_table([lorem, code_as_prose, menu, "One line only. Two sentences here."]), only(c4={"enabled": True}))
    rej = rejected_by(res)
    assert rej["d0"][0] == "c4.lorem_ipsum"
    assert rej["d1"][0] in ("c4.curly_bracket", "c4.too_few_sentences")
    assert rej["d3"][0] == "c4.too_few_sentences" and "minimum 5" in rej["d3"][1]
    kept = dict(zip(res.kept.column("id").to_pylist(), res.kept.column("text").to_pylist()))
    assert "Home" not in kept["d2"] and "cookies" not in kept["d2"]  # lines C4 drops are gone
    assert kept["d2"].startswith(en[1].splitlines()[0].strip()[:20])


def test_c4_bad_words_from_blocklist(tmp_path):
    blocklist = tmp_path / "ldnoobw" / "en.txt"
    blocklist.parent.mkdir()
    blocklist.write_text("\n".join(BAD_WORDS) + "\n", encoding="utf-8")
    word = next(w.strip() for w in blocklist.read_text(encoding="utf-8").splitlines() if w.strip().isalpha())
    en = english_prose(2)
    dirty = en[1] + f"\nThey called it {word} and left."
    cfg = only(c4={"enabled": True, "bad_words_path": str(blocklist), "min_num_sentences": 1})
    rej = rejected_by(clean_table(docs_table([en[0], dirty]), cfg))
    assert "d0" not in rej and rej["d1"][0] == "c4.bad_words" and word in rej["d1"][1]
    # relative paths resolve against the recipe's folder, when the recipe is parsed
    recipe = parse_recipe({"name": "r", "sources": [{"name": "s", "type": "text", "paths": ["x.txt"]}],
                           "clean": {"c4": {"bad_words_path": "ldnoobw/en.txt"}}}, blocklist.parent.parent)
    assert Path(recipe.clean.c4.bad_words_path) == blocklist.resolve()


def chinese_poems(n_docs: int, per_doc: int = 10, poems: list[dict] | None = None) -> list[str]:
    poems = poems or fixtures_text.chinese_poems(n_docs * per_doc)
    return ["\n\n".join(p["title"] + "\n" + p["author"] + "\n" + "\n".join(p["paragraphs"]) for p in poems[i : i + per_doc])
            for i in range(0, n_docs * per_doc, per_doc)]


def test_fineweb_rules():
    dup = english_prose(1)[0] + "\n" + "\n".join(english_prose(1)[0].splitlines()[:3])
    res = clean_table(docs_table([english_prose(2)[1], chinese_poems(1)[0], dup]), only(fineweb={"enabled": True}))
    rej = rejected_by(res)
    assert "d0" not in rej
    assert rej["d1"][0] == "fineweb.short_line_ratio" and "maximum 0.67" in rej["d1"][1]
    assert rej["d2"][0] == "fineweb.char_dup_ratio" and "maximum 0.01" in rej["d2"][1]


def test_thresholds_are_overridable():
    en = english_prose(1)
    assert clean_table(docs_table(en), only(gopher_quality={"enabled": True})).stats.docs_out == 1
    strict = only(gopher_quality={"enabled": True, "min_doc_words": 100_000})
    rej = rejected_by(clean_table(docs_table(en), strict))
    assert rej["d0"][0] == "gopher_quality.short_doc" and "minimum 100000" in rej["d0"][1]


# ----------------------------------------------------------------------------- scripts without spaces


@pytest.mark.parametrize("lang", ["zh", "ja", "th"])
def test_text_without_spaces_is_not_rejected_wholesale(lang):
    docs = sentences(lang, 10, 10)
    res = clean_table(docs_table(docs), CleanConfig())
    assert res.stats.docs_out >= 9, rejected_by(res)
    assert set(res.kept.column("language").to_pylist()) == {lang}
    # measured with an English tokenizer and English stop words (datatrove's defaults) they would all go
    naive = CleanConfig(script_aware_words=False, gopher_quality={"stop_words_languages": None, "alpha_ratio_ignores_punctuation": False})
    assert clean_table(docs_table(docs), naive).stats.docs_out <= 1


def test_chinese_poetry_is_kept():
    res = clean_table(docs_table(chinese_poems(10)), CleanConfig())
    assert res.stats.docs_out == 10 and res.stats.languages == {"zh": 10}


def test_cjk_words_are_characters():
    assert split_words("中文字，好。ok", True) == ["中", "文", "字", "，", "好", "。", "ok"]
    assert split_words("中文字，好。", False) == ["中文字，好", "。"]


def test_words_follow_spacys_english_rules():
    # expected tokens are what spaCy 3.8's blank English tokenizer (datatrove's) produces
    cases = {
        "Hello, world!": ["Hello", ",", "world", "!"],
        "don't": ["do", "n't"],
        "Smith's.": ["Smith", "'s", "."],
        "(St.": ["(", "St."],
        "U.K.": ["U.K."],
        "e.g.,": ["e.g.", ","],
        "50km.": ["50", "km", "."],
        "11.8%": ["11.8", "%"],
        "x-ray": ["x", "-", "ray"],
        "a...b": ["a", "...", "b"],
        "1,000": ["1,000"],
        "35°2": ["35", "°", "2"],
        "and/or": ["and/or"],
        "'s": ["'s"],
    }
    for text, expected in cases.items():
        assert split_words(text, False) == expected, text


# ----------------------------------------------------------------------------- code


def test_code_rules_on_stdlib_sources():
    files = ["json/encoder.py", "textwrap.py", "encodings/cp1252.py"]
    texts = [(STDLIB / f).read_text(encoding="utf-8") for f in files]
    long_line = texts[1] + "\nDATA = '" + "x" * 1500 + "'\n"
    symbols = "\n".join(["#" + "-=" * 30] * 200) + "\n" + "x = 1\n"
    texts += [long_line, symbols, texts[1], texts[1]]
    licenses = ["PSF-2.0", "PSF-2.0", "PSF-2.0", "PSF-2.0", "MIT", "GPL-3.0-only", None]
    paths = [str(STDLIB / f) for f in files] + ["a.py", "b.py", "c.py", "d.py"]
    res = clean_table(docs_table(texts, kind="code", license=licenses, paths=paths), CleanConfig())
    rej = rejected_by(res)
    assert "d0" not in rej and "d1" not in rej
    assert rej["d2"][0] == "code.autogenerated" and "generated from" in rej["d2"][1]
    assert rej["d3"][0] == "code.max_line_length" and "maximum 1000" in rej["d3"][1]
    assert rej["d4"][0] == "code.alnum_fraction"
    assert rej["d5"][0] == "code.license" and "GPL-3.0-only" in rej["d5"][1]
    assert rej["d6"][0] == "code.license"
    langs = dict(zip(res.kept.column("id").to_pylist(), res.kept.column("language").to_pylist()))
    assert langs["d0"] == "python" and res.kept.column("language_score").null_count == res.kept.num_rows


def test_license_expressions():
    allowed = {"mit", "apache-2.0", "bsd-3-clause"}
    assert license_allowed("MIT", allowed) is True
    assert license_allowed("MIT OR GPL-3.0-only", allowed) is True
    assert license_allowed("MIT AND GPL-3.0-only", allowed) is False
    assert license_allowed("(MIT OR GPL-2.0) AND Apache-2.0 WITH LLVM-exception", allowed) is True
    assert license_allowed("GPL-3.0-or-later", allowed) is False
    assert license_allowed(None, allowed) is None and license_allowed("MIT AND (", allowed) is None


def test_default_config_keeps_most_of_the_python_corpus():
    """The default corpus is Python package source and docs: the defaults must keep the bulk of it."""
    sources = sorted(p for p in (STDLIB / "json").glob("*.py")) + sorted((STDLIB / "email").glob("*.py"))[:15]
    texts = [p.read_text(encoding="utf-8") for p in sources]
    res = clean_table(docs_table(texts, kind="code", license="PSF-2.0", paths=[str(p) for p in sources]), CleanConfig())
    non_empty = sum(1 for t in texts if t.strip())
    assert res.stats.docs_out >= 0.9 * non_empty, rejected_by(res)


# ----------------------------------------------------------------------------- PII and repair


def test_pii_replaced_and_counted():
    en = english_prose(1)[0]
    text = (en + "\nWrite to jane.doe@example.org or call +1 202 555 0143 or (202) 555-0143."
            "\nThe server at 93.184.216.34 and 2606:4700:4700::1111 answered; localhost is 127.0.0.1 and x[::2] is a slice.")
    res = clean_table(docs_table([text]), only())
    out = res.kept.column("text")[0].as_py()
    assert "jane.doe@example.org" not in out and "<EMAIL_ADDRESS>" in out
    assert "93.184.216.34" not in out and "2606:4700" not in out and out.count("<IP_ADDRESS>") == 2
    assert "555" not in out and out.count("<PHONE_NUMBER>") == 2
    assert "127.0.0.1" in out and "x[::2]" in out
    assert res.stats.pii == {"email": 1, "ip": 2, "phone": 2}
    off = clean_table(docs_table([text]), CleanConfig(gopher_repetition={"enabled": False}, gopher_quality={"enabled": False},
                                                      pii={"enabled": False}))
    assert "jane.doe@example.org" in off.kept.column("text")[0].as_py()


def test_repair_fixes_mojibake_controls_and_whitespace():
    assert repair("cafÃ© crÃ¨me", True, "NFC", True, True, False) == "café crème"
    assert repair("e\u0301t\u00e9", True, "NFC", True, True, False) == "\u00e9t\u00e9"
    assert repair("a\x00b\x07c\r\nd  \n\n\n\ne", True, "NFC", True, True, False) == "abc\nd\n\ne"
    assert repair("“curly” quotes and ＡＢ stay", True, "NFC", True, True, False) == "“curly” quotes and ＡＢ stay"
    code = "def f():\n    return '&amp;'  \n\n\n\n"
    assert repair(code, True, "NFC", True, True, True) == "def f():\n    return '&amp;'"


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_rejected_with_reasons():
    binary = bytes(range(256)).decode("latin-1") * 20
    texts = ["", "   \n\t  ", "\x00" * 100, binary, "ok \x00 text " + english_prose(1)[0]]
    res = clean_table(docs_table(texts), CleanConfig())
    rej = rejected_by(res)
    assert rej["d0"][0] == "min_chars" and rej["d1"][0] == "min_chars"
    assert rej["d2"][0] == "binary" and rej["d3"][0] == "binary" and "maximum 0.1" in rej["d3"][1]
    assert res.stats.docs_out == 1 and "\x00" not in res.kept.column("text")[0].as_py()


def _one_line(n_bytes: int, spaces: bool) -> str:
    words = english_prose(3)[2].replace("\n", " ")
    unit = words if spaces else words.replace(" ", "")
    return (unit * (n_bytes // len(unit) + 1))[:n_bytes]


def test_long_single_line_is_linear():
    """A single 2 MB line (and one without spaces) is judged in time proportional to its size."""
    timings = {}
    for size in (500_000, 2_000_000):
        for spaces in (True, False):
            t0 = time.perf_counter()
            res = clean_table(docs_table([_one_line(size, spaces)]), CleanConfig(c4={"enabled": True}, fineweb={"enabled": True}))
            timings[size, spaces] = time.perf_counter() - t0
            assert res.stats.docs_in == 1 and res.stats.docs_out + res.stats.docs_rejected == 1
    for spaces in (True, False):
        assert timings[2_000_000, spaces] < 10 * timings[500_000, spaces] + 1.0, timings


def test_huge_single_line_documents_hold_the_shard_memory_bound(tmp_path):
    """Two 50 MB one-line documents (one as a JSONL record would bring it, one as a .txt) in a
    shard of ordinary ones: rejected as `max_chars` before repair, with an excerpt of their
    text in rejected/, and the clean worker's peak memory stays within the README's bound
    (8-15 bytes per byte of the shard's text; it was 2.5 GB, 25x, before max_chars had a
    default)."""
    import subprocess
    import sys

    big = _one_line(50_000_000, True)
    texts = [big, big[::-1]] + english_prose(20)
    src = tmp_path / "part-00000.parquet"
    pq.write_table(docs_table(texts), src)
    del big, texts
    code = ("import resource, sys; from pipeline.clean import CleanConfig, clean_shard; "
            "s = clean_shard(*sys.argv[1:4], CleanConfig()); "
            "print(s.rejected_by_filter.get('max_chars', 0), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
    out = subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / "clean.parquet"), str(tmp_path / "rej.parquet")],
                         capture_output=True, text=True, check=True).stdout.split()
    rejected, peak_mb = int(out[0]), int(out[1])
    assert rejected == 2
    # 100 MB of text: 787 MB alone, 1,364-1,514 MB seen inside full suite runs (not understood
    # yet); 2,496 MB without max_chars, which this bound still catches
    assert peak_mb < 2000, peak_mb
    rej = pq.read_table(tmp_path / "rej.parquet").to_pylist()
    assert {r["id"] for r in rej if r["filter"] == "max_chars"} == {"d0", "d1"}
    assert all(len(r["text"]) == 10_000 and "50000000 characters" in r["reason"] and "first 10,000" in r["reason"]
               for r in rej if r["filter"] == "max_chars")


def test_config_validation():
    c = CleanConfig.model_validate({"gopher_quality": {"min_doc_words": 20}, "languages": ["en"], "code": {"licenses": ["MIT"]}})
    assert c.gopher_quality.min_doc_words == 20 and c.gopher_quality.max_doc_words == 100_000
    with pytest.raises(Exception):
        CleanConfig.model_validate({"gopher_quality": {"min_words": 20}})
    for name, field in CleanConfig.model_fields.items():
        assert field.description or name in ("gopher_repetition", "gopher_quality", "c4", "fineweb", "code", "pii")


def test_language_filter():
    docs = english_prose(3) + sentences("de", 10, 3)
    res = clean_table(docs_table(docs), CleanConfig(languages=["en"]))
    rej = rejected_by(res)
    assert {i for i, (f, _) in rej.items() if f == "language"} == {"d3", "d4", "d5"}
    assert "'de'" in rej["d3"][1] and "['en']" in rej["d3"][1]
    assert set(res.kept.column("language").to_pylist()) == {"en"}
    assert all(0 < s <= 1 for s in res.kept.column("language_score").to_pylist())


@pytest.mark.shared
@pytest.mark.parametrize("lang", ["zh", "ja", "th"])
def test_real_text_without_spaces_and_real_poetry_are_kept(lang):
    """The script-aware word counting on real sentences and real Tang poems (../shared/corpora)."""
    root = require_shared() / "multilingual"
    lines = [x for x in (root / "lingua_sentences" / f"{lang}.txt").read_text(encoding="utf-8").splitlines() if x.strip()]
    docs = ["\n".join(lines[i : i + 10]) for i in range(0, 100, 10)]
    res = clean_table(docs_table(docs), CleanConfig())
    assert res.stats.docs_out >= 9, rejected_by(res)
    assert set(res.kept.column("language").to_pylist()) == {lang}
    naive = CleanConfig(script_aware_words=False, gopher_quality={"stop_words_languages": None, "alpha_ratio_ignores_punctuation": False})
    assert clean_table(docs_table(docs), naive).stats.docs_out <= 1
    poems = json.loads((root / "chinese-poetry" / "quantangshi" / "tangshi300.json").read_text(encoding="utf-8"))
    res = clean_table(docs_table(chinese_poems(10, poems=poems)), CleanConfig())
    assert res.stats.docs_out == 10 and res.stats.languages == {"zh": 10}
