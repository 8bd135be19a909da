"""Local sources and ingest on real files: every record ends in documents/ or rejected/ with a reason."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.ingest import ingest_source
from pipeline.io import list_shards
from pipeline.recipe import RecipeError, load_recipe, parse_recipe
from pipeline.schema import DOC_SCHEMA, REJECTED_SCHEMA


def _one_source(spec: dict, base: Path, out: Path):
    recipe = parse_recipe({"name": "t", "sources": [spec]}, base)
    return recipe.source_objects(out)[0]


def _ingest(spec, tmp_path, shard_docs=1000):
    src = _one_source(spec, tmp_path, tmp_path / "out")
    stats = ingest_source(src, tmp_path / "out", shard_docs)
    docs = pa.concat_tables([pq.read_table(p) for p in list_shards(tmp_path / "out" / "documents")])
    rej = pq.read_table(tmp_path / "out" / "rejected" / f"ingest-{spec['name']}.parquet")
    assert docs.schema.equals(DOC_SCHEMA)
    assert rej.schema.equals(REJECTED_SCHEMA)
    assert stats.docs_in == stats.docs_out + stats.docs_rejected == docs.num_rows + rej.num_rows
    return stats, docs, rej


def test_jsonl_gz_file_keeps_own_ids_and_urls(tmp_path, corpora):
    path = corpora / "web" / "small.jsonl.gz"
    with gzip.open(path, "rt") as f:
        first = json.loads(f.readline())
    stats, docs, rej = _ingest({"name": "cc", "type": "jsonl", "paths": [str(path)]}, tmp_path)
    assert rej.num_rows == 0
    assert docs.column("id")[0].as_py() == str(first["id"])
    assert docs.column("text")[0].as_py() == first["text"]
    assert stats.bytes_out > 10_000


def test_jsonl_bad_records_rejected_with_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(
        b'{"id": "a", "text": "good one"}\n'
        b'{"id": "b", "text": "broken\n'  # malformed JSON, line 2
        b'{"id": "c", "text": "bad utf8 \xff\xfe"}\n'  # invalid UTF-8, line 3
        b'{"id": "d", "body": "no text field"}\n'  # line 4
        b'{"id": "a", "text": "same id again"}\n'  # line 5
        b'[1, 2]\n'  # line 6
        b'{"id": "e", "text": 42}\n'  # line 7
    )
    stats, docs, rej = _ingest({"name": "j", "type": "jsonl", "paths": ["bad.jsonl"]}, tmp_path)
    assert docs.column("id").to_pylist() == ["a"]
    by_filter = {r["filter"]: r for r in rej.to_pylist()}
    assert set(by_filter) == {"invalid_json", "invalid_utf8", "missing_text_field", "duplicate_id", "not_an_object", "text_not_string"}
    assert "bad.jsonl:2" in by_filter["invalid_json"]["reason"]
    assert "bad.jsonl:3" in by_filter["invalid_utf8"]["reason"]
    assert "bad.jsonl:4" in by_filter["missing_text_field"]["reason"] and "'text'" in by_filter["missing_text_field"]["reason"]
    assert "bad.jsonl:5" in by_filter["duplicate_id"]["reason"] and by_filter["duplicate_id"]["duplicate_of"] == "a"
    assert stats.docs_in == 7


def test_text_source_splits_and_shards(tmp_path, corpora):
    wiki = corpora / "classic" / "wiki.txt"
    spec = {"name": "wt2", "type": "text", "paths": [str(wiki)], "separator_regex": r"^ = [^=].* = $"}
    stats, docs, rej = _ingest(spec, tmp_path, shard_docs=25)
    titles = [l for l in wiki.read_text(encoding="utf-8").splitlines() if l.startswith(" = ") and not l.startswith(" = = ")]
    assert docs.num_rows == len(titles) == 40  # one document per article (the blank lead-in is none)
    assert len(list_shards(tmp_path / "out" / "documents")) == -(-docs.num_rows // 25)
    texts = docs.column("text").to_pylist()
    assert [t.splitlines()[0] for t in texts] == titles
    is_title = lambda l: l.startswith(" = ") and not l.startswith(" = = ")
    assert all(sum(map(is_title, t.splitlines())) == 1 for t in texts)  # never two articles in one document
    ids = docs.column("id").to_pylist()
    assert len(set(ids)) == len(ids)
    # stable ids: a second read gives the same ones
    _, docs2, _ = _ingest(spec, tmp_path / "again", shard_docs=25)
    assert docs2.column("id").to_pylist() == ids


def test_text_source_rejects_invalid_utf8_file(tmp_path):
    (tmp_path / "ok.txt").write_text("hello world\n")
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 latin-1\n")
    stats, docs, rej = _ingest({"name": "t", "type": "text", "paths": ["*.txt"]}, tmp_path)
    assert docs.num_rows == 1 and rej.num_rows == 1
    assert "bad.txt" in rej.column("reason")[0].as_py() and "byte 3" in rej.column("reason")[0].as_py()


def test_parquet_source_null_text_rejected(tmp_path):
    pq.write_table(pa.table({"id": ["x", "y", None], "text": ["one", None, "three"], "lang": ["en", "en", "de"]}),
                   tmp_path / "in.parquet")
    stats, docs, rej = _ingest({"name": "p", "type": "parquet", "paths": ["in.parquet"]}, tmp_path)
    assert docs.column("id").to_pylist() == ["x", "p/in.parquet:2"]
    assert json.loads(docs.column("meta")[0].as_py()) == {"lang": "en"}
    assert rej.column("id").to_pylist() == ["y"] and "row 1" in rej.column("reason")[0].as_py()


def test_python_env_source_documents_with_licenses(tmp_path):
    spec = {"name": "py", "type": "python-env", "packages": ["idna", "certifi"], "stdlib": True, "stdlib_modules": ["json"]}
    stats, docs, rej = _ingest(spec, tmp_path)
    rows = docs.to_pylist()
    kinds = {r["kind"] for r in rows}
    assert kinds == {"prose", "code"}
    stdlib = [r for r in rows if json.loads(r["meta"])["distribution"] == "python-stdlib"]
    assert stdlib and all(r["license"] == "PSF-2.0" for r in stdlib)
    assert any(r["id"] == "py/python-stdlib/json/decoder.py" for r in rows)
    idna = [r for r in rows if json.loads(r["meta"])["distribution"] == "idna"]
    assert idna and all(r["license"] == "BSD-3-Clause" for r in idna)


def test_recipe_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("name: x\nsources:\n  - {name: a, type: nosuch, paths: ['*']}\n")
    with pytest.raises(RecipeError, match=r"r\.yaml: .*sources\[0\]\.type: unknown source type 'nosuch'"):
        load_recipe(bad)
    bad.write_text("name: x\nsources:\n  - {name: a, type: jsonl, paths: ['*'], txt_field: t}\ndedup: {exact: maybe}\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(bad)
    assert "txt_field" in str(e.value) and "dedup.exact" in str(e.value)


def test_recipe_mix_names_its_own_sources_with_weights_of_zero_or_more(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nsources:\n  - {name: a, type: jsonl, paths: ['*']}\nmix: {web: 2}\n")
    with pytest.raises(RecipeError, match=r"mix: \['web'\] are not sources of this recipe \(\['a'\]\)"):
        load_recipe(recipe)
    recipe.write_text("name: x\nsources:\n  - {name: a, type: jsonl, paths: ['*']}\nmix: {a: -1}\n")
    with pytest.raises(RecipeError, match=">= 0"):
        load_recipe(recipe)
    recipe.write_text("name: x\nsources:\n  - {name: a, type: jsonl, paths: ['*']}\nmix: {a: 0.5}\n")
    assert load_recipe(recipe).mix == {"a": 0.5}


def test_missing_glob_is_an_error(tmp_path):
    src = _one_source({"name": "n", "type": "jsonl", "paths": ["nothing-*.jsonl"]}, tmp_path, tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="nothing-"):
        list(src.read())
