"""Local file sources: `jsonl` (plain or gzip/zstd/bz2), `parquet`, `text`.

Record ids: the record's own id (from `id_field`, default `id`) when it has one, so users
can map results back to their data; otherwise `<source>/<file name>:<line>` (jsonl),
`<source>/<file name>:<row>` (parquet) or `<source>/<file name>[#<part>]` (text), all
stable across runs of the same inputs.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterator, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from pipeline.io import open_compressed
from pipeline.records import recipe_path
from pipeline.schema import DOC_SCHEMA, rejected_table
from pipeline.sources import register
from pipeline.sources.base import BatchBuilder, Source, SourceBatch, SourceConfig, own_or_fallback_ids

# Columns a source may fill directly from a record's field of the same name.
_DIRECT = ("url", "license", "kind")


class FileSourceConfig(SourceConfig):
    paths: list[str] = recipe_path(min_length=1, description="globs, relative to the recipe's folder")
    text_field: str = "text"
    id_field: str = "id"
    meta_fields: list[str] | None = Field(None, description="record fields kept in `meta` (default: all others)")


def _doc_name(path: Path) -> str:
    return path.name


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
            with open_compressed(path) as raw:
                for lineno, line in enumerate(_lines(raw, path), start=1):
                    if not line.strip():
                        continue  # blank lines are not records
                    fallback_id = f"{c.name}/{path.name}:{lineno}"
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
                    else:
                        _add_record(b, rec, c, fallback_id, where)
                    count += 1
                    if b.full():
                        yield b.flush()
                    if c.max_docs and count >= c.max_docs:
                        yield b.flush()
                        return
        yield b.flush()


def _lines(raw, path: Path):
    """Yield raw lines; a truncated or corrupt compressed stream is an error naming the file."""
    try:
        for line in io.BufferedReader(raw, buffer_size=1 << 20) if not hasattr(raw, "peek") else raw:
            yield line
    except (EOFError, OSError) as e:
        raise IOError(f"{path}: cannot read compressed stream to the end ({e}); the file is truncated or corrupt") from e


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
    skip = {c.text_field, c.id_field, *_DIRECT}
    keys = c.meta_fields if c.meta_fields is not None else [k for k in rec if k not in skip]
    meta = {k: rec[k] for k in keys if k in rec}
    b.add(doc_id, text, url=rec.get("url"), path=where, license=rec.get("license"),
          kind=rec.get("kind") or "prose", meta=meta)


@register
class ParquetSource(Source):
    """Parquet files read in record batches. Rows whose text is null are rejected with the row number."""

    type = "parquet"
    Config = FileSourceConfig

    def read(self) -> Iterator[SourceBatch]:
        c: FileSourceConfig = self.config
        count = 0
        for path in self.resolve_globs(c.paths):
            self.provenance.append({"path": str(path), "size": path.stat().st_size})
            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
            if c.text_field not in names:
                raise ValueError(f"{path}: no column {c.text_field!r} (columns: {names})")
            row0 = 0
            for rb in pf.iter_batches(batch_size=2000):
                t = pa.Table.from_batches([rb])
                n = t.num_rows
                if c.max_docs:
                    n = min(n, c.max_docs - count)
                    t = t.slice(0, n)
                rows = range(row0, row0 + n)
                fallback = [f"{c.name}/{path.name}:{r}" for r in rows]
                ids = own_or_fallback_ids(t, c.id_field, fallback)
                text = t.column(c.text_field)
                if not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type):
                    raise ValueError(f"{path}: column {c.text_field!r} has type {text.type}, not string")
                valid = pc.is_valid(text)
                meta_cols = c.meta_fields if c.meta_fields is not None else [
                    k for k in names if k not in {c.text_field, c.id_field, *_DIRECT}]
                meta_rows = t.select([m for m in meta_cols if m in names]).to_pylist() if meta_cols else [None] * n
                docs = {
                    "id": ids,
                    "text": text.cast(pa.string()),
                    "source": [c.name] * n,
                    "license": t.column("license").cast(pa.string()) if "license" in names else [c.license] * n,
                    "kind": t.column("kind").cast(pa.string()) if "kind" in names else ["prose"] * n,
                    "url": t.column("url").cast(pa.string()) if "url" in names else [None] * n,
                    "path": [f"{path}:{r}" for r in rows],
                    "meta": [json.dumps(m, ensure_ascii=False, sort_keys=True, default=str) if m else None for m in meta_rows],
                }
                table = pa.Table.from_pydict(docs, schema=pa.schema([f.with_nullable(True) for f in DOC_SCHEMA]))
                good = table.filter(valid)
                bad_idx = [i for i, v in enumerate(valid.to_pylist()) if not v]
                rejected = rejected_table(
                    [ids[i] for i in bad_idx], c.name, "ingest", "missing_text",
                    [f"{path}: row {row0 + i}: column {c.text_field!r} is null" for i in bad_idx], None)
                yield SourceBatch(good.cast(DOC_SCHEMA), rejected, n, int(pc.sum(pc.binary_length(good.column("text"))).as_py() or 0))
                row0 += n
                count += n
                if c.max_docs and count >= c.max_docs:
                    return


class TextSourceConfig(SourceConfig):
    paths: list[str] = recipe_path(min_length=1, description="globs, relative to the recipe's folder")
    separator: str | None = Field(None, description="split each file into documents on this exact string (e.g. '\\n\\n'); default: one document per file")
    separator_regex: str | None = Field(None, description="split on this regular expression instead (matches start a new document)")
    kind: Literal["prose", "code"] = "prose"
    encoding: str = "utf-8"


@register
class TextSource(Source):
    """Plain text (optionally compressed): one document per file, or split by a separator.
    A file that is not valid UTF-8 is rejected whole with the byte offset of the first bad byte."""

    type = "text"
    Config = TextSourceConfig

    def read(self) -> Iterator[SourceBatch]:
        import re

        c: TextSourceConfig = self.config
        b = BatchBuilder(c.name, c.license)
        count = 0
        for path in self.resolve_globs(c.paths):
            self.provenance.append({"path": str(path), "size": path.stat().st_size})
            with open_compressed(path) as f:
                try:
                    raw = f.read()
                except (EOFError, OSError) as e:
                    raise IOError(f"{path}: cannot read compressed stream to the end ({e}); the file is truncated or corrupt") from e
            b.bytes_read += len(raw)
            base_id = f"{c.name}/{path.name}"
            try:
                text = raw.decode(c.encoding)
            except UnicodeDecodeError as e:
                b.reject(base_id, "invalid_utf8", f"{path}: invalid {c.encoding} at byte {e.start}",
                         raw.decode(c.encoding, "replace"))
                count += 1
                continue
            if c.separator_regex:
                starts = [m.start() for m in re.finditer(c.separator_regex, text, flags=re.M)]
                bounds = sorted(set([0] + starts + [len(text)]))
                parts = [text[a:z] for a, z in zip(bounds, bounds[1:])]
            elif c.separator:
                parts = text.split(c.separator.encode().decode("unicode_escape"))
            else:
                parts = [text]
            multi = len(parts) > 1
            for i, part in enumerate(parts):
                if multi and not part.strip():
                    continue  # the space between separators is not a document
                doc_id = f"{base_id}#{i}" if multi else base_id
                b.add(doc_id, part, kind=c.kind, path=f"{path}#{i}" if multi else str(path))
                count += 1
                if b.full():
                    yield b.flush()
                if c.max_docs and count >= c.max_docs:
                    yield b.flush()
                    return
        yield b.flush()
