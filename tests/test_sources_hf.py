"""The `hf` source reads real local datasets through `datasets` (no Hub access in tests)."""
from __future__ import annotations

import json

import datasets
import pyarrow as pa
import pytest

from pipeline.recipe import parse_recipe


def read(spec: dict, base, out):
    src = parse_recipe({"name": "t", "sources": [spec]}, base).source_objects(out)[0]
    batches = list(src.read())
    return src, pa.concat_tables([b.docs for b in batches]), pa.concat_tables([b.rejected for b in batches])


@pytest.fixture(scope="module")
def stories(corpora):
    """Generated short stories plus a row that cannot be a document."""
    text = (corpora / "classic" / "stories.txt").read_text()
    paras = [p.strip() for p in text.split("\n\n") if p.strip()]
    rows = {"text": paras + [None], "id": [f"s{i}" for i in range(len(paras))] + ["bad"],
            "url": [None] * (len(paras) + 1), "stars": list(range(len(paras) + 1))}
    return paras, datasets.Dataset.from_dict(rows)


def test_save_to_disk_folder(stories, tmp_path):
    paras, ds = stories
    ds.save_to_disk(str(tmp_path / "ds"))
    src, docs, rej = read({"name": "ts", "type": "hf", "path": "ds", "license": "CDLA-Sharing-1.0"}, tmp_path, tmp_path)
    assert docs.column("text").to_pylist() == paras
    assert docs.column("id").to_pylist() == [f"s{i}" for i in range(len(paras))]
    assert json.loads(docs.column("meta")[0].as_py()) == {"stars": 0}
    assert docs.column("license").to_pylist() == ["CDLA-Sharing-1.0"] * len(paras)
    assert rej.column("id").to_pylist() == ["bad"]
    assert rej.column("reason")[0].as_py().endswith(f"ds [train] row {len(paras)}: column 'text' is null")
    prov = src.provenance[0]
    assert prov["path"].endswith("ds") and prov["size"] > 0 and prov["files"]


def test_dataset_dict_split_streaming_and_max_docs(stories, tmp_path):
    paras, ds = stories
    datasets.DatasetDict({"train": ds, "validation": ds.select(range(3))}).save_to_disk(str(tmp_path / "dd"))
    _, docs, _ = read({"name": "v", "type": "hf", "path": "dd", "split": "validation"}, tmp_path, tmp_path)
    assert docs.column("text").to_pylist() == paras[:3]
    _, docs, _ = read({"name": "s", "type": "hf", "path": "dd", "streaming": True, "max_docs": 2, "batch_size": 1},
                      tmp_path, tmp_path)
    assert docs.column("text").to_pylist() == paras[:2]
    with pytest.raises(KeyError, match="no split 'test'"):
        read({"name": "x", "type": "hf", "path": "dd", "split": "test"}, tmp_path, tmp_path)


def test_folder_of_parquet_and_json_data_files(stories, tmp_path):
    paras, ds = stories
    (tmp_path / "pq").mkdir()
    ds.to_parquet(str(tmp_path / "pq" / "train-00000-of-00001.parquet"))
    _, docs, rej = read({"name": "p", "type": "hf", "path": "pq", "cache_dir": str(tmp_path / "cache")}, tmp_path, tmp_path)
    assert docs.column("text").to_pylist() == paras and rej.num_rows == 1
    (tmp_path / "js").mkdir()
    ds.to_json(str(tmp_path / "js" / "part.jsonl"))
    _, docs, _ = read({"name": "j", "type": "hf", "path": "js", "data_files": "part.jsonl", "text_field": "text",
                       "cache_dir": str(tmp_path / "cache")}, tmp_path, tmp_path)
    assert docs.column("text").to_pylist() == paras


def test_missing_text_column_is_named(stories, tmp_path):
    _, ds = stories
    ds.save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(ValueError, match="no column 'body'"):
        read({"name": "b", "type": "hf", "path": "ds", "text_field": "body"}, tmp_path, tmp_path)


def test_rows_joined_into_articles_like_wikitext(corpora, tmp_path):
    # WikiText on the Hub stores one line per row; articles start at " = Title = " lines.
    lines = (corpora / "classic" / "wiki.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    datasets.Dataset.from_dict({"text": lines}).save_to_disk(str(tmp_path / "wt"))
    spec = {"name": "wt", "type": "hf", "path": "wt", "document_start": r"^ = [^=]", "batch_size": 500}
    src, docs, rej = read(spec, tmp_path, tmp_path)
    titles = [l for l in lines if l.startswith(" = ") and not l.startswith(" = = ")]
    assert docs.num_rows == len(titles) == 40  # the 40 generated articles
    head = lines.index(titles[0])  # blank rows before the first title: not a document
    assert "".join(lines[:head]) + "".join(docs.column("text").to_pylist()) == "".join(lines)  # no row lost
    assert all(t.startswith(" = ") for t in docs.column("text").to_pylist())
    first = docs.column("path")[0].as_py()
    assert first.endswith(f"[train]:{lines.index(titles[0])}-{lines.index(titles[1]) - 1}")
    prov = src.provenance[0]
    assert prov["rows_read"] == len(lines)
    assert prov["blank_rows_not_documents"] == lines.index(titles[0])
    _, two, _ = read({**spec, "max_docs": 2}, tmp_path, tmp_path)
    assert two.column("text").to_pylist() == docs.column("text").to_pylist()[:2]


def test_hub_id_in_offline_mode_names_the_way_out(tmp_path):
    if not datasets.config.HF_HUB_OFFLINE:
        pytest.skip("needs HF_HUB_OFFLINE=1 (tests/conftest.py sets it)")
    spec = {"name": "ts", "type": "hf", "path": "roneneldan/TinyStories", "split": "validation",
            "cache_dir": str(tmp_path / "empty-cache")}
    with pytest.raises(ConnectionError, match=r"source 'ts': cannot load 'roneneldan/TinyStories'.*offline mode is on.*HF_ENDPOINT"):
        read(spec, tmp_path, tmp_path)
