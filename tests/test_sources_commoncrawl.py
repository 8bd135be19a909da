"""The `commoncrawl` source against a loopback mirror with Common Crawl's layout."""
from __future__ import annotations

import gzip
import json
import shutil

import pyarrow as pa
import pytest

from pipeline.recipe import RecipeError, parse_recipe
from fixtures_corpus import ARTICLE_URL, CRAWL_PAGES
from httpserver import FileServer

CRAWL = "CC-MAIN-2024-22"
SEG = "1715971057216.39"
WET = f"crawl-data/{CRAWL}/segments/{SEG}/wet/CC-MAIN-20240518011039-20240518041039-00000.warc.wet.gz"
WARCS = [f"crawl-data/{CRAWL}/segments/{SEG}/warc/CC-MAIN-20240518011039-20240518041039-00000.warc.gz",
         f"crawl-data/{CRAWL}/segments/1715971999999.11/warc/CC-MAIN-20200808165417-20200808195417-00395.warc.gz"]


@pytest.fixture()
def mirror(corpora, tmp_path):
    """A directory laid out like data.commoncrawl.org, holding the generated WARC/WET files
    (tests/fixtures_corpus.py): one article as WET and WARC, and a crawl of several pages."""
    root = tmp_path / "mirror"
    for rel, src in [(WET, "article.warc.wet.gz"), (WARCS[0], "article.warc.gz"), (WARCS[1], "crawl.warc.gz")]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(corpora / "web" / src, root / rel)
    (root / f"crawl-data/{CRAWL}/wet.paths.gz").write_bytes(gzip.compress((WET + "\n").encode()))
    (root / f"crawl-data/{CRAWL}/warc.paths.gz").write_bytes(gzip.compress("\n".join(WARCS).encode() + b"\n"))
    with FileServer({"/cc": root}) as srv:
        yield srv


def read(spec, tmp_path):
    src = parse_recipe({"name": "t", "sources": [spec], "allow_private_networks": True}, tmp_path).source_objects(tmp_path / "out")[0]
    batches = list(src.read())
    return src, pa.concat_tables([b.docs for b in batches])


def test_sample_from_listing_wet(mirror, tmp_path):
    src, docs = read({"name": "cc", "type": "commoncrawl", "crawl": CRAWL, "sample": 1,
                      "base_url": mirror.url("/cc/"), "backoff_base": 0.01}, tmp_path)
    assert docs.num_rows == 1 and docs.column("url")[0].as_py() == ARTICLE_URL
    assert [p.get("role") for p in src.provenance] == ["listing", None]
    assert src.provenance[1]["url"] == mirror.url("/cc/" + WET)
    manifest = [json.loads(l) for l in (tmp_path / "out" / "raw" / "MANIFEST.jsonl").read_text().splitlines()]
    assert {m["url"] for m in manifest} == {mirror.url(f"/cc/crawl-data/{CRAWL}/wet.paths.gz"), mirror.url("/cc/" + WET)}


def test_warc_kind_by_name_segment_and_full_path(mirror, tmp_path):
    base = {"name": "cc", "type": "commoncrawl", "crawl": CRAWL, "kind": "warc", "base_url": mirror.url("/cc")}
    _, by_segment = read({**base, "segments": [SEG]}, tmp_path / "a")
    assert by_segment.num_rows == 1
    _, by_name = read({**base, "files": [WARCS[1].rsplit("/", 1)[1]]}, tmp_path / "b")
    assert by_name.num_rows == len(CRAWL_PAGES)
    n = len(mirror.requests)
    src, full = read({**base, "files": [WARCS[0]]}, tmp_path / "c")
    assert full.num_rows == 1 and len(src.provenance) == 1  # a full path needs no listing
    assert [r["path"] for r in mirror.requests[n:]] == ["/cc/" + WARCS[0]]


def test_seeded_sample_is_deterministic(mirror, tmp_path):
    spec = {"name": "cc", "type": "commoncrawl", "crawl": CRAWL, "kind": "warc", "sample": 1, "seed": 3, "allow_private_networks": True,
            "base_url": mirror.url("/cc")}
    a = parse_recipe({"name": "t", "sources": [spec]}, tmp_path).source_objects(tmp_path / "a")[0].file_specs()
    b = parse_recipe({"name": "t", "sources": [spec]}, tmp_path).source_objects(tmp_path / "b")[0].file_specs()
    assert a == b and len(a) == 1


def test_errors_name_what_is_missing(mirror, tmp_path):
    base = {"name": "cc", "type": "commoncrawl", "crawl": CRAWL, "base_url": mirror.url("/cc")}
    with pytest.raises(ValueError, match="not in the CC-MAIN-2024-22 wet listing"):
        read({**base, "files": ["nope.warc.wet.gz"]}, tmp_path)
    with pytest.raises(ValueError, match="sample 5 > 1 files"):
        read({**base, "sample": 5}, tmp_path)
    with pytest.raises(RecipeError, match="crawl"):
        parse_recipe({"name": "t", "sources": [{**base, "crawl": "2024-22", "sample": 1}]}, tmp_path)
    with pytest.raises(RecipeError, match="give `files`, `segments` or `sample`"):
        parse_recipe({"name": "t", "sources": [base]}, tmp_path)
