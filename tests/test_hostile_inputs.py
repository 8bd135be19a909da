"""Hostile inputs (issue 21): one odd record becomes one rejected record, never a stopped
run; no document is lost to file names, directory loops or repeats; an input error names
the source and the file. Every test writes its own inputs into tmp_path."""
from __future__ import annotations

import bz2
import gzip
import json
import logging
import os
import random
import shutil
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.ingest import ingest_source
from pipeline.io import list_shards, open_compressed
from pipeline.recipe import parse_recipe
from pipeline.schema import DOC_SCHEMA, REJECTED_SCHEMA
from pipeline.sources.base import InputError


def _source(spec: dict, base: Path, out: Path):
    return parse_recipe({"name": "t", "sources": [spec]}, base).source_objects(out)[0]


def _ingest(spec: dict, base: Path, out: Path | None = None):
    out = out or base.parent / f"{base.name}-out"
    stats = ingest_source(_source(spec, base, out), out, 1000)
    docs = pa.concat_tables([pq.read_table(p) for p in list_shards(out / "documents")])
    rej = pq.read_table(out / "rejected" / f"ingest-{spec['name']}.parquet")
    assert docs.schema.equals(DOC_SCHEMA) and rej.schema.equals(REJECTED_SCHEMA)
    assert stats.docs_in == stats.docs_out + stats.docs_rejected == docs.num_rows + rej.num_rows
    return stats, docs, rej


def _jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# --- one record never stops the run ---------------------------------------------------


def test_lone_surrogate_becomes_replacement_character_and_is_counted(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jsonl").write_bytes(
        b'{"id": "ok", "text": "fine \\ud83d\\ude00 pair"}\n'        # a paired escape is an emoji
        b'{"id": "cut", "text": "truncated emoji \\ud83d here"}\n'   # lone high surrogate
        b'{"id": "meta", "text": "clean text", "title": "x\\udc00"}\n'  # lone low surrogate, in metadata
        b'{"id": "last", "text": "after"}\n'
    )
    stats, docs, rej = _ingest({"name": "s", "type": "jsonl", "paths": ["*.jsonl"]}, src)
    assert rej.num_rows == 0
    by_id = {r["id"]: r for r in docs.to_pylist()}
    assert by_id["ok"]["text"] == "fine \U0001F600 pair"
    assert by_id["cut"]["text"] == "truncated emoji \ufffd here"
    assert json.loads(by_id["meta"]["meta"]) == {"title": "x\ufffd"}
    assert by_id["last"]["text"] == "after"
    assert stats.surrogates_replaced == 2


@pytest.mark.timeout(15, method="signal")  # fail, not hang, on code that recurses or loops
def test_deeply_nested_json_line_is_rejected_fast(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    deep = '{"id": "deep", "text": "x", "m": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (src / "n.jsonl").write_text('{"id": "a", "text": "one"}\n' + deep + '\n{"id": "b", "text": "two"}\n')
    t0 = time.perf_counter()
    stats, docs, rej = _ingest({"name": "n", "type": "jsonl", "paths": ["n.jsonl"]}, src)
    assert time.perf_counter() - t0 < 5
    assert docs.column("id").to_pylist() == ["a", "b"]
    assert rej.num_rows == 1
    r = rej.to_pylist()[0]
    assert r["filter"] == "invalid_json" and "n.jsonl:2" in r["reason"] and "nest" in r["reason"]


def test_huge_integer_in_metadata_keeps_the_document_with_the_digits(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    digits = "7" * 5000
    (src / "big.jsonl").write_text(
        '{"id": "a", "text": "before"}\n'
        '{"id": "big", "text": "has a huge number", "count": ' + digits + ', "small": 3}\n'
        '{"id": ' + digits + ', "text": "huge id"}\n'
        '{"id": "b", "text": "after"}\n')
    stats, docs, rej = _ingest({"name": "b", "type": "jsonl", "paths": ["big.jsonl"]}, src)
    assert rej.num_rows == 0
    by_id = {r["id"]: r for r in docs.to_pylist()}
    assert set(by_id) == {"a", "big", digits, "b"}
    assert json.loads(by_id["big"]["meta"]) == {"count": digits, "small": 3}


def test_plain_text_starting_with_bzh_is_read_as_text(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "notes.txt").write_text("BZh is how a bzip2 stream starts, but this is a note.\n")
    (src / "real.txt.bz2").write_bytes(bz2.compress(b"really compressed\n"))
    stats, docs, rej = _ingest({"name": "t", "type": "text", "paths": ["*.txt*"]}, src)
    assert rej.num_rows == 0
    assert sorted(docs.column("text").to_pylist()) == [
        "BZh is how a bzip2 stream starts, but this is a note.\n", "really compressed\n"]


def test_compression_from_the_name_first_then_sniffed_with_plain_fallback(tmp_path):
    plain = tmp_path / "README"  # no suffix: sniffed, bz2 fails on the first block -> plain
    plain.write_bytes(b"BZh91AY&SY but not bzip2 at all\n")
    with open_compressed(plain) as f:
        assert f.read() == b"BZh91AY&SY but not bzip2 at all\n"
    gz_no_suffix = tmp_path / "blob"  # no suffix, real gzip: sniffed
    gz_no_suffix.write_bytes(gzip.compress(b"zipped\n"))
    with open_compressed(gz_no_suffix) as f:
        assert f.read() == b"zipped\n"
    cut = tmp_path / "cut"  # no suffix, real bz2 cut inside its first block: truncated, not text
    cut.write_bytes(bz2.compress(bytes(range(256)) * 400)[:200])
    with pytest.raises(IOError, match="cut.*truncated"):
        open_compressed(cut).read()
    gz_named_txt = tmp_path / "data.txt"  # the name says plain: bytes are returned as they are
    gz_named_txt.write_bytes(gzip.compress(b"zipped\n"))
    with open_compressed(gz_named_txt) as f:
        assert f.read() == gzip.compress(b"zipped\n")


# --- no document lost -------------------------------------------------------------------


def test_same_file_name_in_two_folders_gets_distinct_stable_ids(tmp_path):
    src = tmp_path / "in"
    _jsonl(src / "2023" / "part-0.jsonl", [{"text": "from 2023 a"}, {"text": "from 2023 b"}])
    _jsonl(src / "2024" / "part-0.jsonl", [{"text": "from 2024 a"}, {"text": "from 2024 b"}])
    spec = {"name": "y", "type": "jsonl", "paths": ["**/part-*.jsonl"]}
    stats, docs, rej = _ingest(spec, src)
    assert rej.num_rows == 0
    ids = docs.column("id").to_pylist()
    assert ids == ["y/2023/part-0.jsonl:1", "y/2023/part-0.jsonl:2", "y/2024/part-0.jsonl:1", "y/2024/part-0.jsonl:2"]
    _, again, _ = _ingest(spec, src, tmp_path / "rerun")
    assert again.column("id").to_pylist() == ids
    # the same for text and parquet sources
    (src / "2023" / "a.txt").write_text("t23")
    (src / "2024" / "a.txt").write_text("t24")
    _, docs, rej = _ingest({"name": "x", "type": "text", "paths": ["*/a.txt"]}, src, tmp_path / "t")
    assert docs.column("id").to_pylist() == ["x/2023/a.txt", "x/2024/a.txt"] and rej.num_rows == 0
    for year in ("2023", "2024"):
        pq.write_table(pa.table({"text": [f"p{year}"]}), src / year / "p.parquet")
    _, docs, rej = _ingest({"name": "p", "type": "parquet", "paths": ["2023/p.parquet", "2024/*.parquet"]},
                           src, tmp_path / "p")
    assert docs.column("id").to_pylist() == ["p/2023/p.parquet:0", "p/2024/p.parquet:0"] and rej.num_rows == 0


def test_copied_file_repeats_rejected_as_duplicate_ids_naming_the_first_file(tmp_path):
    src = tmp_path / "in"
    _jsonl(src / "a.jsonl", [{"id": f"r{i}", "text": f"doc {i}"} for i in range(2500)])
    shutil.copy(src / "a.jsonl", src / "copy-of-a.jsonl")
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["x", "y"]}), src / "a.parquet")
    shutil.copy(src / "a.parquet", src / "b.parquet")
    stats, docs, rej = _ingest({"name": "c", "type": "jsonl", "paths": ["*.jsonl"]}, src)
    assert docs.num_rows == 2500 and rej.num_rows == 2500
    assert set(rej.column("filter").to_pylist()) == {"duplicate_id"}
    first = rej.to_pylist()[0]
    assert "copy-of-a.jsonl:1" in first["reason"] and "a.jsonl:1" in first["reason"].split("already used by")[1]
    stats, docs, rej = _ingest({"name": "q", "type": "parquet", "paths": ["*.parquet"]}, src, tmp_path / "q")
    assert docs.column("id").to_pylist() == ["p1", "p2"]
    assert rej.column("duplicate_of").to_pylist() == ["p1", "p2"]
    assert all("a.parquet" in r.split("already used by")[1] for r in rej.column("reason").to_pylist())


def test_leading_bom_is_stripped(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + b'{"id": "first", "text": "one"}\n{"id": "second", "text": "two"}\n')
    (src / "bom.jsonl.gz").write_bytes(gzip.compress(b"\xef\xbb\xbf" + b'{"id": "z", "text": "zipped"}\n'))
    stats, docs, rej = _ingest({"name": "j", "type": "jsonl", "paths": ["bom.jsonl*"]}, src)
    assert rej.num_rows == 0 and docs.column("id").to_pylist() == ["first", "second", "z"]
    (src / "bom.txt").write_bytes(b"\xef\xbb\xbfText with a byte order mark.\n")
    _, docs, rej = _ingest({"name": "t", "type": "text", "paths": ["bom.txt"]}, src, tmp_path / "t")
    assert docs.column("text").to_pylist() == ["Text with a byte order mark.\n"]


def _tree_with_loops(root: Path, loops: int) -> None:
    _jsonl(root / "a.jsonl", [{"text": "top"}])
    _jsonl(root / "sub" / "b.jsonl", [{"text": "below"}])
    for i in range(1, loops + 1):
        os.symlink(".", root / f"loop{i}")
    os.symlink("..", root / "sub" / "up")
    os.symlink("nowhere", root / "dangling")


@pytest.mark.timeout(20, method="signal")  # the old glob never ended with two loops
@pytest.mark.parametrize("loops", [1, 2])
def test_directory_symlink_loops_walk_each_folder_once(tmp_path, caplog, loops):
    src = tmp_path / "in"
    _tree_with_loops(src, loops)
    caplog.set_level(logging.WARNING)
    t0 = time.perf_counter()
    stats, docs, rej = _ingest({"name": "l", "type": "jsonl", "paths": ["**/*.jsonl"]}, src)
    assert time.perf_counter() - t0 < 10
    assert rej.num_rows == 0
    assert docs.column("id").to_pylist() == ["l/a.jsonl:1", "l/sub/b.jsonl:1"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "loop1" in warnings[0] and "sub/up" in warnings[0] and "dangling" in warnings[0]
    assert (loops == 1) or "loop2" in warnings[0]


def test_unlistable_folder_is_an_error_naming_it(tmp_path, monkeypatch):
    src = tmp_path / "in"
    _jsonl(src / "a.jsonl", [{"text": "top"}])
    _jsonl(src / "locked" / "b.jsonl", [{"text": "hidden from us"}])
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(os.fsdecode(path)).name == "locked":
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    src_obj = _source({"name": "u", "type": "jsonl", "paths": ["**/*.jsonl"]}, src, tmp_path / "out")
    with pytest.raises(InputError, match=r"source 'u'.*locked.*Permission denied"):
        list(src_obj.read())


# --- errors name the source and the file ---------------------------------------------


def _parquet_with_corrupt_row_group(path: Path) -> None:
    t = pa.table({"id": [f"r{i}" for i in range(300)], "text": [f"document number {i} " * 20 for i in range(300)]})
    pq.write_table(t, path, compression="snappy", row_group_size=100, use_dictionary=False)
    col = pq.ParquetFile(path).metadata.row_group(1).column(1)
    data = bytearray(path.read_bytes())
    at = col.data_page_offset + col.total_compressed_size // 2
    data[at:at + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


def test_unreadable_parquet_is_an_error_naming_source_and_file(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "noise.parquet").write_bytes(random.Random(0).randbytes(10_000))
    with pytest.raises(InputError, match=r"source 'p': .*noise\.parquet: .*footer"):
        _ingest({"name": "p", "type": "parquet", "paths": ["noise.parquet"]}, src)
    pq.write_table(pa.table({"text": ["a", "b"]}), src / "cut.parquet")
    data = (src / "cut.parquet").read_bytes()
    (src / "cut.parquet").write_bytes(data[:-10])
    with pytest.raises(InputError, match=r"source 'p': .*cut\.parquet: .*footer") as e:
        _ingest({"name": "p", "type": "parquet", "paths": ["cut.parquet"]}, src, tmp_path / "o2")
    assert "\n" not in str(e.value)


def test_corrupt_parquet_row_group_rejects_its_rows_and_the_rest_is_read(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _parquet_with_corrupt_row_group(src / "a.parquet")
    pq.write_table(pa.table({"id": ["other"], "text": ["next file"]}), src / "b.parquet")
    stats, docs, rej = _ingest({"name": "p", "type": "parquet", "paths": ["*.parquet"]}, src)
    ids = docs.column("id").to_pylist()
    assert ids == [f"r{i}" for i in range(100)] + [f"r{i}" for i in range(200, 300)] + ["other"]
    assert rej.num_rows == 100
    assert rej.column("id").to_pylist() == [f"r{i}" for i in range(100, 200)]
    assert set(rej.column("filter").to_pylist()) == {"corrupt_row_group"}
    reason = rej.column("reason")[0].as_py()
    assert "a.parquet" in reason and "row group 1" in reason and "row 100" in reason and "Corrupt" in reason


def test_invalid_utf8_in_a_parquet_string_column_rejects_that_row(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    as_string = lambda values: pa.array(values, pa.binary()).view(pa.string())  # noqa: E731 - Parquet does not check
    pq.write_table(pa.table({"id": ["a", "b", "c", "d"],
                             "text": as_string([b"good", b"bad \xff\xfe here", b"fine", b"also fine"]),
                             "note": as_string([b"ok", b"ok", b"cut \xc3", b"ok"])}), src / "u.parquet")
    stats, docs, rej = _ingest({"name": "u", "type": "parquet", "paths": ["u.parquet"]}, src)
    assert docs.column("id").to_pylist() == ["a", "d"]
    assert json.loads(docs.column("meta")[1].as_py()) == {"note": "ok"}
    rows = rej.to_pylist()
    assert [r["id"] for r in rows] == ["b", "c"] and {r["filter"] for r in rows} == {"invalid_utf8"}
    assert "u.parquet: row 1: column 'text'" in rows[0]["reason"] and "row 2: column 'note'" in rows[1]["reason"]


def test_dictionary_encoded_text_column_is_read_as_strings(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    df = pd.DataFrame({"id": ["a", "b", "c"], "text": pd.Categorical(["same", "other", "same"]),
                       "kind": pd.Categorical(["prose", "code", "prose"])})
    df.to_parquet(src / "cat.parquet")
    assert pa.types.is_dictionary(pq.read_schema(src / "cat.parquet").field("text").type)
    stats, docs, rej = _ingest({"name": "d", "type": "parquet", "paths": ["cat.parquet"]}, src)
    assert rej.num_rows == 0
    assert docs.column("text").to_pylist() == ["same", "other", "same"]
    assert docs.column("kind").to_pylist() == ["prose", "code", "prose"]
