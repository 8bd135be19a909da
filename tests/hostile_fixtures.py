"""Hostile inputs shared by tests/test_hostile_network.py and bench/battery.py: WARC files
written with warcio's writer (the awkward records real crawlers store) and gzip bombs."""
from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path

HTML = "<html><head><title>t</title></head><body><article><p>{}</p></article></body></html>"


def para(i: int) -> str:
    return f"Paragraph number {i} tells a plain story about the river, the town and the people who live there."


def write_warc(path: Path, mode: str) -> dict[str, str]:
    """A WARC written by warcio: one record of each awkward kind. Returns uri -> record id."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=(mode == "per-record"))
    ids = {}

    def response(uri, body: bytes, headers):
        http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1")
        rec = writer.create_warc_record(uri, "response", payload=io.BytesIO(body), http_headers=http)
        writer.write_record(rec)
        ids[uri] = rec.rec_headers.get_header("WARC-Record-ID")

    html = lambda i: HTML.format(para(i)).encode()  # noqa: E731
    # a body stored de-chunked while its header still says chunked (how many crawlers store it)
    response("http://a.test/dechunked", html(1), [("Content-Type", "text/html"), ("Transfer-Encoding", "chunked")])
    # a body that really is chunked
    body = html(2)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 40]), body[i:i + 40]) for i in range(0, len(body), 40)) + b"0\r\n\r\n"
    response("http://a.test/chunked", chunked, [("Content-Type", "text/html; charset=utf-8"), ("Transfer-Encoding", "chunked")])
    # gzip content encoding, chunked on top
    gz = gzip.compress(html(3))
    response("http://a.test/gzip", b"%x\r\n%s\r\n0\r\n\r\n" % (len(gz), gz),
             [("Content-Type", "text/html"), ("Content-Encoding", "gzip"), ("Transfer-Encoding", "chunked")])
    # a body that says gzip and is compressed, but corrupt: that record is rejected, the file read on
    response("http://a.test/broken", b"\x1f\x8b\x08\x00" + os.urandom(64), [("Content-Type", "text/html"), ("Content-Encoding", "gzip")])
    # a revisit record and a non-HTML payload: counted, not documents
    rev = writer.create_revisit_record("http://a.test/dechunked", digest="sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                       refers_to_uri="http://a.test/dechunked", refers_to_date="2024-01-01T00:00:00Z",
                                       http_headers=StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1"))
    writer.write_record(rev)
    response("http://a.test/doc.pdf", b"%PDF-1.4 binary", [("Content-Type", "application/pdf")])
    response("http://a.test/last", html(4), [("Content-Type", "text/html")])
    data = buf.getvalue()
    path.write_bytes(gzip.compress(data) if mode == "whole-file" else data)
    return ids


def warc_records(n: int) -> tuple[list[bytes], list[str]]:
    """n uncompressed WARC response records written by warcio, and their record ids."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    out, ids = [], []
    for i in range(n):
        buf = io.BytesIO()
        writer = WARCWriter(buf, gzip=False)
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        rec = writer.create_warc_record(f"http://a.test/{i}", "response", http_headers=http,
                                        payload=io.BytesIO(HTML.format(para(i)).encode()))
        writer.write_record(rec)
        out.append(buf.getvalue())
        ids.append(rec.rec_headers.get_header("WARC-Record-ID"))
    return out, ids


def gzip_bomb(path: Path, first: bytes, size: int, level: int = 1) -> None:
    """`first`, then `size` bytes of 'a' without a newline, gzip-compressed (about 1/230 at level 1, 1/1000 at 9)."""
    comp = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"a" * (1 << 20)
    with open(path, "wb") as f:
        f.write(comp.compress(first))
        for _ in range(size >> 20):
            f.write(comp.compress(block))
        f.write(comp.flush())
