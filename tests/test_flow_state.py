"""Done records (flows/state.py): keys, output verification, source fingerprints; and the
progress summary (flows/progress.py). No flow runs here: fast."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from flows.progress import ProgressLog, read_events, summarize, progress_path
from flows.state import (STAGE_MODULES, HashCache, StateStore, code_fingerprint, module_closure, source_fingerprint,
                         source_module, unit_key)
from pipeline.io import write_parquet
from pipeline.records import CleanStats
from pipeline.recipe import parse_recipe


def _shard(path: Path, texts: list[str]) -> Path:
    return write_parquet(pa.table({"text": texts}), path)


def test_record_is_valid_only_with_the_same_key_and_intact_outputs(tmp_path):
    store = StateStore(tmp_path)
    out = _shard(tmp_path / "clean" / "part-a.parquet", ["one", "two"])
    store.write("clean", "part-a", "k1", [out], CleanStats(docs_in=2, docs_out=2))
    rec = store.valid("clean", "part-a", "k1")
    assert store.stats(rec) == CleanStats(docs_in=2, docs_out=2)
    assert store.valid("clean", "part-a", "k2") is None  # another key: rerun

    # touched but equal content: still valid (a copy to another machine changes mtimes)
    os.utime(out, ns=(1, 1))
    assert store.valid("clean", "part-a", "k1") is not None
    # same size, other content: not valid
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    assert store.valid("clean", "part-a", "k1") is None
    # missing output: not valid
    out.unlink()
    assert store.valid("clean", "part-a", "k1") is None


def test_damaged_record_means_not_done(tmp_path):
    store = StateStore(tmp_path)
    path = store.record_path("dedup", "all")
    path.parent.mkdir(parents=True)
    path.write_text('{"stage": "dedup", "unit": "all", "ke')  # a torn write cannot happen (atomic), but be safe
    assert store.load("dedup", "all") is None
    assert store.valid("dedup", "all", "x") is None


def test_record_of_an_older_stats_shape_means_not_done(tmp_path):
    """A done record whose stats no longer parse as the stage's record (written by an older
    opencorpus, or edited by hand) is rerun, not trusted with a half-typed funnel row."""
    store = StateStore(tmp_path)
    out = _shard(tmp_path / "clean" / "part-a.parquet", ["one"])
    store.write("clean", "part-a", "k1", [out], CleanStats(docs_in=1, docs_out=1))
    path = store.record_path("clean", "part-a")
    data = json.loads(path.read_text())
    data["stats"]["filters"] = {"min_chars": 3}  # 0.1 shape: a bare count
    path.write_text(json.dumps(data))
    assert store.load("clean", "part-a") is not None
    assert store.valid("clean", "part-a", "k1") is None


def test_keys_change_with_inputs_config_and_code():
    base = unit_key("clean", {"part-a": "h1"}, {"min_chars": 1})
    assert base == unit_key("clean", {"part-a": "h1"}, {"min_chars": 1})
    assert base != unit_key("clean", {"part-a": "h2"}, {"min_chars": 1})
    assert base != unit_key("clean", {"part-a": "h1"}, {"min_chars": 2})
    assert base != unit_key("dedup", {"part-a": "h1"}, {"min_chars": 1})
    assert base != unit_key("clean", {"part-a": "h1"}, {"min_chars": 1}, code_module="pipeline.sources.warc")
    assert code_fingerprint("clean") != code_fingerprint("dedup")


def test_stage_fingerprints_name_only_what_the_stage_imports():
    """A stage's resume key covers its own modules and libraries, found by following its
    imports: editing another stage's module, or upgrading a library it does not use,
    reruns nothing of it."""
    clean_files, clean_libs = module_closure(STAGE_MODULES["clean"])
    dedup_files, dedup_libs = module_closure(STAGE_MODULES["dedup"])
    assert "clean/rules.py" in clean_files and "records.py" in clean_files and "io.py" in clean_files
    assert not any(f.startswith(("dedup/", "tokenize/", "sources/", "card/")) for f in clean_files)
    assert "recipe.py" not in clean_files  # the recipe reaches a stage as its config, not as code
    assert "ftfy" in clean_libs and "datasketch" not in clean_libs and "tokenizers" not in clean_libs
    assert not any(f.startswith(("clean/", "tokenize/")) for f in dedup_files) and "ftfy" not in dedup_libs
    warc_files, warc_libs = module_closure("pipeline.sources.warc")
    assert {"sources/warc.py", "sources/base.py", "download.py"} <= set(warc_files)
    assert {"FastWARC", "Resiliparse"} <= set(warc_libs)
    assert not any(f.startswith(("clean/", "dedup/", "tokenize/")) for f in warc_files)
    files_only, _ = module_closure("pipeline.sources.files")
    assert "sources/warc.py" not in files_only and "download.py" not in files_only


def test_file_source_fingerprint_follows_content(tmp_path):
    data = tmp_path / "a.jsonl"
    data.write_text('{"text": "hello"}\n')
    recipe = parse_recipe({"name": "r", "sources": [{"name": "s", "type": "jsonl", "paths": ["a.jsonl"]}]}, tmp_path)
    source = recipe.source_objects(tmp_path / "out")[0]
    assert source_module(source) == "pipeline.sources.files"
    cache = HashCache(tmp_path / "hashes.json")
    before = source_fingerprint(source, cache)
    assert source_fingerprint(source, cache) == before
    data.write_text('{"text": "hello!"}\n')
    assert source_fingerprint(source, cache) != before
    cache.save()
    assert str(data.resolve()) in json.loads((tmp_path / "hashes.json").read_text())


def test_progress_summary_counts_rates_and_eta(tmp_path):
    log = ProgressLog(tmp_path)
    log.run_start("old")
    log.run_end("failed")
    log.run_start("r")
    log.stage_start("ingest", units=2, total_docs=None)
    log.unit_done("ingest", "a", 30)
    log.unit_done("ingest", "b", 70)
    log.stage_end("ingest", 100)
    log.stage_start("clean", units=4, total_docs=100, cached_units=1, cached_docs=25)
    log.unit_done("clean", "s1", 25)
    events = read_events(progress_path(tmp_path))
    assert events[0]["recipe"] == "r"  # only the latest run
    rows, run = summarize(events)
    by = {r.stage: r for r in rows}
    assert run["status"] == "running"
    assert by["ingest"].status == "done" and by["ingest"].total_docs == 100 and by["ingest"].units_done == 2
    clean = by["clean"]
    assert (clean.status, clean.docs_done, clean.cached_docs, clean.units_done) == ("running", 50, 25, 2)
    now = clean.started + 5
    assert clean.rate(now) == pytest.approx(5.0)  # 25 documents processed (not reused) in 5 s
    assert clean.eta(now) == pytest.approx(10.0)  # 50 left at 5/s
    assert by["dedup"].status == "pending"


def test_progress_command_prints_the_table(tmp_path, capsys):
    from flows.cli import main

    log = ProgressLog(tmp_path)
    log.run_start("demo")
    log.stage_start("ingest", units=1, total_docs=None)
    log.unit_done("ingest", "a", 1234)
    log.stage_end("ingest", 1234)
    log.stage_start("clean", units=2, total_docs=1234)
    log.unit_done("clean", "s1", 600)
    assert main(["progress", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "corpus demo: running" in out
    assert "1,234 / 1,234" in out and "600 / 1,234" in out
    log.run_end("failed")
    assert main(["progress", str(tmp_path)]) == 1
