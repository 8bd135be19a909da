"""The `warc` source on WARC/WET/WAT files the tests write themselves (tests/fixtures_corpus.py,
with warcio's writer): a Common Crawl-like crawl, one article as WARC/WET/WAT, wget output."""
from __future__ import annotations

import bz2
import gzip
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from fixtures_corpus import ARTICLE_URL, CRAWL_PAGES, WGET_PAGES, write_crawl
from pipeline.ingest import ingest_source
from pipeline.io import list_shards
from pipeline.recipe import parse_recipe
from httpserver import FileServer

CC_WARC = "web/crawl.warc.gz"
WHIRL = "web/article.warc"
N = len(CRAWL_PAGES)


def read(spec: dict, base: Path, out: Path):
    src = parse_recipe({"name": "t", "sources": [spec], "allow_private_networks": True}, base).source_objects(out)[0]
    batches = list(src.read())
    docs = pa.concat_tables([b.docs for b in batches])
    rej = pa.concat_tables([b.rejected for b in batches])
    return src, docs, rej


def test_crawl_warc_gives_chinese_and_russian_pages_with_urls(corpora, tmp_path):
    src, docs, rej = read({"name": "cc", "type": "warc", "paths": [str(corpora / CC_WARC)]}, tmp_path, tmp_path)
    # every capture is HTML with status 200: one document each; requests/metadata/warcinfo are counted, not documents
    assert docs.num_rows == N and rej.num_rows == 0
    counts = src.provenance[0]["records"]
    assert counts["response"] == N and counts["skipped:request"] == N
    assert counts["skipped:metadata"] == N and counts["skipped:warcinfo"] == 1 and counts["docs"] == N
    rows = docs.to_pylist()
    assert [r["url"] for r in rows] == [u for u, _, _ in CRAWL_PAGES]
    assert len({r["id"] for r in rows}) == N
    # the page text, and only it: every paragraph there, no navigation, script or footer
    texts = write_crawl(tmp_path / "again.warc.gz")
    for r, want in zip(rows, texts):
        for para in want.splitlines():
            assert para in r["text"], (r["url"], para[:40])
        assert "tracker" not in r["text"] and "All rights reserved" not in r["text"]
    han = [r for r in rows if len(re.findall(r"[\u4e00-\u9fff]", r["text"])) > 100]
    cyr = [r for r in rows if len(re.findall(r"[\u0400-\u04ff]", r["text"])) > 100]
    assert len(han) == 6 and len(cyr) == 2
    ru = next(r for r in cyr if r["url"] == "http://shop.example.ru/company/")
    assert any(ch in ru["text"] for ch in "ёщжы")  # windows-1251 page (charset only in the HTTP header) decoded
    meta = json.loads(ru["meta"])
    assert meta["charset"] == "windows-1251" and meta["content_type"] == "text/html" and meta["http_status"] == 200
    assert meta["warc_date"].startswith("2020-08-08") and meta["record_id"].startswith("<urn:uuid:")
    assert meta["warc_file"] == Path(CC_WARC).name
    assert "<div" not in ru["text"] and "<script" not in "".join(r["text"] for r in rows)
    assert src.provenance[0]["sha256"] and src.provenance[0]["size"] == (corpora / CC_WARC).stat().st_size


def test_wet_text_is_the_conversion_record(corpora, tmp_path):
    _, docs, _ = read({"name": "wet", "type": "warc", "paths": [str(corpora / (WHIRL + ".wet.gz"))]}, tmp_path, tmp_path)
    assert docs.num_rows == 1
    row = docs.to_pylist()[0]
    body = gzip.decompress((corpora / (WHIRL + ".wet.gz")).read_bytes()).decode()
    assert row["text"] in body and len(row["text"]) > 4000 and "software:" not in row["text"]
    assert row["url"] == ARTICLE_URL
    assert json.loads(row["meta"])["languages"] == "spa"


def test_warc_html_extraction_matches_the_wet_page(corpora, tmp_path):
    # Same capture as WARC (we extract) and WET (the crawler's text): the article's words must be there.
    _, warc, _ = read({"name": "a", "type": "warc", "paths": [str(corpora / (WHIRL + ".gz"))]}, tmp_path, tmp_path)
    _, wet, _ = read({"name": "b", "type": "warc", "paths": [str(corpora / (WHIRL + ".wet.gz"))]}, tmp_path, tmp_path)
    ours, theirs = warc.column("text")[0].as_py(), wet.column("text")[0].as_py()
    words = lambda t: set(re.findall(r"\w{5,}", t.lower()))
    assert len(words(ours) & words(theirs)) / len(words(ours)) > 0.95
    assert "copyright" not in words(ours) and "sitemap" not in words(ours)


def test_wat_and_wget_records_are_counted_not_documents(corpora, tmp_path):
    src, docs, rej = read({"name": "wat", "type": "warc", "paths": [str(corpora / (WHIRL + ".wat.gz"))]},
                          tmp_path, tmp_path)
    assert docs.num_rows == 0 and rej.num_rows == 0
    assert src.provenance[0]["records"]["skipped:metadata"] == 1
    src, docs, _ = read({"name": "wget", "type": "warc", "paths": [str(corpora / "web/wget-*.warc.gz")]},
                        tmp_path, tmp_path)
    assert docs.num_rows == sum(WGET_PAGES)
    assert [p["records"]["skipped:resource"] for p in src.provenance] == [2, 2]
    urls = docs.column("url").to_pylist()
    assert all(u.startswith("https://docs.example.net/") and u.endswith(".html") for u in urls)  # WARC/1.0 <uri> unwrapped


def test_ids_are_stable_and_ingest_conserves(corpora, tmp_path):
    spec = {"name": "cc", "type": "warc", "paths": [str(corpora / "web/*.warc.gz")]}
    _, a, _ = read(spec, tmp_path, tmp_path / "a")
    _, b, _ = read(spec, tmp_path, tmp_path / "b")
    assert a.num_rows == N + 1 + sum(WGET_PAGES)
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    src = parse_recipe({"name": "t", "sources": [spec], "allow_private_networks": True}, tmp_path).source_objects(tmp_path / "o")[0]
    stats = ingest_source(src, tmp_path / "o", 10)
    assert stats.docs_in == stats.docs_out + stats.docs_rejected == a.num_rows
    assert sum(pq.read_table(p).num_rows for p in list_shards(tmp_path / "o" / "documents")) == a.num_rows


def test_zstd_and_bz2_warc_read_like_gzip(corpora, tmp_path):
    raw = gzip.decompress((corpora / CC_WARC).read_bytes())
    (tmp_path / "x.warc.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    (tmp_path / "y.warc.bz2").write_bytes(bz2.compress(raw))
    (tmp_path / "z.warc").write_bytes(raw)
    _, ref, _ = read({"name": "g", "type": "warc", "paths": [str(corpora / CC_WARC)]}, tmp_path, tmp_path)
    assert ref.num_rows == N
    for name in ["x.warc.zst", "y.warc.bz2", "z.warc"]:
        _, docs, _ = read({"name": "g", "type": "warc", "paths": [name]}, tmp_path, tmp_path)
        assert docs.column("text").to_pylist() == ref.column("text").to_pylist()


@pytest.mark.parametrize("suffix", [".warc.gz", ".warc.zst", ".warc.bz2"])
def test_truncated_warc_is_a_named_error(corpora, tmp_path, suffix):
    raw = gzip.decompress((corpora / CC_WARC).read_bytes())
    comp = {".warc.gz": gzip.compress, ".warc.zst": zstandard.ZstdCompressor().compress, ".warc.bz2": bz2.compress}[suffix]
    data = comp(raw)
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(IOError, match=rf"cut{re.escape(suffix)}: cannot read the WARC file to the end.*truncated or corrupt"):
        read({"name": "c", "type": "warc", "paths": [f"cut{suffix}"]}, tmp_path, tmp_path)


def test_max_docs_and_main_content_switch(corpora, tmp_path):
    _, docs, _ = read({"name": "m", "type": "warc", "max_docs": 5, "paths": [str(corpora / CC_WARC)]}, tmp_path, tmp_path)
    assert docs.num_rows == 5
    _, full, _ = read({"name": "f", "type": "warc", "main_content": False, "paths": [str(corpora / CC_WARC)]},
                      tmp_path, tmp_path)
    _, main, _ = read({"name": "f", "type": "warc", "paths": [str(corpora / CC_WARC)]}, tmp_path, tmp_path)
    assert sum(map(len, full.column("text").to_pylist())) > sum(map(len, main.column("text").to_pylist()))
    assert all("Privacy" in t for t in full.column("text").to_pylist())  # the footer, kept without main_content


def test_warc_urls_fetched_over_http(corpora, tmp_path):
    with FileServer({"/c": corpora}) as srv:
        src, docs, _ = read({"name": "u", "type": "warc", "urls": [srv.url("/c/" + CC_WARC)],
                             "paths": [str(corpora / (WHIRL + ".wet.gz"))]}, tmp_path, tmp_path / "out")
    assert docs.num_rows == N + 1
    assert src.provenance[1]["url"] == srv.url("/c/" + CC_WARC) and src.provenance[1]["records"]["docs"] == N
    assert (tmp_path / "out" / "raw" / "MANIFEST.jsonl").exists()


@pytest.mark.shared
def test_real_common_crawl_warc_wet_wat_and_wget_files(shared_corpora, tmp_path):
    """The same reader on Common Crawl's and wget's own files (16 CC captures, a windows-1251 page)."""
    cc = "web/cc-main-2020-34_resiliparse_warcfile.warc.gz"
    src, docs, rej = read({"name": "cc", "type": "warc", "paths": [str(shared_corpora / cc)]}, tmp_path, tmp_path)
    assert docs.num_rows == 16 and rej.num_rows == 0
    counts = src.provenance[0]["records"]
    assert counts["response"] == 16 and counts["skipped:request"] == 17
    assert counts["skipped:metadata"] == 16 and counts["skipped:warcinfo"] == 1
    ru = next(r for r in docs.to_pylist() if r["url"] == "http://01spb.ru/company/")
    assert "пожарной безопасности" in ru["text"] and json.loads(ru["meta"])["charset"] == "windows-1251"
    whirl = "web/cc-main-2024-22_whirlwind.warc"
    _, wet, _ = read({"name": "wet", "type": "warc", "paths": [str(shared_corpora / (whirl + ".wet.gz"))]}, tmp_path, tmp_path)
    _, warc, _ = read({"name": "a", "type": "warc", "paths": [str(shared_corpora / (whirl + ".gz"))]}, tmp_path, tmp_path)
    assert wet.column("url")[0].as_py() == "https://an.wikipedia.org/wiki/Escopete"
    words = lambda t: set(re.findall(r"\w{5,}", t.lower()))
    ours, theirs = warc.column("text")[0].as_py(), wet.column("text")[0].as_py()
    assert len(words(ours) & words(theirs)) / len(words(ours)) > 0.8
    src, docs, _ = read({"name": "wget", "type": "warc", "paths": [str(shared_corpora / "web/dolma_wget_sample-*.warc.gz")]},
                        tmp_path, tmp_path)
    assert docs.num_rows == 22 + 15
    assert [p["records"]["skipped:resource"] for p in src.provenance] == [2, 2]


def test_config_errors_are_clear(tmp_path):
    from pipeline.recipe import RecipeError

    with pytest.raises(RecipeError, match="give `paths` or `urls`"):
        parse_recipe({"name": "t", "sources": [{"name": "w", "type": "warc"}]}, tmp_path)
    with pytest.raises(RecipeError, match="format"):
        parse_recipe({"name": "t", "sources": [{"name": "w", "type": "warc", "paths": ["x"], "format": "jsonl"}]}, tmp_path)


def _record(kind: str, uri: str, block: bytes, n: int, content_type="application/http; msgtype=response") -> bytes:
    head = (f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-{n:012d}>\r\n"
            f"WARC-Date: 2024-05-18T01:58:10Z\r\nWARC-Target-URI: {uri}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(block)}\r\n\r\n").encode()
    return head + block + b"\r\n\r\n"


def _http(status: str, ctype: str, body: bytes) -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def test_every_record_kind_is_a_document_a_rejection_or_a_counted_skip(tmp_path):
    zh = "<html><head><meta charset='gb2312'></head><body><p>" + "中文网页的正文内容。" * 20 + "</p></body></html>"
    records = [
        _record("response", "http://a.example/ok", _http("200 OK", "text/html; charset=utf-8",
                b"<html><body><h1>Title</h1><p>" + b"Body text of a real page. " * 20 + b"</p></body></html>"), 1),
        _record("response", "http://a.example/zh", _http("200 OK", "text/html", zh.encode("gb2312")), 2),
        _record("response", "http://a.example/doc.pdf", _http("200 OK", "application/pdf", b"%PDF-1.4 ..."), 3),
        _record("response", "http://a.example/moved", _http("301 Moved Permanently", "text/html", b"<a href=/x>x</a>"), 4),
        _record("revisit", "http://a.example/ok", _http("200 OK", "text/html", b""), 5),
        _record("response", "http://a.example/empty", _http("200 OK", "text/html", b"<html><body><script>x()</script></body></html>"), 6),
        _record("request", "http://a.example/ok", b"GET /ok HTTP/1.1\r\nHost: a.example\r\n\r\n", 7,
                "application/http; msgtype=request"),
    ]
    (tmp_path / "kinds.warc.gz").write_bytes(b"".join(gzip.compress(r) for r in records))  # one gzip member per record
    src, docs, rej = read({"name": "k", "type": "warc", "paths": ["kinds.warc.gz"]}, tmp_path, tmp_path)
    assert docs.column("url").to_pylist() == ["http://a.example/ok", "http://a.example/zh"]
    assert "中文网页的正文内容" in docs.column("text")[1].as_py()  # gb2312 found from the <meta> tag
    assert docs.column("id")[0].as_py() == "k/00000000-0000-0000-0000-000000000001"
    assert rej.column("filter").to_pylist() == ["empty_extraction"]
    reason = rej.column("reason")[0].as_py()
    assert "kinds.warc.gz" in reason and "000000000006" in reason and "http://a.example/empty" in reason
    counts = src.provenance[0]["records"]
    assert counts["skipped:non_html"] == 1 and counts["skipped:http_status_not_200"] == 1
    assert counts["skipped:revisit"] == 1 and counts["skipped:request"] == 1
    assert counts["docs"] == 2 and counts["rejected"] == 1
    # conservation at ingest: the rejected page is counted, the skipped records are not documents
    src2 = parse_recipe({"name": "t", "sources": [{"name": "k", "type": "warc", "paths": ["kinds.warc.gz"]}]},
                        tmp_path).source_objects(tmp_path / "o")[0]
    stats = ingest_source(src2, tmp_path / "o", 10)
    assert (stats.docs_in, stats.docs_out, stats.docs_rejected) == (3, 2, 1)
