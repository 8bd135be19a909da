"""Real crawls and hostile network inputs (issue 16): nothing silently lost, nothing leaked.

Every case builds its own inputs (WARC files with warcio's writer, files served by the
loopback server in tests/httpserver.py with injected faults) and checks one promise of
the README's Guarantees: a lenient WARC reader, no short body accepted silently, an HTML
page is not a corpus, one-line errors naming the URL, bounded records, one retry policy,
bounded YAML, refused private addresses, excerpts of malformed rejected records, and
nonsensical settings refused at validation.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hostile_fixtures import HTML, gzip_bomb, para, warc_records, write_warc
from httpserver import FileServer
from pipeline.download import BlockedAddressError, Downloader, DownloadError, RetryPolicy, local_name
from pipeline.ingest import ingest_source
from pipeline.recipe import RecipeError, load_recipe, parse_recipe
from pipeline.sources.base import InputError

FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05)
PAGE = b"<!DOCTYPE html><html><head><title>Not found</title></head><body><h1>Sorry</h1><p>Try the home page.</p></body></html>\n"


@pytest.fixture()
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    with FileServer({"/extra": served}) as srv:
        srv.extra = served
        yield srv


def source(spec: dict, tmp_path: Path):
    recipe = {"name": "t", "sources": [spec], "allow_private_networks": True}  # the loopback server is a private address
    return parse_recipe(recipe, tmp_path).source_objects(tmp_path / "out")[0]


def read_all(src):
    batches = list(src.read())
    return (pa.concat_tables([b.docs for b in batches]), pa.concat_tables([b.rejected for b in batches]))


# ---------------------------------------------------------------- 1. WARC leniency


@pytest.mark.parametrize("mode", ["per-record", "whole-file", "plain"])
def test_warc_lenient_chunked_bodies_and_unreadable_record(tmp_path, mode):
    from pipeline.sources.warc import WarcReader

    name = "crawl.warc" + ("" if mode == "plain" else ".gz")
    ids = write_warc(tmp_path / name, mode)
    counts: dict = {}
    batches = list(WarcReader("w", None, main_content=False).read(tmp_path / name, counts=counts))
    docs = pa.concat_tables([b.docs for b in batches])
    rej = pa.concat_tables([b.rejected for b in batches])
    by_url = dict(zip(docs.column("url").to_pylist(), docs.column("text").to_pylist()))
    assert sorted(by_url) == ["http://a.test/chunked", "http://a.test/dechunked", "http://a.test/gzip", "http://a.test/last"]
    for i, url in enumerate(["dechunked", "chunked", "gzip", "last"], start=1):
        assert by_url[f"http://a.test/{url}"].strip() == para(i)
    assert rej.column("filter").to_pylist() == ["unreadable_record"]
    reason = rej.column("reason")[0].as_py()
    assert ids["http://a.test/broken"] in reason and name in reason and "http://a.test/broken" in reason
    assert counts["skipped:revisit"] == 1 and counts["skipped:non_html"] == 1


@pytest.mark.parametrize("cut", [300, 1])
def test_uncompressed_warc_cut_mid_record_stops_the_run(tmp_path, cut):
    from pipeline.sources.warc import WarcReader

    write_warc(tmp_path / "x.warc", "plain")
    data = (tmp_path / "x.warc").read_bytes()
    (tmp_path / "x.warc").write_bytes(data[:-4 - cut])  # the closing CRLF CRLF and `cut` body bytes gone
    with pytest.raises(IOError, match=r"x\.warc: cannot read the WARC file to the end.*(ends after .* bytes|ends inside the last record.s header).*truncated"):
        list(WarcReader("w", None).read(tmp_path / "x.warc"))


def test_warc_oversize_records_and_gzip_bodies_are_bounded(tmp_path):
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    from pipeline.sources.warc import WarcReader

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for uri, body, headers in [
        ("http://a.test/big", HTML.format("b" * 30_000).encode(), [("Content-Type", "text/html")]),
        ("http://a.test/bomb", gzip.compress(b"<p>" + b"z" * 5_000_000), [("Content-Type", "text/html"), ("Content-Encoding", "gzip")]),
        ("http://a.test/ok", HTML.format(para(1)).encode(), [("Content-Type", "text/html")]),
    ]:
        http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(uri, "response", payload=io.BytesIO(body), http_headers=http))
    (tmp_path / "x.warc.gz").write_bytes(buf.getvalue())
    batches = list(WarcReader("w", None, main_content=False, max_record_bytes=20_000).read(tmp_path / "x.warc.gz"))
    docs = pa.concat_tables([b.docs for b in batches])
    rej = pa.concat_tables([b.rejected for b in batches])
    assert docs.column("url").to_pylist() == ["http://a.test/ok"]
    assert rej.column("filter").to_pylist() == ["oversize_record", "unreadable_record"]
    assert "inflates past max_record_bytes" in rej.column("reason")[1].as_py()


_CORRUPTIONS = {
    "content_length": lambda r: re.sub(rb"Content-Length: \d+", b"Content-Length: 12zz", r, count=1),
    "no_length": lambda r: re.sub(rb"Content-Length: \d+\r\n", b"", r, count=1),
    "version_line": lambda r: b"XARC" + r[4:],
    "length_too_long": lambda r: re.sub(rb"Content-Length: (\d+)", lambda m: b"Content-Length: %d" % (int(m.group(1)) + 700), r, count=1),
    "length_too_short": lambda r: re.sub(rb"Content-Length: (\d+)", lambda m: b"Content-Length: %d" % (int(m.group(1)) - 30), r, count=1),
}


@pytest.mark.parametrize("mode", ["plain", "per-record", "whole-file"])
@pytest.mark.parametrize("corruption", sorted(_CORRUPTIONS))
def test_warc_record_with_a_corrupt_header_is_rejected_and_the_rest_is_read(tmp_path, mode, corruption):
    from pipeline.sources.warc import WarcReader

    records, ids = warc_records(5)
    records[2] = _CORRUPTIONS[corruption](records[2])
    if mode == "per-record":
        data = b"".join(gzip.compress(r) for r in records)
    else:
        data = b"".join(records)
        data = gzip.compress(data) if mode == "whole-file" else data
    name = "c.warc" + ("" if mode == "plain" else ".gz")
    (tmp_path / name).write_bytes(data)
    batches = list(WarcReader("w", None, main_content=False).read(tmp_path / name))
    docs = pa.concat_tables([b.docs for b in batches])
    rej = pa.concat_tables([b.rejected for b in batches])
    assert docs.column("url").to_pylist() == [f"http://a.test/{i}" for i in (0, 1, 3, 4)]
    assert rej.column("filter").to_pylist() == ["unreadable_record"]
    reason = rej.column("reason")[0].as_py()
    assert name in reason and ids[2] in reason and "cannot be parsed" in reason and "\n" not in reason
    assert rej.column("id")[0].as_py() == "w/" + ids[2].strip("<>").removeprefix("urn:uuid:")


# ---------------------------------------------------------------- 2. a short body without Content-Length


def test_download_without_content_length_cut_mid_body_is_not_accepted(server, tmp_path):
    data = b"".join(json.dumps({"id": i, "text": para(i)}).encode() + b"\n" for i in range(2000))
    (server.extra / "d.jsonl").write_bytes(data)
    server.fault("/extra/d.jsonl", no_length=True, drop_at=len(data) * 3 // 10, times=1)
    e = Downloader(tmp_path / "raw", retry=FAST, allow_private_networks=True).fetch(server.url("/extra/d.jsonl"))
    assert Path(e["local_path"]).read_bytes() == data  # the cut was noticed and the rest fetched
    assert e["size"] == len(data)


def test_download_without_content_length_server_without_ranges_compares_lengths(server, tmp_path):
    data = b"x" * 100_000
    (server.extra / "d.txt").write_bytes(data)
    server.fault("/extra/d.txt", no_length=True, no_range=True, drop_at=30_000, times=1)
    e = Downloader(tmp_path / "raw", retry=FAST, allow_private_networks=True).fetch(server.url("/extra/d.txt"))
    assert Path(e["local_path"]).read_bytes() == data


def test_chunked_download_is_complete_in_one_request_and_a_cut_one_resumes(server, tmp_path):
    data = bytes(range(256)) * 400
    (server.extra / "c.bin").write_bytes(data)
    server.fault("/extra/c.bin", chunked=True)
    e = Downloader(tmp_path / "raw", retry=FAST, allow_private_networks=True).fetch(server.url("/extra/c.bin"))
    assert Path(e["local_path"]).read_bytes() == data
    assert len(server.hits("/extra/c.bin")) == 1  # a chunked body says where it ends: no check request
    server.fault("/extra/c.bin", chunked=True, drop_at=8192, times=1)
    e = Downloader(tmp_path / "raw2", retry=FAST, allow_private_networks=True).fetch(server.url("/extra/c.bin"))
    assert Path(e["local_path"]).read_bytes() == data and e["resumed"]


# ---------------------------------------------------------------- 3. an HTML page is not a corpus


def test_html_served_as_jsonl_is_an_error_naming_the_url(server, tmp_path):
    (server.extra / "d.jsonl").write_bytes(PAGE)
    server.fault("/extra/d.jsonl", content_type="text/html; charset=utf-8")
    with pytest.raises(InputError, match=r"source 'h': http://127\.0\.0\.1:\d+/extra/d\.jsonl: the server sent text/html"):
        read_all(source({"name": "h", "type": "http", "urls": [server.url("/extra/d.jsonl")]}, tmp_path))


def test_jsonl_whose_every_record_is_malformed_is_an_error(server, tmp_path):
    (server.extra / "e.jsonl").write_bytes(PAGE * 3)  # no content type to tell: every line fails
    with pytest.raises(InputError, match=r"/extra/e\.jsonl: every one of its 3 records is malformed \(invalid_json\)"):
        read_all(source({"name": "h", "type": "http", "urls": [server.url("/extra/e.jsonl")]}, tmp_path))


def test_html_served_as_parquet_names_the_url(server, tmp_path):
    (server.extra / "d.parquet").write_bytes(PAGE)
    with pytest.raises(InputError) as err:
        read_all(source({"name": "h", "type": "http", "urls": [server.url("/extra/d.parquet")]}, tmp_path))
    assert server.url("/extra/d.parquet") in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- 4. redirect loop


def test_redirect_loop_is_one_line_naming_the_url(server, tmp_path):
    server.fault("/extra/a.jsonl", redirect="/extra/b.jsonl")
    server.fault("/extra/b.jsonl", redirect=server.url("/extra/a.jsonl"))
    with pytest.raises(DownloadError) as err:
        read_all(source({"name": "h", "type": "http", "urls": [server.url("/extra/a.jsonl")]}, tmp_path))
    msg = str(err.value)
    assert msg.startswith(server.url("/extra/a.jsonl")) and "redirect loop" in msg and "\n" not in msg
    assert len(server.hits("/extra/a.jsonl")) == 1  # a loop is not retried


# ---------------------------------------------------------------- 5. bounded record size


def test_jsonl_oversize_record_is_rejected_and_reading_goes_on(tmp_path):
    lines = [json.dumps({"text": "short one"}), json.dumps({"text": "y" * 5000}), json.dumps({"text": "short two"})]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    docs, rej = read_all(source({"name": "j", "type": "jsonl", "paths": ["d.jsonl"], "max_record_bytes": 1000}, tmp_path))
    assert docs.column("text").to_pylist() == ["short one", "short two"]
    assert rej.column("filter").to_pylist() == ["oversize_record"]
    assert "d.jsonl:2: record of 5,013 bytes is over max_record_bytes (1,000)" in rej.column("reason")[0].as_py()


def test_text_file_over_max_record_bytes_is_rejected(tmp_path):
    (tmp_path / "big.txt.gz").write_bytes(gzip.compress(b"w" * 3_000_000))
    (tmp_path / "small.txt").write_text("a small document\n")
    docs, rej = read_all(source({"name": "t", "type": "text", "paths": ["*.txt*"], "max_record_bytes": 1_000_000}, tmp_path))
    assert docs.column("text").to_pylist() == ["a small document\n"]
    assert rej.column("filter").to_pylist() == ["oversize_record"]
    assert "big.txt.gz: 3,000,000 bytes, over max_record_bytes (1,000,000)" in rej.column("reason")[0].as_py()


def _read_in_a_child(spec: dict, base: Path) -> tuple[int, int, int, list[str]]:
    """(documents, rejected, peak RSS growth in MB, rejection reasons) of reading one source
    in a fresh interpreter, so that its peak memory is this read's alone."""
    script = textwrap.dedent(f"""
        import json, resource, sys
        from pipeline.recipe import parse_recipe
        src = parse_recipe({{"name": "t", "sources": [{spec!r}]}}, {str(base)!r}).source_objects({str(base / "o")!r})[0]
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        docs, reasons = 0, []
        for b in src.read():
            docs += b.docs.num_rows
            reasons += b.rejected.column("reason").to_pylist()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps([docs, len(reasons), (peak - base) // 1024, reasons]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=base,
                         env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])})
    assert out.returncode == 0, out.stderr[-2000:]
    return tuple(json.loads(out.stdout))


def test_gzip_bomb_without_newline_keeps_memory_bounded(tmp_path):
    gzip_bomb(tmp_path / "bomb.jsonl.gz", b'{"text": "ok"}\n', 200 << 20)
    docs, rej, grown_mb, reasons = _read_in_a_child(
        {"name": "b", "type": "jsonl", "paths": ["bomb.jsonl.gz"], "max_record_bytes": 4 << 20}, tmp_path)
    assert (docs, rej) == (1, 1)
    assert grown_mb < 60, f"peak RSS grew by {grown_mb} MB reading a 200 MB line"
    assert "no newline before the end of the file" in reasons[0] and "209,715,200 bytes" in reasons[0]


def test_text_split_on_a_separator_is_streamed_with_bounded_memory(tmp_path):
    gzip_bomb(tmp_path / "bomb.txt.gz", b"A first short document.\n\n", 200 << 20)
    docs, rej, grown_mb, reasons = _read_in_a_child(
        {"name": "t", "type": "text", "paths": ["bomb.txt.gz"], "separator": "\\n\\n", "max_record_bytes": 4 << 20},
        tmp_path)
    assert (docs, rej) == (1, 1)
    assert grown_mb < 60, f"peak RSS grew by {grown_mb} MB reading a 200 MB document"
    assert "bomb.txt.gz#1: 209,715,200 bytes, over max_record_bytes (4,194,304)" in reasons[0]


@pytest.mark.parametrize("split", [{"separator": "\\n\\n"}, {"separator_regex": "^CHAPTER [IVX]+"}])
def test_text_split_streamed_gives_the_parts_of_the_whole_text(tmp_path, monkeypatch, split):
    import re as re_

    import pipeline.sources.files as files

    rng = __import__("random").Random(5)
    words = ["river", "town", "CHAPTER I", "\nCHAPTER IV", "\n", "\n\n", "caf\u00e9", "  "]
    text = "\ufeff" + " ".join(rng.choice(words) for _ in range(3000))
    (tmp_path / "book.txt").write_text(text, encoding="utf-8")
    body = text[1:]
    if "separator" in split:
        expected = body.split("\n\n")
    else:
        bounds = sorted({0, len(body), *(m.start() for m in re_.finditer(split["separator_regex"], body, re_.M))})
        expected = [body[a:z] for a, z in zip(bounds, bounds[1:])]
    want = {f"t/book.txt#{i}": p for i, p in enumerate(expected) if p.strip()}
    assert len(want) > 50
    monkeypatch.setattr(files, "_TEXT_CHUNK", 97)  # many chunk boundaries, inside separators too
    monkeypatch.setattr(files, "_REGEX_WINDOW", 64)
    docs, rej = read_all(source({"name": "t", "type": "text", "paths": ["book.txt"], **split}, tmp_path))
    assert rej.num_rows == 0
    assert dict(zip(docs.column("id").to_pylist(), docs.column("text").to_pylist())) == want


def test_text_split_part_over_max_record_bytes_or_invalid_is_rejected_alone(tmp_path):
    (tmp_path / "p.txt").write_bytes(b"first part\n\n" + b"w" * 5000 + b"\n\nbad \xff byte\n\nlast part")
    docs, rej = read_all(source({"name": "t", "type": "text", "paths": ["p.txt"], "separator": "\\n\\n",
                                 "max_record_bytes": 1000}, tmp_path))
    assert docs.column("id").to_pylist() == ["t/p.txt#0", "t/p.txt#3"]
    assert rej.column("filter").to_pylist() == ["oversize_record", "invalid_utf8"]
    reasons = rej.column("reason").to_pylist()
    assert reasons[0].endswith("p.txt#1: 5,000 bytes, over max_record_bytes (1,000); skipped without holding it whole")
    assert reasons[1].endswith("p.txt#2: invalid utf-8 at byte 5018")


# ---------------------------------------------------------------- 6. one retry policy


def test_404_costs_one_request_in_the_downloader(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/extra/missing\.jsonl: HTTP 404"):
        read_all(source({"name": "h", "type": "http", "urls": [server.url("/extra/missing.jsonl")]}, tmp_path))
    assert len(server.hits("/extra/missing.jsonl")) == 1


def test_404_costs_one_request_in_the_flow_task(server, tmp_path, prefect_api):
    from prefect import flow

    from flows.corpus import ingest_task

    recipe = parse_recipe({"name": "t", "allow_private_networks": True, "sources": [
        {"name": "h", "type": "http", "urls": [server.url("/extra/missing.jsonl")]}]}, tmp_path)
    (tmp_path / "out").mkdir()

    @flow
    def one():
        return ingest_task(recipe, 0, str(tmp_path / "out"), "k")

    with pytest.raises(DownloadError, match="HTTP 404"):
        one()
    assert len(server.hits("/extra/missing.jsonl")) == 1


# ---------------------------------------------------------------- 7. YAML alias bomb, train: checked


def test_yaml_alias_bomb_in_train_is_refused(tmp_path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 7):
        levels.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    body = "\n".join("  " + l for l in levels)
    (tmp_path / "r.yaml").write_text(f"name: t\nsources: [{{name: s, type: text, paths: [x.txt]}}]\ntrain:\n{body}\n")
    with pytest.raises(RecipeError, match=r"r\.yaml: .*aliases .*expand to more than 1,000,000 values"):
        load_recipe(tmp_path / "r.yaml")


def test_unknown_train_setting_is_refused_by_run_before_anything_starts(tmp_path, capsys):
    from flows.cli import main

    (tmp_path / "x.txt").write_text("hello\n")
    (tmp_path / "r.yaml").write_text("name: t\nsources: [{name: s, type: text, paths: [x.txt]}]\ntrain: {n_layers: 4}\n")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("not a corpus")
    assert main(["run", str(tmp_path / "r.yaml"), "--output", str(busy)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "r.yaml: train: unknown training settings ['n_layers']" in err
    assert "\n" not in err


# ---------------------------------------------------------------- 8. private addresses


def test_private_addresses_are_refused_unless_the_recipe_opts_in(server, tmp_path, caplog):
    (server.extra / "d.jsonl").write_text('{"text": "secret"}\n')
    url = server.url("/extra/d.jsonl")
    spec = {"name": "h", "type": "http", "urls": [url], "allow_private_networks": False}
    with pytest.raises(BlockedAddressError, match=r"127\.0\.0\.1.*allow_private_networks: true"):
        read_all(parse_recipe({"name": "t", "sources": [spec]}, tmp_path).source_objects(tmp_path / "o")[0])
    assert server.hits("/extra/d.jsonl") == []  # refused before any request
    assert any("refused" in r.getMessage() for r in caplog.records)
    docs, _ = read_all(parse_recipe({"name": "t", "allow_private_networks": True, "sources": [spec]},
                                    tmp_path).source_objects(tmp_path / "o2")[0])
    assert docs.column("text").to_pylist() == ["secret"]


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/x.jsonl",
                                 "http://[::1]/x.jsonl", "http://localhost/x.jsonl", "http://0.0.0.0/x"])
def test_metadata_and_private_urls_are_refused(url):
    from pipeline.download import check_address

    with pytest.raises(BlockedAddressError):
        check_address(url, allow_private=False)
    check_address(url, allow_private=True)


def test_redirect_to_a_private_address_is_refused(server, tmp_path, monkeypatch):
    import pipeline.download as dl

    real = dl.check_address
    # the test server itself counts as public here; its redirect target does not
    monkeypatch.setattr(dl, "check_address", lambda u, allow: None if u.startswith(server.base) else real(u, allow))
    server.fault("/extra/go.jsonl", redirect="http://169.254.169.254/latest/meta-data/iam")
    with pytest.raises(BlockedAddressError, match=r"169\.254\.169\.254"):
        Downloader(tmp_path / "raw", retry=FAST).fetch(server.url("/extra/go.jsonl"))
    assert not (tmp_path / "raw" / local_name(server.url("/extra/go.jsonl"))).exists()


# ---------------------------------------------------------------- 9. rejected text: an excerpt by default


@pytest.mark.parametrize("mode, kept", [(None, 500), ("excerpt", 20), ("full", 5000)])
def test_malformed_rejected_records_keep_an_excerpt(tmp_path, mode, kept):
    (tmp_path / "d.jsonl").write_text('{"text": "good"}\n' + "z" * 5000 + "\n")
    ingest = {} if mode is None else {"rejected_text": mode, "rejected_excerpt_chars": 20}
    recipe = parse_recipe({"name": "t", "ingest": ingest, "sources": [{"name": "j", "type": "jsonl", "paths": ["d.jsonl"]}]},
                          tmp_path)
    out = tmp_path / "out"
    stats = ingest_source(recipe.source_objects(out)[0], out, 100, recipe.ingest.rejected_text,
                          recipe.ingest.rejected_excerpt_chars)
    assert stats.rejected_by_filter == {"invalid_json": 1}
    text = pq.read_table(out / "rejected" / "ingest-j.parquet").column("text")[0].as_py()
    assert text.rstrip("\n") == "z" * kept


# ---------------------------------------------------------------- 10, 11. nonsense refused at validation


@pytest.mark.parametrize("patch, message", [
    ({"clean": {"gopher_quality": {"max_doc_words": -1}}}, "max_doc_words: must be 0 or more"),
    ({"clean": {"gopher_quality": {"min_doc_words": -5}}}, "min_doc_words: must be 0 or more"),
    ({"clean": {"max_symbol_ratio": 1.5}}, "max_symbol_ratio: a share of the document"),
    ({"clean": {"gopher_repetition": {"dup_line_frac": 2}}}, "dup_line_frac: a share"),
    ({"clean": {"gopher_repetition": {"top_n_grams": {2: 3.0}}}}, "n-gram shares must be between 0 and 1"),
    ({"tokenize": {"vocab_size": 2**33}}, "vocab_size"),
    ({"tokenize": {"vocab_size": 100}}, "vocab_size"),
    ({"name": "."}, "'.' is not a corpus name"),
    ({"name": ".."}, "'..' is not a corpus name"),
])
def test_nonsensical_settings_are_refused(tmp_path, patch, message):
    data = {"name": "t", "sources": [{"name": "s", "type": "text", "paths": ["x.txt"]}], **patch}
    with pytest.raises(RecipeError, match=message.replace("(", r"\(")):
        parse_recipe(data, tmp_path)


@pytest.mark.parametrize("typ", ["jsonl", "parquet", "text", "warc"])
@pytest.mark.parametrize("url", ["gopher://h/x", "ftp://h/x.jsonl", "https://example.org/x.jsonl"])
def test_url_in_paths_is_refused_at_validation(tmp_path, typ, url):
    """Only object stores (copied locally through fsspec) may appear in `paths:`."""
    scheme = url.split(":")[0]
    with pytest.raises(RecipeError, match=rf"paths.*URL scheme '{scheme}' is not supported"):
        parse_recipe({"name": "t", "sources": [{"name": "s", "type": typ, "paths": [url]}]}, tmp_path)
    ok = parse_recipe({"name": "t", "sources": [{"name": "s", "type": typ, "paths": ["s3://bucket/x*.jsonl"]}]}, tmp_path)
    assert ok.sources[0].paths == ["s3://bucket/x*.jsonl"]
