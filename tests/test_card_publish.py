"""The output folder as users open it: a corpus with empty shards (a source the filters
reject entirely, a mirror that dedup removes completely) loads in `datasets`, `polars`
and `duckdb` config by config, and its card is safe to publish (no path of the build
machine, no control bytes). Built with the stage functions (no Prefect)."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from card_corpus import WEB, build_corpus

# Documents of raw bytes and control characters, every one too short for the quality filters.
BINARY_DOCS = ["\x00\x01\x02 PK\x03\x04 \x1b[31mred\x1b[0m \x07\x08" + "\x00" * 40 + f" blob {i}" for i in range(6)]


def _long_pages(corpora: Path, n: int) -> list[dict]:
    pages = []
    with gzip.open(corpora / WEB, "rt", encoding="utf-8") as f:
        for line in f:
            page = json.loads(line)
            if len(page["text"].split()) >= 400:
                pages.append({"id": page["id"], "text": page["text"]})
            if len(pages) == n:
                return pages
    return pages


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, corpora):
    """Recipe in ROOT/recipes (relative paths into ROOT/data), output in ROOT/out."""
    root = tmp_path_factory.mktemp("publish")
    data = root / "data"
    data.mkdir()
    pages = _long_pages(corpora, 6)
    with open(data / "web.jsonl", "w", encoding="utf-8") as f:
        for p in pages:
            f.write(json.dumps(p) + "\n")
    with open(data / "mirror.jsonl", "w", encoding="utf-8") as f:  # every page again, verbatim; after web in shard order, so dedup drops it all
        for p in pages:
            f.write(json.dumps({"id": "mirror-" + p["id"], "text": p["text"]}) + "\n")
    with open(data / "binary.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(BINARY_DOCS):
            f.write(json.dumps({"id": f"bin-{i}", "text": text}) + "\n")
    shutil.copyfile(corpora / "classic" / "play.txt", data / "play.txt")
    recipe = {
        "name": "publish-test",
        "sources": [
            {"name": "web", "type": "jsonl", "license": "ODC-By-1.0", "paths": ["../data/web.jsonl"]},
            {"name": "web-mirror", "type": "jsonl", "license": "ODbL-1.0", "paths": ["../data/mirror.jsonl"]},
            {"name": "binary", "type": "jsonl", "license": "PDDL-1.0", "paths": ["../data/binary.jsonl"]},
            {"name": "play", "type": "text", "license": "CC-BY-4.0", "paths": ["../data/play.txt"],
             "separator": "\n\n", "max_docs": 150},
        ],
        "ingest": {"shard_docs": 200},
        "tokenize": {"vocab_size": 512, "val_fraction": 0.1, "seed": 7},
    }
    out = root / "out"
    manifest = build_corpus(out, None, recipe, recipe_dir=root / "recipes")
    return root, out, manifest.dump()


def _card_meta(out: Path) -> dict:
    text = (out / "README.md").read_text(encoding="utf-8")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_corpus_has_empty_shards(corpus):
    _, out, manifest = corpus
    sources = manifest["stages"]["ingest"]["sources"]
    assert sources["web-mirror"]["docs_out"] == 6 and sources["binary"]["docs_out"] == 6
    assert manifest["stages"]["tokenize"]["documents_per_source"].get("web-mirror", 0) == 0
    assert pq.read_metadata(out / "clean" / "part-binary-00000.parquet").num_rows == 0
    assert pq.read_metadata(out / "dedup" / "part-web-mirror-00000.parquet").num_rows == 0

def _empty_files(out: Path, folders: tuple[str, ...]) -> list[Path]:
    return [p for f in folders for p in (out / f).rglob("*.parquet") if pq.read_metadata(p).num_rows == 0]


def test_empty_files_have_no_row_group(corpus):
    """An empty file holds the schema and no row group (an empty row group is what `datasets` refuses)."""
    _, out, _ = corpus
    empty = _empty_files(out, ("documents", "clean", "rejected", "clusters"))
    assert {p.parent.name for p in empty} >= {"clean", "rejected"}, empty
    for p in empty:
        assert pq.read_metadata(p).num_row_groups == 0, p


def test_empty_dedup_shard_has_no_row_group(corpus):
    _, out, _ = corpus
    empty = _empty_files(out, ("dedup",))
    assert empty
    for p in empty:
        assert pq.read_metadata(p).num_row_groups == 0, p


def _expected_rows(manifest: dict) -> dict[tuple[str, str], int]:
    st = manifest["stages"]
    return {
        ("documents", "train"): st["dedup"]["docs_out"],
        ("tokens", "train"): st["tokenize"]["docs_train"],
        ("tokens", "validation"): st["tokenize"]["docs_val"],
        ("rejected", "train"): sum(st[s]["docs_rejected"] for s in ("ingest", "clean", "dedup", "tokenize")),
        ("clusters", "train"): st["dedup"]["docs_in_clusters"],
    }


def test_every_declared_config_loads_in_datasets_polars_duckdb(corpus, tmp_path):
    import datasets
    import duckdb
    import polars as pl

    _, out, manifest = corpus
    configs = _card_meta(out)["configs"]
    want = _expected_rows(manifest)
    assert {c["config_name"] for c in configs} == {"documents", "tokens", "rejected", "clusters"}
    seen = set()
    for c in configs:
        for files in c["data_files"]:
            key = (c["config_name"], files["split"])
            seen.add(key)
            glob = str(out / files["path"])
            ds = datasets.load_dataset(str(out), c["config_name"], split=files["split"],
                                       cache_dir=str(tmp_path / "hf-cache"))
            assert ds.num_rows == want[key], key
            assert pl.scan_parquet(glob).select(pl.len()).collect().item() == want[key], key
            assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall()[0][0] == want[key], key
    assert seen == set(want)


def test_corpus_tokenizer_loads_with_named_special_tokens(corpus):
    from transformers import AutoTokenizer

    from pipeline.tokenize.tokenizer import EOT, PAD, load_tokenizer, special_ids

    _, out, _ = corpus
    ids = special_ids(load_tokenizer(out / "tokenizer.json"))
    tok = AutoTokenizer.from_pretrained(str(out))
    assert (tok.eos_token, tok.pad_token) == (EOT, PAD)
    assert (tok.eos_token_id, tok.pad_token_id) == (ids["eot_id"], ids["pad_id"])
    text = "Exact round trip: spaces  ,  punctuation . and tabs\t!"
    assert tok.decode(tok(text)["input_ids"]) == text
    batch = tok(["short", "a longer line of text"], padding=True)
    assert batch["input_ids"][0][-1] == ids["pad_id"]
    assert json.loads((out / "special_tokens_map.json").read_text())["eos_token"] == EOT


def test_spdx_licenses_become_hub_ids(corpus):
    from huggingface_hub import DatasetCard

    from pipeline.card.markdown import card_metadata

    _, out, _ = corpus
    meta = DatasetCard.load(out / "README.md").data.to_dict()
    assert sorted(meta["license"]) == ["cc-by-4.0", "odbl", "odc-by", "pddl"]
    assert "license_name" not in meta and "license_link" not in meta
    # `other` only where the Hub has no id: named, and linked when it is an SPDX id
    figures = {"name": "x", "summary": {}, "funnel": {"stages": []}, "duplicates": {},
               "sources": [{"name": lic, "license": lic} for lic in ("GPL-3.0-or-later", "GFDL-1.3-only", "MIT-0")]}
    meta = card_metadata(figures)
    assert meta["license"] == ["gfdl", "gpl-3.0", "other"]
    assert meta["license_name"] == "mit-0" and meta["license_link"] == "https://spdx.org/licenses/MIT-0.html"


def test_card_is_safe_to_publish(corpus):
    """No folder of the build machine, no control byte, bounded escaped excerpts, links only
    to files inside the output folder."""
    import re

    from pipeline.card.figures import EXAMPLE_CHARS

    root, out, _ = corpus
    readme = (out / "README.md").read_bytes()
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", readme)
    for name in ("README.md", "card.json"):
        text = (out / name).read_text(encoding="utf-8")
        assert str(root) not in text and "/tmp/" not in text, name
    text = readme.decode("utf-8")
    assert "\nopencorpus run publish-test.yaml --output ../out\n" in text
    assert "| ../data/web.jsonl |" in text
    figures = json.loads((out / "card.json").read_text(encoding="utf-8"))
    binary = [e for x in figures["funnel"]["filters"] for e in x["examples"] if e["id"].startswith("bin-")]
    assert binary and all(e["text"].startswith("\\x00\\x01\\x02 PK\\x03\\x04 \\x1b") for e in binary)
    assert all(len(e["text"]) <= EXAMPLE_CHARS for x in figures["funnel"]["filters"] for e in x["examples"])
    assert "\\\\x00\\\\x01" in text  # shown escaped in the Markdown too
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for target in links:
        if target.startswith("#"):
            continue
        path = (out / target).resolve()
        assert path.is_relative_to(out.resolve()) and path.is_file(), target
