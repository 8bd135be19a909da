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

Records are framed here (version line, header, Content-Length, blank line) and each one is
parsed by fastwarc: a record that cannot be framed or parsed (a broken header, a wrong
Content-Length) is a rejected record (`unreadable_record`, with its WARC-Record-ID when the
header has one) and reading goes on at the next line starting with `WARC/1.`. Only a file
that ends inside a record, or whose compression cannot be decoded, stops the run.
"""
from __future__ import annotations

import io
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
from pipeline.io import open_compressed, sha256_file
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
                for frame in _frames(_Framer(stream), self.max_record_bytes):
                    if frame.why is not None:
                        made = self._unparsable(frame, b, c, path, where)
                    else:
                        last_id = frame.record_id
                        made = self._record(frame, b, c, path, where)
                    if made:
                        n_docs += 1
                        if b.full():
                            yield b.flush()
                        if max_docs and n_docs >= max_docs:
                            break
        except (OSError, EOFError, ValueError) as e:
            after = f" after record {last_id}" if last_id else ""
            raise IOError(f"{where}: cannot read the WARC file to the end{after} ({e}); "
                          "the file is truncated or corrupt") from e
        finally:
            if counts is not None:
                counts.update(sorted(c.items()))
        yield b.flush()

    def _unparsable(self, frame: "_Frame", b: BatchBuilder, c: Counter, path: Path, where: str) -> bool:
        c["rejected"] += 1
        c["unparsable"] += 1
        rid = frame.record_id
        doc_id = _id_of(self.source, rid) if rid else f"{self.source}/{path.name}@{frame.offset}"
        b.reject(doc_id, "unreadable_record", f"{where}: record {rid or '(no WARC-Record-ID)'} at byte {frame.offset:,}: "
                 f"cannot be parsed ({frame.why}); skipped {frame.skipped:,} bytes to the next line starting with "
                 "WARC/1., the rest of the file is read", None)
        return True

    def _record(self, frame: "_Frame", b: BatchBuilder, c: Counter, path: Path, where: str) -> bool:
        """One framed record, parsed by fastwarc (HTTP headers included)."""
        data = io.BytesIO(frame.header + frame.block + b"\r\n\r\n")
        try:
            rec = next(iter(ArchiveIterator(data, parse_http=True, auto_decode="none", fsspec_args=False,
                                            stream_detect=False)), None)
            if rec is None:
                raise ValueError("no record")
        except (OSError, ValueError) as e:
            return self._unparsable(_Frame(frame.offset, frame.record_id, why=f"fastwarc: {e}"), b, c, path, where)
        kind = _TYPE_NAMES.get(int(rec.record_type), "unknown")
        c[kind] += 1
        if kind == "response":
            return self._response(rec, b, c, path, where)
        if kind == "conversion":
            return self._conversion(rec, b, c, path, where)
        c[f"skipped:{kind}"] += 1
        return False

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
        raw = rec.reader.read()
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


# Our own framing of WARC records (fastwarc then parses each one): fastwarc ends a whole
# file at the first header it cannot parse, while one bad record should cost that record
# only. A record that cannot be framed is skipped to the next line starting with `WARC/1.`.
_LINE_MAX = 1 << 16  # a WARC header line (and a header block) longer than this is not one
_HEAD_PEEK = 1 << 16  # of a record over max_record_bytes, what is read: its HTTP headers


class _Frame:
    """One record's bytes (`why` is None), or a stretch that is not a record (`why` says why)."""

    __slots__ = ("offset", "record_id", "header", "block", "why", "skipped")

    def __init__(self, offset: int, record_id: str | None, header: bytes = b"", block: bytes = b"",
                 why: str | None = None, skipped: int = 0):
        self.offset, self.record_id, self.header, self.block = offset, record_id, header, block
        self.why, self.skipped = why, skipped


class _Framer:
    """The (decompressed) WARC stream, read by lines and blocks, with bytes that can be given
    back (a misframed record's block, to look for the next record inside it)."""

    def __init__(self, raw):
        self._raw = raw if hasattr(raw, "peek") else io.BufferedReader(raw, 1 << 20)
        self._back = b""
        self.pos = 0  # offset of the next byte in the decompressed stream

    def readline(self, limit: int = _LINE_MAX) -> bytes:
        if self._back:
            i = self._back.find(b"\n", 0, limit)
            n = i + 1 if i >= 0 else min(limit, len(self._back))
            line, self._back = self._back[:n], self._back[n:]
            if i < 0 and len(line) < limit and not self._back:  # the line goes on in the stream
                line += self._raw.readline(limit - len(line))
        else:
            line = self._raw.readline(limit)
        self.pos += len(line)
        return line

    def read(self, n: int) -> bytes:
        data, self._back = self._back[:n], self._back[n:]
        while len(data) < n:
            more = self._raw.read(n - len(data))
            if not more:
                break
            data += more
        self.pos += len(data)
        return data

    def skip(self, n: int) -> int:
        done = 0
        while done < n and (piece := self.read(min(n - done, 1 << 20))):
            done += len(piece)
        return done

    def unread(self, data: bytes) -> None:
        self._back = data + self._back
        self.pos -= len(data)

    def resync(self, seen: list | None = None) -> int:
        """Skip to the next line that starts with `WARC/1.`; the number of bytes skipped (the
        first lines of them appended to `seen`, up to _LINE_MAX bytes)."""
        skipped, at_line_start = 0, True
        while line := self.readline():
            if at_line_start and line.startswith(b"WARC/1."):
                self.unread(line)
                break
            if seen is not None and skipped < _LINE_MAX:
                seen.append(line)
            skipped += len(line)
            at_line_start = line.endswith(b"\n")
        return skipped


def _field(header: bytes, name: bytes) -> str | None:
    m = re.search(rb"(?im)^" + name + rb":[ \t]*([^\r\n]*)", header)
    return m.group(1).strip().decode("latin-1") if m else None


def _frames(fr: _Framer, limit: int) -> Iterator[_Frame]:
    """The records of a WARC stream, framed by their Content-Length. A block over `limit`
    bytes comes with its first _HEAD_PEEK bytes only (the rest skipped unread). A file that
    ends inside a record is an EOFError (truncated); anything else that is not a record is
    a _Frame with `why` set, and reading goes on at the next `WARC/1.` line."""
    blank = (b"\r\n", b"\n")
    while True:
        line = fr.readline()
        while line in blank:
            line = fr.readline()
        if not line:
            return
        start = fr.pos - len(line)
        if not line.startswith(b"WARC/"):
            seen = [line]
            n = len(line) + fr.resync(seen)
            rid = _field(b"".join(seen).split(b"\r\n\r\n")[0], b"WARC-Record-ID")  # a header with a broken first line
            yield _Frame(start, rid, why="no WARC version line where a record should start", skipped=n)
            continue
        lines = [line]
        size = len(line)
        while line not in blank and size <= _LINE_MAX:
            line = fr.readline()
            if not line:
                raise EOFError(f"the file ends inside the last record's header (a record at byte {start:,})")
            lines.append(line)
            size += len(line)
        header = b"".join(lines)
        rid = _field(header, b"WARC-Record-ID")
        length = _field(header, b"Content-Length")
        if size > _LINE_MAX or length is None or not length.isdigit():
            why = (f"a header longer than {_LINE_MAX:,} bytes" if size > _LINE_MAX else
                   "no Content-Length in its header" if length is None else f"Content-Length {length[:40]!r}")
            yield _Frame(start, rid, why=why, skipped=size - len(lines[0]) + fr.resync())
            continue
        n = int(length)
        block = fr.read(min(n, _HEAD_PEEK) if n > limit else n)
        got = len(block) + (fr.skip(n - len(block)) if n > limit else 0)
        if got < n:
            raise EOFError(f"the record {rid} at byte {start:,} ends after {got:,} of its {n:,} bytes")
        tail = fr.read(4)
        rest = tail.lstrip(b"\r\n")
        if tail and (rest == tail or rest != b"WARC"[:len(rest)]):
            # not followed by a blank line where its Content-Length says it ends: the length is
            # wrong, and the next record may well start inside what was read as this block
            fr.unread((block if n <= limit else b"") + tail)
            skipped = fr.resync()
            yield _Frame(start, rid, why=f"its block does not end where its Content-Length ({n:,}) says",
                         skipped=size - len(lines[0]) + skipped)
            continue
        fr.unread(rest)
        yield _Frame(start, rid, header, block)


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
    return _id_of(source, rec.record_id)


def _id_of(source: str, record_id: str | None) -> str:
    rid = (record_id or "").strip("<>")
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
