"""Local file sources: `jsonl` (plain or gzip/zstd/bz2), `parquet`, `text`.

Record ids: the record's own id (from `id_field`, default `id`) when it has one, so users
can map results back to their data; otherwise `<source>/<file>:<line>` (jsonl),
`<source>/<file>:<row>` (parquet) or `<source>/<file>[#<part>]` (text), where `<file>` is
the file's path relative to the common folder of the `paths:` patterns (so 2023/part-0.jsonl
and 2024/part-0.jsonl differ), all stable across runs of the same inputs.

Hostile records stay records: a line nested deeper than Python can parse is rejected
(`invalid_json`), an integer over Python's 4300-digit conversion limit is kept as its
digit string, a lone UTF-16 surrogate escape becomes U+FFFD (counted), a leading BOM is
dropped. A Parquet row group that cannot be decoded rejects its rows (`corrupt_row_group`)
and the rest of the file is read; a file that cannot be opened at all is an InputError.
"""
from __future__ import annotations

import codecs
import io
import json
import re
import sys
from pathlib import Path
from typing import Iterator, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from pipeline.io import open_compressed
from pipeline.records import recipe_path
from pipeline.schema import DOC_SCHEMA, rejected_table
from pipeline.sources import register
from pipeline.sources.base import (DIRECT_FIELDS, BatchBuilder, InputError, Source, SourceBatch, SourceConfig,
                                   check_local_paths, docs_from_table, own_or_fallback_ids)

# Columns a source may fill directly from a record's field of the same name.


class FileSourceConfig(SourceConfig):
    paths: list[str] = recipe_path(min_length=1, description="globs, relative to the recipe's folder")
    text_field: str = "text"
    id_field: str = "id"
    meta_fields: list[str] | None = Field(None, description="record fields kept in `meta` (default: all others)")
    max_record_bytes: int = Field(64 << 20, ge=1, description="jsonl: a line longer than this is rejected "
                                  "(`oversize_record`) without being held in memory whole")

    _local_paths = field_validator("paths")(classmethod(lambda cls, v: check_local_paths(v)))


@register
class JsonlSource(Source):
    """One JSON object per line. A malformed line, invalid UTF-8 or a missing/non-string
    text field becomes a rejected record whose reason names the file and line."""

    type = "jsonl"
    Config = FileSourceConfig

    def read(self) -> Iterator[SourceBatch]:
        c: FileSourceConfig = self.config
        b = BatchBuilder(c.name, c.license)
        count = 0
        for path in self.resolve_globs(c.paths):
            self.provenance.append({"path": str(path), "size": path.stat().st_size})
            id_prefix = f"{c.name}/{self.input_name(path)}"
            with _open(path, c.name) as raw:
                for lineno, line in enumerate(_lines(raw, path, c.name, c.max_record_bytes), start=1):
                    if type(line) is _Oversize:
                        b.bytes_read += line.size
                        b.reject(f"{id_prefix}:{lineno}", "oversize_record",
                                 f"{path}:{lineno}: record of {line.size:,} bytes{'' if line.complete else ' (no newline before the end of the file)'} "
                                 f"is over max_record_bytes ({c.max_record_bytes:,}); skipped without reading it whole",
                                 line.head.decode("utf-8", "replace"))
                    elif not line.strip():
                        continue  # blank lines are not records
                    else:
                        fallback_id = f"{id_prefix}:{lineno}"
                        where = f"{path}:{lineno}"
                        b.bytes_read += len(line)
                        try:
                            rec = json.loads(line.decode("utf-8"))
                        except UnicodeDecodeError as e:
                            b.reject(fallback_id, "invalid_utf8", f"{where}: invalid UTF-8 at byte {e.start}",
                                     line.decode("utf-8", "replace"))
                        except json.JSONDecodeError as e:
                            b.reject(fallback_id, "invalid_json", f"{where}: invalid JSON: {e.msg} at column {e.colno}",
                                     line.decode("utf-8", "replace"))
                        except RecursionError:
                            b.reject(fallback_id, "invalid_json", _too_deep(where), line[:10000].decode("utf-8", "replace"))
                        except ValueError:  # an integer over Python's int_max_str_digits: keep its digits as a string
                            _add_parsed(b, _loads_keeping_long_ints, line, c, fallback_id, where)
                        else:
                            _add_parsed(b, None, rec, c, fallback_id, where)
                    count += 1
                    if b.full():
                        yield b.flush()
                    if c.max_docs and count >= c.max_docs:
                        yield b.flush()
                        return
        yield b.flush()


_BOM = b"\xef\xbb\xbf"


def _open(path: Path, source: str):
    """open_compressed, with a file that cannot be opened an error naming the source and the file."""
    try:
        return open_compressed(path)
    except OSError as e:
        raise InputError(f"source {source!r}: {path}: cannot open ({e.strerror or e})") from e


class _Oversize:
    """A line longer than max_record_bytes: its size and first bytes, never the whole of it."""

    __slots__ = ("size", "head", "complete")

    def __init__(self, size: int, head: bytes, complete: bool):
        self.size, self.head, self.complete = size, head, complete


def _lines(raw, path: Path, source: str, limit: int = 64 << 20):
    """Yield raw lines (a leading UTF-8 BOM dropped), each at most `limit` bytes: a longer
    line is read on in bounded chunks up to its newline and yielded as an _Oversize. A
    truncated or corrupt compressed stream is an error naming the source and the file."""
    try:
        reader = io.BufferedReader(raw, buffer_size=1 << 20) if not hasattr(raw, "peek") else raw
        readline = reader.readline
        first = True
        while True:
            line = readline(limit + 1)
            if not line:
                return
            if first:
                first = False
                if line.startswith(_BOM):
                    line = line[3:]
            if len(line) > limit and not line.endswith(b"\n"):
                size, head = len(line), line[:4096]
                del line
                while True:
                    more = readline(1 << 20)
                    size += len(more)
                    if not more or more.endswith(b"\n"):
                        break
                yield _Oversize(size, head, bool(more))
                continue
            yield line
    except (EOFError, OSError) as e:
        raise IOError(f"source {source!r}: {path}: cannot read compressed stream to the end ({e}); "
                      "the file is truncated or corrupt") from e


def _too_deep(where: str) -> str:
    return f"{where}: invalid JSON: nested too deeply (past Python's recursion limit, {sys.getrecursionlimit()})"


def _int_or_digits(s: str):
    try:
        return int(s)
    except ValueError:  # over sys.get_int_max_str_digits(): keep the exact digits
        return s


def _loads_keeping_long_ints(line: bytes):
    return json.loads(line.decode("utf-8"), parse_int=_int_or_digits)


def _add_parsed(b: BatchBuilder, loads, data, c: "FileSourceConfig", fallback_id: str, where: str):
    """Add a parsed record (or parse `data` with `loads` first); a record too deep or odd
    for the parser or the JSON encoder is rejected, never raised."""
    try:
        rec = loads(data) if loads else data
        _add_record(b, rec, c, fallback_id, where)
    except RecursionError:
        b.reject(fallback_id, "invalid_json", _too_deep(where), None)
    except ValueError as e:
        b.reject(fallback_id, "invalid_json", f"{where}: invalid JSON: {e}"[:1000], None)


def _add_record(b: BatchBuilder, rec, c: FileSourceConfig, fallback_id: str, where: str):
    if not isinstance(rec, dict):
        b.reject(fallback_id, "not_an_object", f"{where}: record is a JSON {type(rec).__name__}, not an object",
                 json.dumps(rec, ensure_ascii=False)[:10000])
        return
    own_id = rec.get(c.id_field)
    doc_id = str(own_id) if own_id is not None and own_id != "" else fallback_id
    text = rec.get(c.text_field)
    if text is None:
        b.reject(doc_id, "missing_text_field", f"{where}: no field {c.text_field!r} (fields: {sorted(rec)[:10]})",
                 json.dumps(rec, ensure_ascii=False)[:10000])
        return
    if not isinstance(text, str):
        b.reject(doc_id, "text_not_string", f"{where}: field {c.text_field!r} is a {type(text).__name__}, not a string",
                 json.dumps(rec, ensure_ascii=False)[:10000])
        return
    skip = {c.text_field, c.id_field, *DIRECT_FIELDS}
    keys = c.meta_fields if c.meta_fields is not None else [k for k in rec if k not in skip]
    meta = {k: rec[k] for k in keys if k in rec}
    b.add(doc_id, text, url=rec.get("url"), path=where, license=rec.get("license"),
          kind=rec.get("kind") or "prose", meta=meta)


@register
class ParquetSource(Source):
    """Parquet files read in record batches, row group by row group. Rows whose text is
    null are rejected with the row number; a row group that cannot be decoded (corrupt
    page, bad compression) rejects its unread rows (`corrupt_row_group`, naming file, row
    group and row) and reading goes on with the next one. A file whose footer cannot be
    read is an InputError naming the source and the file."""

    type = "parquet"
    Config = FileSourceConfig

    def read(self) -> Iterator[SourceBatch]:
        c: FileSourceConfig = self.config
        count = 0
        for path in self.resolve_globs(c.paths):
            self.provenance.append({"path": str(path), "size": path.stat().st_size})
            try:
                pf = pq.ParquetFile(path)
                n_groups = pf.num_row_groups
                group_rows = [pf.metadata.row_group(g).num_rows for g in range(n_groups)]
                names = pf.schema_arrow.names
            except (pa.ArrowException, OSError) as e:
                raise InputError(f"source {c.name!r}: {path}: not a readable Parquet file, cannot read its footer "
                                 f"({_one_line(e)})") from e
            if c.text_field not in names:
                raise InputError(f"source {c.name!r}: {path}: no column {c.text_field!r} (columns: {names})")
            ttype = pf.schema_arrow.field(c.text_field).type
            if pa.types.is_dictionary(ttype):
                ttype = ttype.value_type  # pandas `category`: decoded to plain strings below
            if not (pa.types.is_string(ttype) or pa.types.is_large_string(ttype)):
                raise InputError(f"source {c.name!r}: {path}: column {c.text_field!r} has type "
                                 f"{pf.schema_arrow.field(c.text_field).type}, not string")
            id_prefix = f"{c.name}/{self.input_name(path)}"
            row0 = 0
            for g in range(n_groups):
                group_start, group_end = row0, row0 + group_rows[g]
                batches = pf.iter_batches(batch_size=2000, row_groups=[g])
                while row0 < group_end:
                    if c.max_docs and count >= c.max_docs:
                        return
                    try:
                        rb = next(batches)
                    except StopIteration:  # fewer rows than the footer promised: account for the rest
                        why = f"row group ended after {row0 - group_start} of its {group_rows[g]} rows"
                    except (pa.ArrowException, OSError) as e:
                        why = f"corrupt data ({_one_line(e)})"
                    else:
                        why = None
                    if why is not None:
                        stop = min(group_end, row0 + c.max_docs - count) if c.max_docs else group_end
                        yield _unreadable_rows(pf, path, g, row0 - group_start, row0, stop, why, c, id_prefix)
                        count += stop - row0
                        row0 = stop
                        break
                    t = pa.Table.from_batches([rb])
                    if c.max_docs:
                        t = t.slice(0, c.max_docs - count)
                    yield _parquet_batch(t, path, row0, c, id_prefix)
                    row0 += t.num_rows
                    count += t.num_rows
                row0 = group_end
                if c.max_docs and count >= c.max_docs:
                    return


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg[:300]}"


def _parquet_batch(t: pa.Table, path: Path, row0: int, c: FileSourceConfig,
                   id_prefix: str) -> SourceBatch:
    n_read = t.num_rows
    rows: list[int] | range = range(row0, row0 + n_read)
    bad_utf8 = _invalid_utf8_rows(t)
    utf8_rej = None
    if bad_utf8:  # rare: Parquet readers do not check UTF-8, our writers and later stages do
        bad = sorted(bad_utf8)
        bad_ids = [f"{id_prefix}:{row0 + i}" for i in bad]
        if c.id_field in t.column_names and c.id_field not in bad_utf8.values():
            bad_ids = own_or_fallback_ids(t.take(pa.array(bad, type=pa.int64())), c.id_field, bad_ids)
        utf8_rej = rejected_table(
            bad_ids, c.name, "ingest", "invalid_utf8",
            [f"{path}: row {row0 + i}: column {bad_utf8[i]!r} is not valid UTF-8" for i in bad], None)
        keep = [i for i in range(n_read) if i not in bad_utf8]
        t = t.take(pa.array(keep, type=pa.int64()))
        rows = [row0 + i for i in keep]
    ids = own_or_fallback_ids(t, c.id_field, [f"{id_prefix}:{r}" for r in rows])
    text = t.column(c.text_field)
    if not pa.types.is_string(text.type):
        text = text.cast(pa.string())  # large_string, or dictionary-encoded (pandas `category`)
    valid = pc.is_valid(text)
    table = docs_from_table(t, c, ids, text, [f"{path}:{r}" for r in rows])
    good = table.filter(valid)
    bad_idx = [i for i, v in enumerate(valid.to_pylist()) if not v]
    rejected = rejected_table(
        [ids[i] for i in bad_idx], c.name, "ingest", "missing_text",
        [f"{path}: row {rows[i]}: column {c.text_field!r} is null" for i in bad_idx], None)
    if utf8_rej is not None:
        rejected = pa.concat_tables([utf8_rej, rejected])
    return SourceBatch(good.cast(DOC_SCHEMA), rejected, n_read,
                       int(pc.sum(pc.binary_length(good.column("text"))).as_py() or 0))


def _invalid_utf8_rows(t: pa.Table) -> dict[int, str]:
    """Row index -> name of the first string column whose value there is not valid UTF-8.
    One vectorised validation per string column; rows are only looked at when it fails."""
    out: dict[int, str] = {}
    for name, col in zip(t.column_names, t.columns):
        typ = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
        if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
            continue
        try:
            col.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        if pa.types.is_dictionary(col.type):
            col = pa.chunked_array([ch.dictionary.take(ch.indices) for ch in col.chunks], type=typ)
        for i, v in enumerate(col.cast(pa.large_binary()).to_pylist()):
            if v is not None and i not in out:
                try:
                    v.decode("utf-8")
                except UnicodeDecodeError:
                    out[i] = name
    return out


def _unreadable_rows(pf: pq.ParquetFile, path: Path, group: int, offset: int, start: int, stop: int,
                     why: str, c: FileSourceConfig, id_prefix: str) -> SourceBatch:
    """Rows start..stop (file row numbers; `offset` rows into row group `group`) could not
    be decoded: one rejected record each, with the record's own id when the id column
    of that row group can still be read."""
    rows = range(start, stop)
    fallback = [f"{id_prefix}:{r}" for r in rows]
    ids = fallback
    if c.id_field in pf.schema_arrow.names:
        try:
            own = pf.read_row_group(group, columns=[c.id_field]).slice(offset, stop - start)
            ids = own_or_fallback_ids(own, c.id_field, fallback)
        except (pa.ArrowException, OSError, ValueError):
            pass
    reasons = [f"source {c.name!r}: {path}: row {r}: row group {group} cannot be decoded: {why}" for r in rows]
    rejected = rejected_table(ids, c.name, "ingest", "corrupt_row_group", reasons, None)
    return SourceBatch(DOC_SCHEMA.empty_table(), rejected, len(rows), 0)


class TextSourceConfig(SourceConfig):
    paths: list[str] = recipe_path(min_length=1, description="globs, relative to the recipe's folder")
    separator: str | None = Field(None, description="split each file into documents on this exact string (e.g. '\\n\\n'); default: one document per file")
    separator_regex: str | None = Field(None, description="split on this regular expression instead (matches start a new document)")
    kind: Literal["prose", "code"] = "prose"
    encoding: str = "utf-8"
    max_record_bytes: int = Field(64 << 20, ge=1, description="a document (a whole file, or a part of a split file) "
                                  "larger than this, decompressed, is rejected (`oversize_record`) without being held whole")

    _local_paths = field_validator("paths")(classmethod(lambda cls, v: check_local_paths(v)))


@register
class TextSource(Source):
    """Plain text (optionally compressed): one document per file, or split by a separator.
    A file read as one document that is not valid UTF-8 is rejected whole with the byte
    offset of the first bad byte; a split file is read as a stream (memory bounded by
    max_record_bytes), and each part is judged on its own."""

    type = "text"
    Config = TextSourceConfig

    def read(self) -> Iterator[SourceBatch]:
        c: TextSourceConfig = self.config
        b = BatchBuilder(c.name, c.license)
        count = 0
        for path in self.resolve_globs(c.paths):
            self.provenance.append({"path": str(path), "size": path.stat().st_size})
            base_id = f"{c.name}/{self.input_name(path)}"
            whole = not (c.separator or c.separator_regex)
            records = _whole_file(path, c, base_id, b) if whole else _split_file(path, c, base_id, b)
            for _ in records:  # each step adds one document or rejection to `b`
                count += 1
                if b.full():
                    yield b.flush()
                if c.max_docs and count >= c.max_docs:
                    yield b.flush()
                    return
        yield b.flush()


def _whole_file(path: Path, c: TextSourceConfig, base_id: str, b: BatchBuilder) -> Iterator[None]:
    with _open(path, c.name) as f:
        try:
            raw = f.read(c.max_record_bytes + 1)
            size = len(raw)
            if size > c.max_record_bytes:
                head = raw[:4096]
                del raw
                while more := f.read(1 << 20):
                    size += len(more)
        except (EOFError, OSError) as e:
            raise _unreadable(c.name, path, e) from e
    b.bytes_read += size
    if size > c.max_record_bytes:
        b.reject(base_id, "oversize_record", f"{path}: {size:,} bytes, over max_record_bytes "
                 f"({c.max_record_bytes:,}); skipped without reading it whole", head.decode(c.encoding, "replace"))
        yield
        return
    try:
        text = raw.decode(c.encoding)
        if text.startswith("\ufeff"):
            text = text[1:]  # a byte order mark is not text
    except UnicodeDecodeError as e:
        b.reject(base_id, "invalid_utf8", f"{path}: invalid {c.encoding} at byte {e.start}",
                 raw.decode(c.encoding, "replace"))
        yield
        return
    b.add(base_id, text, kind=c.kind, path=str(path))
    yield


def _unreadable(source: str, path: Path, e: BaseException) -> IOError:
    return IOError(f"source {source!r}: {path}: cannot read compressed stream to the end ({e}); "
                   "the file is truncated or corrupt")


_TEXT_CHUNK = 1 << 20  # bytes read at a time from a file split into documents
_REGEX_WINDOW = 1 << 16  # a separator_regex match is trusted once this much text follows it
_REGEX_CONTEXT = 1 << 10  # text kept before the search point (for ^, \b and lookbehinds)
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes the codec could not decode (surrogateescape)


def _split_file(path: Path, c: TextSourceConfig, base_id: str, b: BatchBuilder) -> Iterator[None]:
    """The parts of a file split on `separator` (removed) or `separator_regex` (a match starts
    the next part), read as a stream: the same parts and ids as splitting the whole text, with
    memory bounded by max_record_bytes (a longer part is rejected, `oversize_record`)."""
    enc = c.encoding

    def nbytes(s: str) -> int:
        return len(s.encode(enc, "surrogateescape"))

    def chunks() -> Iterator[str]:
        decoder = codecs.getincrementaldecoder(enc)("surrogateescape")
        first = True
        with _open(path, c.name) as f:
            while True:
                try:
                    raw = f.read(_TEXT_CHUNK)
                except (EOFError, OSError) as e:
                    raise _unreadable(c.name, path, e) from e
                b.bytes_read += len(raw)
                try:
                    text = decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as e:  # a codec whose errors surrogateescape cannot carry (UTF-16)
                    raise InputError(f"source {c.name!r}: {path}: cannot be decoded as {enc} ({e})") from e
                if first and text:
                    first = False
                    text = text.removeprefix("\ufeff")  # a byte order mark is not text
                if text:
                    yield text
                if not raw:
                    return

    sep = c.separator.encode().decode("unicode_escape") if c.separator else None
    pattern = re.compile(c.separator_regex, re.M) if c.separator_regex else None
    pending = None  # the first part, held until a second one says the file is split
    n = 0
    for text, size, head, offset in _parts(chunks(), sep, pattern, c.max_record_bytes, nbytes):
        part = (text, size, head, offset)
        if n == 0:
            pending = part
        else:
            if n == 1:
                yield from _add_part(b, c, path, base_id, 0, pending, True, nbytes)
            yield from _add_part(b, c, path, base_id, n, part, True, nbytes)
        n += 1
    if n == 1:
        yield from _add_part(b, c, path, base_id, 0, pending, False, nbytes)


def _add_part(b: BatchBuilder, c: TextSourceConfig, path: Path, base_id: str, i: int, part, multi: bool, nbytes):
    text, size, head, offset = part
    doc_id = f"{base_id}#{i}" if multi else base_id
    where = f"{path}#{i}" if multi else str(path)
    if text is None or size > c.max_record_bytes:
        b.reject(doc_id, "oversize_record", f"{where}: {size:,} bytes, over max_record_bytes ({c.max_record_bytes:,}); "
                 "skipped without holding it whole", _readable(head if text is None else text[:4096], c.encoding))
        yield
        return
    if multi and not text.strip():
        return  # the space between separators is not a document
    bad = _ESCAPED.search(text)
    if bad:
        b.reject(doc_id, "invalid_utf8", f"{where}: invalid {c.encoding} at byte {offset + nbytes(text[:bad.start()])}",
                 _readable(text, c.encoding))
    else:
        b.add(doc_id, text, kind=c.kind, path=where)
    yield


def _readable(text: str, enc: str) -> str:
    return text.encode(enc, "surrogateescape").decode(enc, "replace")


def _parts(chunks: Iterator[str], sep: str | None, pattern, limit: int, nbytes):
    """(text, bytes, head, byte offset) of each part of a text stream, in order; `text` is
    None for a part over `limit` bytes (`head`: its first 4,096 characters), which is never
    held whole. A part ends where the separator starts; the next starts after it (`sep`) or
    at it (`pattern`, whose matches are trusted _REGEX_WINDOW characters before the end of
    what has been read, or at the end of the file)."""
    buf, buf0 = "", 0  # text from absolute character position buf0 on
    start = search = 0  # where the current part starts; where the next separator search starts
    offset = 0  # byte offset of the current part
    over = None  # [bytes so far, head, counted up to] once the current part is over `limit`
    final = False
    stream = iter(chunks)
    while True:
        cut = None
        if sep is not None:
            i = buf.find(sep, search - buf0)
            if i >= 0:
                cut = (buf0 + i, buf0 + i + len(sep))
                search = cut[1]
            else:
                search = max(search, buf0 + len(buf) - len(sep) + 1)
            lower = search  # no separator starts before this
        else:
            m = pattern.search(buf, search - buf0)
            if m and (final or m.end() <= len(buf) - _REGEX_WINDOW):
                cut = (buf0 + m.start(), buf0 + m.start())
                search = buf0 + (m.end() if m.end() > m.start() else m.end() + 1)
                if cut[0] == start:  # a match where the part starts (the file's first): no empty part
                    continue
            elif not m:
                search = max(search, buf0 + len(buf) - _REGEX_WINDOW)
            lower = buf0 + m.start() if m else search
        if cut is None and final:
            if sep is None and buf0 + len(buf) == start:
                return  # a regex split leaves no empty part (an empty file has none)
            cut = (buf0 + len(buf), buf0 + len(buf))
        if cut is not None:
            end, nxt = cut
            if over is None:
                text = buf[start - buf0:end - buf0]
                size = nbytes(text)
                yield text, size, None, offset
            else:
                size = over[0] + nbytes(buf[over[2] - buf0:end - buf0])
                yield None, size, over[1], offset
            offset += size + nbytes(buf[end - buf0:nxt - buf0])
            start, over = nxt, None
            if final and end == nxt == buf0 + len(buf):
                return
            keep = max(0, start - _REGEX_CONTEXT - buf0)
            buf, buf0 = buf[keep:], buf0 + keep
            continue
        if over is None and lower - start > limit:  # more characters than bytes allowed: surely over
            over = [0, buf[start - buf0:start - buf0 + 4096], start]
        if over is not None:  # drop what the search has passed, counting its bytes
            drop = max(over[2], min(lower, buf0 + len(buf)) - _REGEX_CONTEXT)
            over[0] += nbytes(buf[over[2] - buf0:drop - buf0])
            over[2] = drop
            buf, buf0 = buf[drop - buf0:], drop
        more = next(stream, None)
        if more is None:
            final = True
            continue
        buf += more
