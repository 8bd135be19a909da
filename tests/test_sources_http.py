"""Downloads over real loopback HTTP with injected faults, and the `http` source end to end."""
from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.download import ChecksumError, Downloader, DownloadError, RetryPolicy, local_name
from pipeline.ingest import ingest_source
from pipeline.recipe import parse_recipe
from fixtures_corpus import ARTICLE_URL, CRAWL_PAGES
from httpserver import FileServer

FAST = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_max=0.05)
# Served from the generated corpora (tests/fixtures_corpus.py). The JSONL files are stored
# gzip level 0 so they are big enough (180 kB, 32 kB) for connections cut at fixed offsets.
JSONL_GZ = "/corpora/web/pages.jsonl.gz"
SMALL_GZ = "/corpora/web/small.jsonl.gz"
WARC_GZ = "/corpora/web/crawl.warc.gz"
WET_GZ = "/corpora/web/article.warc.wet.gz"


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module")
def served(corpora, tmp_path_factory) -> Path:
    """The files the server offers under /corpora: web/ (JSONL, WARC, WET) and classic/ (text)."""
    root = tmp_path_factory.mktemp("served")
    (root / "web").mkdir()
    raw = gzip.decompress((corpora / "web" / "pages.jsonl.gz").read_bytes())
    (root / "web" / "pages.jsonl.gz").write_bytes(gzip.compress(raw, compresslevel=0, mtime=0))
    small = b"".join(raw.splitlines(keepends=True)[:10])
    (root / "web" / "small.jsonl.gz").write_bytes(gzip.compress(small, compresslevel=0, mtime=0))
    for name in ("crawl.warc.gz", "article.warc.wet.gz"):
        shutil.copy(corpora / "web" / name, root / "web" / name)
    shutil.copytree(corpora / "classic", root / "classic")
    return root


def size(served: Path, url_path: str) -> int:
    return (served / url_path.removeprefix("/corpora/")).stat().st_size


@pytest.fixture()
def server(served, tmp_path):
    extra = tmp_path / "served"
    extra.mkdir()
    with FileServer({"/corpora": served, "/extra": extra}) as srv:
        srv.extra = extra
        yield srv


def source(spec: dict, tmp_path: Path):
    recipe = parse_recipe({"name": "t", "sources": [spec], "allow_private_networks": True}, tmp_path)  # a loopback server
    return recipe.source_objects(tmp_path / "out")[0]


def test_download_is_byte_identical_and_recorded(server, served, tmp_path):
    want = (served / JSONL_GZ.removeprefix("/corpora/")).read_bytes()
    d = Downloader(tmp_path / "raw", allow_private_networks=True, retry=FAST, license="ODC-By", source="s")
    e = d.fetch({"url": server.url(JSONL_GZ), "sha256": sha(want), "size": len(want)})
    path = tmp_path / "raw" / local_name(server.url(JSONL_GZ))
    assert path.read_bytes() == want
    assert e["sha256"] == sha(want) and e["size"] == len(want) and e["sha256_verified"]
    lines = [json.loads(l) for l in (tmp_path / "raw" / "MANIFEST.jsonl").read_text().splitlines()]
    assert len(lines) == 1
    rec = lines[0]
    assert rec["url"] == server.url(JSONL_GZ) and rec["license"] == "ODC-By"
    assert rec["etag"] and rec["last_modified"] and rec["fetched_at"]
    assert not list((tmp_path / "raw").rglob("*.part*"))
    # a rerun reuses the verified file without a GET
    n = len(server.requests)
    assert d.fetch(server.url(JSONL_GZ))["reused"] is True
    assert len(server.requests) == n


def test_broken_connection_resumes_with_range_byte_identical(server, served, tmp_path, caplog):
    want = (served / JSONL_GZ.removeprefix("/corpora/")).read_bytes()
    server.fault(JSONL_GZ, drop_at=len(want) // 2, times=1)
    cut = size(served, WARC_GZ) // 2
    server.fault(WARC_GZ, drop_at=cut, times=2)  # twice, at the same offset of the file
    caplog.set_level(logging.WARNING, logger="pipeline.download")
    d = Downloader(tmp_path / "raw", allow_private_networks=True, retry=FAST, concurrency=2)
    entries = d.fetch_all([server.url(JSONL_GZ), server.url(WARC_GZ)])
    assert Path(entries[0]["local_path"]).read_bytes() == want
    warc = (served / WARC_GZ.removeprefix("/corpora/")).read_bytes()
    assert Path(entries[1]["local_path"]).read_bytes() == warc
    assert entries[0]["resumed"] and entries[0]["attempts"] == 2
    hits = server.hits(JSONL_GZ)
    assert hits[0]["range"] is None and hits[0]["dropped_after"] == len(want) // 2
    assert hits[1]["range"] == f"bytes={len(want) // 2}-" and hits[1]["status"] == 206 and hits[1]["if_range"]
    # the WARC: first drop at `cut`, then the resumed request starts there and is not cut again
    assert [h["range"] for h in server.hits(WARC_GZ)] == [None, f"bytes={cut}-"]
    assert any("resuming at byte" in r.getMessage() and JSONL_GZ in r.getMessage() for r in caplog.records)


def test_killed_run_partial_file_resumes_on_next_run(server, served, tmp_path):
    want = (served / WARC_GZ.removeprefix("/corpora/")).read_bytes()
    cut = len(want) * 2 // 3
    server.fault(WARC_GZ, drop_at=cut, times=1)
    with pytest.raises(DownloadError, match="giving up after 1 attempts"):
        Downloader(tmp_path / "raw", allow_private_networks=True, retry=RetryPolicy(max_attempts=1)).fetch(server.url(WARC_GZ))
    part = (tmp_path / "raw" / local_name(server.url(WARC_GZ))).with_suffix(".gz.part")
    assert part.stat().st_size == cut  # nothing under the final name
    assert not part.with_suffix("").exists()
    e = Downloader(tmp_path / "raw", allow_private_networks=True, retry=FAST).fetch({"url": server.url(WARC_GZ), "sha256": sha(want)})
    assert Path(e["local_path"]).read_bytes() == want and e["resumed"]
    assert server.hits(WARC_GZ)[-1]["range"] == f"bytes={cut}-"


def test_changed_file_restarts_instead_of_splicing(server, served, tmp_path):
    # A partial file from a previous version: the server's ETag no longer matches, so
    # If-Range makes it send the whole new file, never a splice of the two.
    server.fault(SMALL_GZ, drop_at=20_000, times=1, body=b"x" * 40_000)
    with pytest.raises(DownloadError):
        Downloader(tmp_path / "raw", allow_private_networks=True, retry=RetryPolicy(max_attempts=1)).fetch(server.url(SMALL_GZ))
    server.faults.clear()
    want = (served / SMALL_GZ.removeprefix("/corpora/")).read_bytes()
    e = Downloader(tmp_path / "raw", allow_private_networks=True, retry=FAST).fetch(server.url(SMALL_GZ))
    assert Path(e["local_path"]).read_bytes() == want
    assert server.hits(SMALL_GZ)[-1]["status"] == 200  # Range was sent, If-Range failed, full body


def test_restart_then_broken_connection_still_records_the_true_sha256(server, served, tmp_path):
    # old partial file -> the server sends the new file whole (If-Range fails) -> the
    # connection breaks in that restart -> resume: the hash must cover exactly the new bytes.
    server.fault(SMALL_GZ, drop_at=20_000, times=1, body=b"x" * 40_000)
    with pytest.raises(DownloadError):
        Downloader(tmp_path / "raw", allow_private_networks=True, retry=RetryPolicy(max_attempts=1)).fetch(server.url(SMALL_GZ))
    server.fault(SMALL_GZ, drop_at=10_000, times=1)
    want = (served / SMALL_GZ.removeprefix("/corpora/")).read_bytes()
    e = Downloader(tmp_path / "raw", allow_private_networks=True, retry=FAST).fetch(server.url(SMALL_GZ))
    assert [(h["range"], h["status"]) for h in server.hits(SMALL_GZ)[1:]] == [("bytes=20000-", 200), ("bytes=10000-", 206)]
    assert Path(e["local_path"]).read_bytes() == want and e["sha256"] == sha(want)


def test_retries_on_429_and_5xx_are_bounded_and_logged(server, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="pipeline.download")
    server.fault(SMALL_GZ, status=[503, 429, 500], retry_after="0")
    e = Downloader(tmp_path / "raw", allow_private_networks=True, retry=FAST).fetch(server.url(SMALL_GZ))
    assert e["attempts"] == 4
    msgs = [r.getMessage() for r in caplog.records if SMALL_GZ in r.getMessage()]
    assert [m.split("(")[1].split(")")[0] for m in msgs] == ["HTTP 503", "HTTP 429", "HTTP 500"]
    assert all("retrying in" in m for m in msgs)

    server.fault(WET_GZ, status=[500] * 10)
    with pytest.raises(DownloadError) as err:
        Downloader(tmp_path / "raw", allow_private_networks=True, retry=FAST).fetch(server.url(WET_GZ))
    assert server.url(WET_GZ) in str(err.value) and "after 4 attempts" in str(err.value) and "HTTP 500" in str(err.value)
    assert len(server.hits(WET_GZ)) == 4  # bounded: max_attempts requests, then stop
    assert not (tmp_path / "raw" / local_name(server.url(WET_GZ))).exists()


def test_backoff_is_capped_exponential_with_jitter():
    p = RetryPolicy(backoff_base=1, backoff_max=10, jitter=0.5)
    for failures, lo in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)]:
        waits = [p.delay(failures) for _ in range(50)]
        assert all(lo <= w <= lo * 1.5 for w in waits)
        assert len(set(waits)) > 1  # jittered
    assert p.delay(1, retry_after=7) >= 7 and p.delay(1, retry_after=500) <= 15


def test_checksum_mismatch_names_url_and_file_is_never_used(server, served, tmp_path):
    real = (served / SMALL_GZ.removeprefix("/corpora/")).read_bytes()
    server.fault(SMALL_GZ, body=gzip.compress(b'{"text": "tampered"}\n'))
    good = server.url(WET_GZ)
    src = source({"name": "mix", "type": "http", "backoff_base": 0.01,
                  "urls": [good, {"url": server.url(SMALL_GZ), "sha256": sha(real)}]}, tmp_path)
    with pytest.raises(ChecksumError) as err:
        next(iter(src.read()))  # fails before the first document
    msg = str(err.value)
    assert server.url(SMALL_GZ) in msg and "sha256 mismatch" in msg and sha(real) in msg
    raw = tmp_path / "out" / "raw"
    assert not (raw / local_name(server.url(SMALL_GZ))).exists()
    assert not list(raw.rglob("*.part"))
    # the good file of the same source was kept and recorded, so a rerun will not fetch it again
    assert (raw / local_name(good)).exists()
    assert [json.loads(l)["url"] for l in (raw / "MANIFEST.jsonl").read_text().splitlines()] == [good]


def test_size_mismatch_is_refused_before_download(server, served, tmp_path):
    with pytest.raises(ChecksumError, match="expected 10 bytes"):
        Downloader(tmp_path / "raw", allow_private_networks=True, retry=FAST).fetch({"url": server.url(SMALL_GZ), "size": 10})
    assert not [p for p in (tmp_path / "raw").rglob("*") if p.is_file() and not p.name.endswith(".lock")]


def test_truncated_gzip_is_a_named_error(server, served, tmp_path):
    server.fault(JSONL_GZ, truncate=size(served, JSONL_GZ) // 2)  # served as if complete: only the gzip stream knows
    src = source({"name": "trunc", "type": "http", "urls": [server.url(JSONL_GZ)]}, tmp_path)
    with pytest.raises(IOError) as err:
        for _ in src.read():
            pass
    assert "truncated or corrupt" in str(err.value) and "pages.jsonl.gz" in str(err.value)


def test_truncated_warc_gz_is_a_named_error(server, served, tmp_path):
    server.fault(WARC_GZ, truncate=size(served, WARC_GZ) // 2)
    src = source({"name": "w", "type": "http", "urls": [server.url(WARC_GZ)]}, tmp_path)
    with pytest.raises(IOError, match=r"crawl\.warc\.gz.*truncated"):
        list(src.read())


def test_formats_detected_and_read_like_local_files(server, served, tmp_path):
    # The same JSONL in every compression, a Parquet file, text, WARC, WET, and a file whose
    # name says nothing (detected from its bytes).
    raw = gzip.decompress((served / SMALL_GZ.removeprefix("/corpora/")).read_bytes())
    ex = server.extra
    (ex / "d.jsonl").write_bytes(raw)
    (ex / "d.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    (ex / "d.jsonl.bz2").write_bytes(bz2.compress(raw))
    (ex / "noname").write_bytes(gzip.compress(raw))
    rows = [json.loads(l) for l in raw.decode().splitlines()]
    pq.write_table(pa.Table.from_pylist([{"id": r["id"], "text": r["text"]} for r in rows]), ex / "d.parquet")
    shutil.copy(served / "classic" / "stories.txt", ex / "t.txt")
    urls = [server.url(p) for p in ["/extra/d.jsonl", "/extra/d.jsonl.zst", "/extra/d.jsonl.bz2", "/extra/noname",
                                     "/extra/d.parquet", "/extra/t.txt", WET_GZ, WARC_GZ]]
    src = source({"name": "fmt", "type": "http", "urls": urls, "concurrency": 3, "license": "test"}, tmp_path)
    batches = list(src.read())
    docs = pa.concat_tables([b.docs for b in batches])
    assert [p["format"] for p in src.provenance] == ["jsonl"] * 4 + ["parquet", "text", "warc", "warc"]
    texts = docs.column("text").to_pylist()
    for k in range(5):  # each JSONL/Parquet variant gives the same 10 texts
        assert texts[k * 10:(k + 1) * 10] == [r["text"] for r in rows]
    assert docs.slice(50, 1).column("path")[0].as_py().endswith("t.txt")
    web = docs.slice(51)
    assert web.column("url")[0].as_py() == ARTICLE_URL
    assert web.num_rows == 1 + len(CRAWL_PAGES)
    for p in src.provenance:
        assert p["sha256"] == sha(Path(p["local_path"]).read_bytes()) and p["size"] > 0 and p["license"] == "test"


def test_manifest_file_and_url(server, served, tmp_path):
    real = (served / SMALL_GZ.removeprefix("/corpora/")).read_bytes()
    lines = [{"url": server.url(SMALL_GZ), "sha256": sha(real), "size": len(real)}, {"url": server.url(WET_GZ)}]
    (server.extra / "files.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    (tmp_path / "files.jsonl").write_text((server.extra / "files.jsonl").read_text())
    for where in ["files.jsonl", server.url("/extra/files.jsonl")]:
        src = source({"name": "m", "type": "http", "manifest": where}, tmp_path)
        docs = pa.concat_tables([b.docs for b in src.read()])
        assert docs.num_rows == 11
        assert [p["sha256_verified"] for p in src.provenance] == [True, False]


def test_bounded_concurrency(server, tmp_path):
    names = [f"f{i}.txt" for i in range(8)]
    for n in names:
        (server.extra / n).write_bytes(b"hello " * 200_000)
    server.delay = 0.05
    Downloader(tmp_path / "raw", allow_private_networks=True, retry=FAST, concurrency=3).fetch_all([server.url(f"/extra/{n}") for n in names])
    assert 1 <= server.max_in_flight <= 3


def test_ingest_writes_documents_and_provenance(server, tmp_path):
    src = source({"name": "wet", "type": "http", "license": "CC-ToU", "urls": [server.url(WET_GZ)]}, tmp_path)
    stats = ingest_source(src, tmp_path / "out", 1000)
    assert stats.docs_out == 1 and stats.docs_rejected == 0
    prov = stats.provenance[0].model_dump()
    assert prov["url"] == server.url(WET_GZ) and prov["records"]["conversion"] == 1
    assert prov["records"]["skipped:warcinfo"] == 1


def test_two_sources_naming_one_url_download_it_once(server, served, tmp_path):
    import threading

    server.delay = 0.2
    url = server.url(JSONL_GZ)
    results = []
    threads = [threading.Thread(target=lambda: results.append(Downloader(tmp_path / "raw", allow_private_networks=True, retry=FAST).fetch(url)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(server.hits(JSONL_GZ)) == 1
    assert sorted(bool(r.get("reused")) for r in results) == [False, True]
    assert Path(results[0]["local_path"]).read_bytes() == (served / JSONL_GZ.removeprefix("/corpora/")).read_bytes()


def test_same_file_name_under_two_urls_gets_distinct_ids(server, served, tmp_path):
    for d in ("a", "b"):
        (server.extra / d).mkdir()
        (server.extra / d / "0000.txt").write_text(f"document from {d}\n")
    src = source({"name": "dup", "type": "http", "urls": [server.url("/extra/a/0000.txt"), server.url("/extra/b/0000.txt")]},
                 tmp_path)
    stats = ingest_source(src, tmp_path / "out", 100)
    assert stats.docs_out == 2 and stats.docs_rejected == 0
    ids = pa.concat_tables([pq.read_table(tmp_path / "out" / p) for p in stats.shards]).column("id").to_pylist()
    assert ids == ["dup/extra/a/0000.txt", "dup/extra/b/0000.txt"]


def test_config_errors_name_source_and_field(tmp_path):
    from pipeline.recipe import RecipeError

    with pytest.raises(RecipeError, match=r"sources\[0\] \(h\): urls\[0\]\.url: '/data/x\.jsonl' is not an http\(s\) URL"):
        parse_recipe({"name": "t", "sources": [{"name": "h", "type": "http", "urls": ["/data/x.jsonl"]}]}, tmp_path)
    with pytest.raises(RecipeError, match="sha256"):
        parse_recipe({"name": "t", "sources": [{"name": "h", "type": "http",
                                                "urls": [{"url": "https://x.org/a", "sha256": "abc"}]}]}, tmp_path)
    with pytest.raises(RecipeError, match="give `urls` or `manifest`"):
        parse_recipe({"name": "t", "sources": [{"name": "h", "type": "http"}]}, tmp_path)
    with pytest.raises(RecipeError, match="base_url: 'ftp://x' is not an http"):
        parse_recipe({"name": "t", "sources": [{"name": "c", "type": "commoncrawl", "crawl": "CC-MAIN-2024-22",
                                                "sample": 1, "base_url": "ftp://x"}]}, tmp_path)
    with pytest.raises(RecipeError, match="retries"):
        parse_recipe({"name": "t", "sources": [{"name": "h", "type": "http", "urls": ["https://x.org/a"], "retries": 3}]},
                     tmp_path)


def test_bad_manifest_line_is_named(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"url": "https://x.org/a.jsonl"}\n{"url": "https://x.org/b", "sha256": "nothex"}\n')
    src = source({"name": "m", "type": "http", "manifest": "m.jsonl"}, tmp_path)
    with pytest.raises(ValueError, match=r"manifest \S*m\.jsonl:2: not a \{url, sha256, size\} entry: sha256"):
        src.file_specs()


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst", ".jsonl.bz2"])
def test_truncated_compressed_jsonl_is_a_named_error_in_every_codec(server, served, suffix):
    raw = gzip.decompress((served / JSONL_GZ.removeprefix("/corpora/")).read_bytes())
    comp = {".jsonl.gz": gzip.compress, ".jsonl.zst": zstandard.ZstdCompressor().compress, ".jsonl.bz2": bz2.compress}[suffix]
    data = comp(raw)
    (server.extra / f"d{suffix}").write_bytes(data)
    server.fault(f"/extra/d{suffix}", truncate=len(data) // 2)
    tmp = server.extra.parent
    src = source({"name": "t", "type": "http", "urls": [server.url(f"/extra/d{suffix}")]}, tmp)
    with pytest.raises(IOError, match=rf"d{re.escape(suffix)}: cannot read compressed stream to the end.*truncated"):
        for _ in src.read():
            pass


def test_flaky_network_many_files_all_byte_identical(server, served, tmp_path):
    files = sorted((served / "web").glob("*.gz")) + sorted((served / "classic").glob("*.txt"))
    for i, f in enumerate(files):  # every file: a 503 first, then a cut at 1/2, 1/3 or 1/4 of its body
        url_path = f"/corpora/{f.parent.name}/{f.name}"
        size = f.stat().st_size
        server.fault(url_path, status=[503], drop_at=max(1, size // (2 + i % 3)), times=1)
    specs = [server.url(f"/corpora/{f.parent.name}/{f.name}") for f in files]
    entries = Downloader(tmp_path / "raw", allow_private_networks=True, retry=FAST, concurrency=3).fetch_all(specs)
    for f, e in zip(files, entries):
        data = f.read_bytes()
        assert Path(e["local_path"]).read_bytes() == data and e["sha256"] == sha(data) and e["size"] == len(data)
    assert server.max_in_flight <= 3
