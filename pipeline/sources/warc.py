"""`warc` source: WARC / WET / WAT files (local globs or URLs) to documents.

Record handling (one rule per record type; counts land in the file's provenance entry
under `records`, e.g. {"response": 16, "skipped:non_html": 2, "docs": 14}):

- `response` with an HTML body and HTTP status 200: the HTML is decoded (charset from the
  HTTP header, else detected from the bytes) and turned into text by resiliparse's
  `extract_plain_text` (main content only by default). One document per capture.
  If nothing is left after extraction the capture is a *rejected document* (filter
  `empty_extraction`, reason naming the WARC file, record id and URL).
- `conversion` (WET): Common Crawl's own extracted text, kept as is. Invalid UTF-8 is a
  rejected document (`invalid_utf8`).
- Everything else is *not a document* and is counted, not rejected: `warcinfo`,
  `request`, `metadata` (WAT JSON included: it holds links and headers, not page text),
  `resource` (e.g. wget logs), `revisit` (a pointer to an earlier capture, no body),
  non-HTML responses (PDF, images, JSON...) and non-200 responses (redirects, errors).
  They appear as `skipped:<reason>` counts.

Documents keep the page URL in `url`; `meta` holds warc_file, record_id, warc_date,
warc_type, content_type, http_status, and for WET the identified languages.
Ids are `<source>/<record uuid>`, stable across runs. Gzip, zstd and bz2 files are read
as streams through `pipeline.io.open_compressed`, so a truncated file is an error naming
the file (fastwarc's own gzip reader stops silently at a truncation).
"""
from __future__ import annotations

import io
import os
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Iterator

from fastwarc.warc import ArchiveIterator, WarcRecordType
from pydantic import Field, field_validator, model_validator
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding

from pipeline.download import FileSpec
from pipeline.io import compression_of, open_compressed, sha256_file
from pipeline.records import recipe_path
from pipeline.sources import register
from pipeline.sources.base import BatchBuilder, SourceBatch, check_local_paths
from pipeline.sources.http import DownloadOptions, FetchingSource, ReadOptions, UrlEntry

_TYPE_NAMES = {int(getattr(WarcRecordType, n)): n for n in (
    "warcinfo", "response", "resource", "request", "metadata", "revisit", "conversion", "continuation")}
_HTML_TYPES = ("text/html", "application/xhtml+xml")


class WarcReader:
    """Turns one WARC/WET/WAT file into SourceBatches (see the module docstring)."""

    def __init__(self, source: str, license: str | None, *, main_content: bool = True, batch_size: int = 2000,
                 max_record_bytes: int = 64 << 20):
        self.max_record_bytes = max_record_bytes
        self.source = source
        self.license = license
        self.main_content = main_content
        self.batch_size = batch_size

    def html_to_text(self, html: str) -> str:
        # Alt texts, links and form fields are page furniture, not prose.
        return extract_plain_text(html, preserve_formatting=True, main_content=self.main_content,
                                  alt_texts=False, links=False, form_fields=False, noscript=False)

    def read(self, path: Path, *, max_docs: int | None = None, origin: str | None = None,
             counts: dict | None = None) -> Iterator[SourceBatch]:
        path = Path(path)
        where = origin or str(path)
        b = BatchBuilder(self.source, self.license, batch_size=self.batch_size)
        c: Counter = Counter()
        n_docs = 0
        last_id = None
        try:
            with open_compressed(path) as stream:
                if not stream.seekable():  # fastwarc seeks forward to skip record bodies
                    stream = _ForwardSeekable(stream)
                # Bodies are decoded here (_http_body), leniently: many crawlers store a body
                # already de-chunked while its headers still say `Transfer-Encoding: chunked`.
                records = ArchiveIterator(stream, parse_http=True, auto_decode="none", fsspec_args=False,
                                          stream_detect=False)
                last_pos = None
                for rec in records:
                    last_id, last_pos = rec.record_id, rec.stream_pos
                    kind = _TYPE_NAMES.get(int(rec.record_type), "unknown")
                    c[kind] += 1
                    if kind == "response":
                        made = self._response(rec, b, c, path, where)
                    elif kind == "conversion":
                        made = self._conversion(rec, b, c, path, where)
                    else:
                        c[f"skipped:{kind}"] += 1
                        made = False
                    if made:
                        n_docs += 1
                        if b.full():
                            yield b.flush()
                        if max_docs and n_docs >= max_docs:
                            break
                else:
                    if compression_of(path) is None:
                        _check_plain_end(path, last_pos)
        except (OSError, EOFError, ValueError) as e:
            after = f" after record {last_id}" if last_id else ""
            raise IOError(f"{where}: cannot read the WARC file to the end{after} ({e}); "
                          "the file is truncated or corrupt") from e
        finally:
            if counts is not None:
                counts.update(sorted(c.items()))
        yield b.flush()

    def _meta(self, rec, path: Path, kind: str) -> dict:
        return {
            "warc_file": path.name,
            "record_id": rec.record_id,
            "warc_date": rec.record_date.isoformat() if rec.record_date else None,
            "warc_type": kind,
        }

    def _response(self, rec, b: BatchBuilder, c: Counter, path: Path, where: str) -> bool:
        if not rec.is_http:
            c["skipped:non_http_response"] += 1
            return False
        status = rec.http_headers.status_code
        if status != 200:
            c["skipped:http_status_not_200"] += 1
            return False
        ctype = (rec.http_content_type or "").lower()
        if not ctype.startswith(_HTML_TYPES):
            c["skipped:non_html"] += 1
            return False
        url = _target_uri(rec)
        doc_id = _doc_id(self.source, rec)
        if rec.content_length > self.max_record_bytes:  # skipped unread (the iterator seeks past it)
            c["rejected"] += 1
            b.reject(doc_id, "oversize_record", f"{where}: record {rec.record_id} ({url}): {rec.content_length:,} "
                     f"bytes, over max_record_bytes ({self.max_record_bytes:,})", None)
            return True
        raw = rec.reader.read()  # a stream error here is the file's (truncated, corrupt): not caught
        b.bytes_read += len(raw)
        try:
            body = _http_body(raw, rec.http_headers, self.max_record_bytes)
        except (ValueError, EOFError, zlib.error) as e:
            c["rejected"] += 1
            b.reject(doc_id, "unreadable_record", f"{where}: record {rec.record_id} ({url}): cannot decode the HTTP "
                     f"body ({type(e).__name__}: {e}); the rest of the file is read", None)
            return True
        enc = rec.http_charset or detect_encoding(body)
        html = bytes_to_str(body, enc)
        text = self.html_to_text(html).strip()
        if not text:
            c["rejected"] += 1
            b.reject(doc_id, "empty_extraction",
                     f"{where}: record {rec.record_id} ({url}): no text left after HTML extraction "
                     f"({len(body)} bytes of {ctype})", None)
            return True
        meta = self._meta(rec, path, "response")
        meta.update(content_type=ctype, http_status=status, charset=enc)
        b.add(doc_id, text, url=url, path=f"{path.name}#{rec.record_id}", meta=meta)
        c["docs"] += 1
        return True

    def _conversion(self, rec, b: BatchBuilder, c: Counter, path: Path, where: str) -> bool:
        url = _target_uri(rec)
        doc_id = _doc_id(self.source, rec)
        if rec.content_length > self.max_record_bytes:
            c["rejected"] += 1
            b.reject(doc_id, "oversize_record", f"{where}: record {rec.record_id} ({url}): {rec.content_length:,} "
                     f"bytes, over max_record_bytes ({self.max_record_bytes:,})", None)
            return True
        body = rec.reader.read()
        b.bytes_read += len(body)
        try:
            text = body.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            c["rejected"] += 1
            b.reject(doc_id, "invalid_utf8", f"{where}: record {rec.record_id} ({url}): invalid UTF-8 at byte {e.start}",
                     body.decode("utf-8", "replace"))
            return True
        if not text:
            c["rejected"] += 1
            b.reject(doc_id, "empty_text", f"{where}: record {rec.record_id} ({url}): empty WET text", None)
            return True
        meta = self._meta(rec, path, "conversion")
        meta["content_type"] = rec.headers.get("Content-Type")
        if rec.headers.get("WARC-Identified-Content-Language"):
            meta["languages"] = rec.headers.get("WARC-Identified-Content-Language")
        if rec.headers.get("WARC-Refers-To"):
            meta["refers_to"] = rec.headers.get("WARC-Refers-To")
        b.add(doc_id, text, url=url, path=f"{path.name}#{rec.record_id}", meta=meta)
        c["docs"] += 1
        return True


def _check_plain_end(path: Path, last_pos: int | None) -> None:
    """fastwarc ends an uncompressed file cut inside its last record (or inside a record's
    header) without a word. Check that the last record it read ends where its
    Content-Length says and that nothing but blank lines follows (EOFError otherwise)."""
    size = os.path.getsize(path)
    if last_pos is None:
        if size:
            raise EOFError("no WARC record found")
        return
    with open(path, "rb") as f:
        f.seek(last_pos)
        head = f.read(1 << 16)
        end = head.find(b"\r\n\r\n")
        if end < 0 and len(head) < 1 << 16:
            raise EOFError("the file ends inside the last record's header")
        m = re.search(rb"(?im)^content-length:[ \t]*(\d+)", head[:end]) if end >= 0 else None
        if m is None:
            return  # a header block too odd to check (fastwarc read it)
        body_start = last_pos + end + 4
        expected = body_start + int(m.group(1))
        if size < expected:
            raise EOFError(f"the last record ends after {size - body_start:,} of its {int(m.group(1)):,} bytes")
        f.seek(expected)
        rest = f.read(1 << 16)
        if rest.strip(b"\r\n"):
            raise EOFError(f"{size - expected:,} bytes after the last record are not a whole WARC record "
                           "(a record cut inside its header?)")


class _ForwardSeekable(io.RawIOBase):
    """A read-only stream that can also seek forward (by reading), as fastwarc expects."""

    def __init__(self, raw):
        self._raw, self._pos = raw, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def readinto(self, buf) -> int:
        n = self._raw.readinto(buf)
        self._pos += n
        return n

    def read(self, size=-1) -> bytes:
        data = self._raw.read(size)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._pos + offset if whence == io.SEEK_CUR else None
        if target is None or target < self._pos:
            raise io.UnsupportedOperation("this compressed stream seeks forward only")
        while self._pos < target and self.read(min(target - self._pos, 1 << 20)):
            pass
        return self._pos


def _http_body(raw: bytes, headers, limit: int = 64 << 20) -> bytes:
    """The HTTP payload as the page's bytes: chunked transfer encoding removed when the body
    really is chunked (kept as stored when it is not), then gzip/deflate content encoding
    removed when the body really is compressed. Raises ValueError (or zlib.error, EOFError)
    when a body that is compressed cannot be decompressed."""
    te = (headers.get("Transfer-Encoding") or "").lower()
    if "chunked" in te:
        dechunked = _dechunk(raw)
        if dechunked is not None:
            raw = dechunked
    ce = (headers.get("Content-Encoding") or "").strip().lower()
    if ce in ("gzip", "x-gzip"):
        if raw.startswith(b"\x1f\x8b"):
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = d.decompress(raw, limit + 1)
            if len(out) > limit:
                raise ValueError(f"gzip body inflates past max_record_bytes ({limit:,})")
            if not d.eof:
                raise ValueError("gzip body ends early")
            return out
    elif ce == "deflate":
        for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
            try:
                d = zlib.decompressobj(wbits)
                out = d.decompress(raw, limit + 1)
            except zlib.error:
                continue
            if len(out) > limit:
                raise ValueError(f"deflate body inflates past max_record_bytes ({limit:,})")
            return out
        if not _looks_like_text(raw):
            raise ValueError("deflate body cannot be decompressed")
    elif ce == "br":
        try:
            import brotli
        except ImportError:
            raise ValueError("brotli-encoded body and no brotli module") from None
        try:
            return brotli.decompress(raw)
        except brotli.error as e:
            if not _looks_like_text(raw):
                raise ValueError(f"brotli body cannot be decompressed ({e})") from None
    return raw


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    return not head or sum(32 <= c < 127 or c in (9, 10, 13) for c in head) / len(head) > 0.9


def _dechunk(data: bytes) -> bytes | None:
    """`data` decoded from HTTP/1.1 chunked transfer encoding, or None when it is not chunked."""
    out, pos, n = [], 0, len(data)
    while pos < n:
        eol = data.find(b"\n", pos, pos + 40)
        if eol < 0:
            return None
        field = data[pos:eol].rstrip(b"\r").split(b";")[0].strip()
        try:
            size = int(field, 16)
        except ValueError:
            return None
        pos = eol + 1
        if size == 0:
            return b"".join(out)  # trailers, if any, are not payload
        if pos + size > n:
            return None
        out.append(data[pos:pos + size])
        pos += size
        if data.startswith(b"\r\n", pos):
            pos += 2
        elif data.startswith(b"\n", pos):
            pos += 1
        elif pos != n:
            return None
    return b"".join(out) if out else None


def _target_uri(rec) -> str | None:
    uri = rec.headers.get("WARC-Target-URI")
    return uri.strip().strip("<>") if uri else None  # WARC/1.0 writers (wget) wrap it in <>


def _doc_id(source: str, rec) -> str:
    rid = (rec.record_id or "").strip("<>")
    return f"{source}/{rid.removeprefix('urn:uuid:').lower()}"


class WarcConfig(DownloadOptions, ReadOptions):
    paths: list[str] = recipe_path(default_factory=list, description="local WARC/WET/WAT globs, relative to the recipe's folder")
    urls: list[UrlEntry] = Field(default_factory=list, description="WARC/WET/WAT files to fetch: URLs or {url, sha256, size}")

    @field_validator("paths")
    @classmethod
    def _local_paths(cls, value):
        return check_local_paths(value)

    @model_validator(mode="after")
    def _some_files(self):
        if not self.paths and not self.urls:
            raise ValueError("give `paths` or `urls`")
        if self.format not in ("auto", "warc"):
            raise ValueError("a warc source reads WARC files only (format: warc)")
        return self


@register
class WarcSource(FetchingSource):
    type = "warc"
    Config = WarcConfig

    def file_specs(self) -> list[FileSpec]:
        return [FileSpec.parse(u.model_dump()) for u in self.config.urls]

    def read(self) -> Iterator[SourceBatch]:
        c: WarcConfig = self.config
        reader = WarcReader(c.name, c.license, main_content=c.main_content, max_record_bytes=c.max_record_bytes)
        local = []
        for path in self.resolve_globs(c.paths) if c.paths else []:
            entry = {"path": str(path), "size": path.stat().st_size, "sha256": sha256_file(path), "license": c.license}
            self.provenance.append(entry)
            local.append((path, entry, str(path)))
        fetched = [(Path(e["local_path"]), e, e["url"]) for e in (self.fetch() if c.urls else [])]
        done = 0
        for path, entry, origin in local + fetched:
            counts: dict = {}
            for batch in reader.read(path, max_docs=c.max_docs - done if c.max_docs else None,
                                     origin=origin, counts=counts):
                done += batch.docs.num_rows + batch.rejected.num_rows
                yield batch
            entry["records"] = counts
            if c.max_docs and done >= c.max_docs:
                return
