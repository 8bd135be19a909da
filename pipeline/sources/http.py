"""`http` source: files fetched over HTTP(S) into `DIR/raw/`, verified, then read by format.

    - name: fineweb_edu_sample
      type: http
      license: ODC-By-1.0
      urls:
        - https://host/a.parquet                                  # size and sha256 recorded
        - {url: https://host/b.jsonl.gz, sha256: 9f2c..., size: 123456}   # and verified
      manifest: files.jsonl      # or a URL: JSONL lines {"url": ..., "sha256": ..., "size": ...}

All files of a source are downloaded first (at most `concurrency` at a time), then read
in the order listed. If any file fails (after bounded retries) or does not match its
size/sha256, the files that did arrive are kept in raw/ for the next run, and the source
raises `DownloadError`/`ChecksumError` naming every failed URL before yielding a single
document: a corpus is never built from part of a source, and the run stops cleanly.

The format of each file comes from its name (`.jsonl[.gz|.zst|.bz2]`, `.parquet`,
`.txt[...]`, `.warc[.gz]`, `.wet.gz`, `.wat.gz`), or else from its first bytes.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit
from typing import Annotated, Iterator, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.download import Downloader, FileSpec, RetryPolicy, fetch_text
from pipeline.io import open_compressed
from pipeline.records import format_errors, recipe_path
from pipeline.sources import register
from pipeline.sources.base import MALFORMED_FILTERS, InputError, Source, SourceBatch, SourceConfig

FORMATS = ("jsonl", "parquet", "text", "warc")
_HTML_CONTENT_TYPES = ("text/html", "application/xhtml+xml")

_COMPRESSION_SUFFIXES = (".gz", ".zst", ".zstd", ".bz2")


def check_url(url: str) -> str:
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"{url!r} is not an http(s) URL (local files go in `paths:` of a local source)")
    return url


HttpUrl = Annotated[str, AfterValidator(check_url)]


class UrlEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(description="http(s) URL of the file")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value):
        return {"url": value} if isinstance(value, str) else value  # a bare URL string is an entry too
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$", description="expected sha256 (hex); verified")
    size: int | None = Field(None, ge=0, description="expected size in bytes; verified")


class DownloadOptions(SourceConfig):
    """Download settings shared by every source that fetches over HTTP."""

    concurrency: int = Field(4, ge=1, le=64, description="files transferred at the same time")
    max_attempts: int = Field(6, ge=1, description="failures in a row without progress before a file is given up")
    backoff_base: float = Field(1.0, ge=0, description="seconds before the first retry; doubles per retry")
    backoff_max: float = Field(60.0, ge=0, description="cap on one retry wait (also caps Retry-After)")
    timeout: float = Field(60.0, gt=0, description="seconds to connect and between received bytes")
    allow_private_networks: bool = Field(
        False, description="allow URLs (and redirects) to loopback, private and link-local addresses; "
                           "refused by default (cloud metadata endpoints, services behind a firewall)")

    def downloader(self, work_dir: Path) -> Downloader:
        retry = RetryPolicy(self.max_attempts, self.backoff_base, self.backoff_max)
        return Downloader(Path(work_dir) / "raw", retry=retry, concurrency=self.concurrency, timeout=self.timeout,
                          license=self.license, source=self.name, allow_private_networks=self.allow_private_networks)


class ReadOptions(BaseModel):
    """How fetched files are turned into documents (fields of the readers they go to)."""

    format: Literal["auto", "jsonl", "parquet", "text", "warc"] = Field(
        "auto", description="file format; auto = from the file name, else from its first bytes")
    text_field: str = Field("text", description="jsonl/parquet: the field holding the text")
    id_field: str = Field("id", description="jsonl/parquet: the field holding the record's own id")
    meta_fields: list[str] | None = Field(None, description="jsonl/parquet: fields kept in `meta` (default: all others)")
    separator: str | None = Field(None, description="text: split files into documents on this string (default: one per file)")
    main_content: bool = Field(True, description="warc: keep only the page's main content (drop navigation, footers)")
    max_record_bytes: int = Field(64 << 20, ge=1, description="jsonl: a longer line, warc: a longer record or "
                                  "decompressed HTTP body is rejected (`oversize_record`, `unreadable_record`)")


class HttpConfig(DownloadOptions, ReadOptions):
    urls: list[UrlEntry] = Field(default_factory=list, description="files to fetch: URL strings or {url, sha256, size}")
    manifest: str | None = recipe_path(None, description="path (relative to the recipe) or URL of a JSONL list of {url, sha256, size}")

    @model_validator(mode="after")
    def _some_files(self):
        if not self.urls and not self.manifest:
            raise ValueError("give `urls` or `manifest`")
        return self


def detect_format(path: Path, name: str | None = None) -> str:
    """jsonl / parquet / text / warc, from the name (compression suffix ignored), else the bytes."""
    n = (name or path.name).lower().split("?")[0]
    for suffix in _COMPRESSION_SUFFIXES:
        if n.endswith(suffix):
            n = n[: -len(suffix)]
            break
    if n.endswith((".warc", ".wet", ".wat", ".arc")):
        return "warc"
    if n.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if n.endswith((".parquet", ".pq")):
        return "parquet"
    if n.endswith((".txt", ".text", ".md")):
        return "text"
    with open(path, "rb") as f:
        if f.read(4) == b"PAR1":
            return "parquet"
    try:
        with open_compressed(path) as f:
            head = f.read(4096).removeprefix(b"\xef\xbb\xbf")  # a byte order mark says nothing of the format
    except (OSError, EOFError) as e:
        raise IOError(f"{path}: cannot read the start of the file to detect its format ({e})") from e
    if head.startswith(b"WARC/"):
        return "warc"
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if len(head) - e.start > 4:  # not just a character cut at the 4096-byte boundary
            raise ValueError(f"{path}: cannot tell the format from the name or content; set `format:`") from None
    return "text"


def read_file(path: Path, fmt: str, config, base_dir: Path, work_dir: Path, max_docs: int | None,
              origin: str | None = None, counts: dict | None = None) -> Iterator[SourceBatch]:
    """Read one local file with the reader for `fmt`, under the source's name and license.
    `counts` (warc only) receives per-record-type counts and skip reasons."""
    from pipeline.sources.files import FileSourceConfig, JsonlSource, ParquetSource, TextSource, TextSourceConfig

    common = dict(name=config.name, license=config.license, max_docs=max_docs, paths=[str(path)])
    if fmt == "jsonl":
        sub = JsonlSource(FileSourceConfig(type="jsonl", text_field=config.text_field, id_field=config.id_field,
                                           meta_fields=config.meta_fields, max_record_bytes=config.max_record_bytes,
                                           **common), base_dir, work_dir)
    elif fmt == "parquet":
        sub = ParquetSource(FileSourceConfig(type="parquet", text_field=config.text_field, id_field=config.id_field,
                                             meta_fields=config.meta_fields, **common), base_dir, work_dir)
    elif fmt == "text":
        sub = TextSource(TextSourceConfig(type="text", separator=config.separator, **common), base_dir, work_dir)
    elif fmt == "warc":
        from pipeline.sources.warc import WarcReader

        yield from WarcReader(config.name, config.license, main_content=config.main_content,
                              max_record_bytes=config.max_record_bytes).read(
            path, max_docs=max_docs, origin=origin, counts=counts)
        return
    else:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    yield from sub.read()


class FetchingSource(Source):
    """A source whose inputs are downloaded first; subclasses say which files (`file_specs`)."""

    def file_specs(self) -> list[FileSpec]:
        raise NotImplementedError

    def fetch(self) -> list[dict]:
        """Download (or reuse) every file; return their manifest entries (also appended to
        `provenance`). Raises before any document is read if a file cannot be fetched or verified."""
        entries = [dict(e) for e in self.config.downloader(self.work_dir).fetch_all(self.file_specs())]
        self.provenance.extend(entries)
        return entries

    def read(self) -> Iterator[SourceBatch]:
        c = self.config
        done = 0
        entries = self.fetch()
        names = [Path(e["local_path"]).name for e in entries]
        for entry in entries:
            path = Path(entry["local_path"])
            fmt = c.format if c.format != "auto" else detect_format(path, entry["url"])
            entry["format"] = fmt
            counts: dict = {}
            # Records without their own id are named `<source>/<file name>:<line>`; two URLs
            # with one file name (…/a/0000.parquet, …/b/0000.parquet) would collide, so
            # those get the URL's path instead of the bare name.
            rename = None
            if names.count(path.name) > 1 and fmt != "warc":
                rename = (f"{c.name}/{path.name}", f"{c.name}/{urlsplit(entry['url']).path.strip('/')}")
            ctype = (entry.get("content_type") or "").split(";")[0].strip().lower()
            if fmt in ("jsonl", "parquet") and ctype in _HTML_CONTENT_TYPES:
                raise InputError(f"source {c.name!r}: {entry['url']}: the server sent {ctype} (a web page, "
                                 f"not {fmt}); check the URL")
            good = bad = 0
            bad_filters: set[str] = set()
            try:
                for batch in read_file(path, fmt, c, self.base_dir, self.work_dir,
                                       c.max_docs - done if c.max_docs else None, origin=entry["url"], counts=counts):
                    done += batch.docs.num_rows + batch.rejected.num_rows
                    good += batch.docs.num_rows
                    if batch.rejected.num_rows:
                        filters = set(batch.rejected.column("filter").to_pylist())
                        bad += batch.rejected.num_rows
                        bad_filters |= filters
                    yield _renamed(batch, *rename) if rename else batch
            except InputError as e:
                if entry["url"] in str(e):
                    raise
                raise InputError(f"{e} (downloaded from {entry['url']})") from e
            if fmt == "jsonl" and good == 0 and bad and bad_filters <= MALFORMED_FILTERS:
                raise InputError(f"source {c.name!r}: {entry['url']}: every one of its {bad} records is malformed "
                                 f"({', '.join(sorted(bad_filters))}): not a {fmt} file"
                                 + (f" (Content-Type: {ctype})" if ctype else ""))
            if counts:
                entry["records"] = counts
            if c.max_docs and done >= c.max_docs:
                return


def _renamed(batch: SourceBatch, old: str, new: str) -> SourceBatch:
    """Replace the id prefix `old` by `new` (fallback ids only: a record's own id is kept)."""
    import pyarrow.compute as pc

    pattern = "^" + re.escape(old) + "([:#]|$)"

    def fix(table):
        if table.num_rows == 0:
            return table
        ids = pc.replace_substring_regex(table.column("id"), pattern=pattern, replacement=new.replace("\\", "\\\\") + "\\1")
        return table.set_column(table.schema.get_field_index("id"), table.schema.field("id"), ids)

    return SourceBatch(fix(batch.docs), fix(batch.rejected), batch.records_read, batch.bytes_read,
                       batch.surrogates_replaced)


@register
class HttpSource(FetchingSource):
    type = "http"
    Config = HttpConfig

    def file_specs(self) -> list[FileSpec]:
        c: HttpConfig = self.config
        specs = [FileSpec.parse(u.model_dump()) for u in c.urls]
        if c.manifest:
            specs.extend(self._manifest_specs(c.manifest))
        return specs

    def _manifest_specs(self, where: str) -> list[FileSpec]:

        if where.startswith(("http://", "https://")):
            raw = fetch_text(where, timeout=self.config.timeout,
                             allow_private_networks=self.config.allow_private_networks)
        else:
            p = Path(where).expanduser()
            if not p.is_file():
                raise FileNotFoundError(f"source {self.config.name!r}: manifest {where!r} not found (looked for {p})")
            with open_compressed(p) as f:
                raw = f.read()
        specs = []
        for lineno, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                specs.append(FileSpec.parse(UrlEntry.model_validate(rec).model_dump()))
            except (ValueError, TypeError) as e:
                msg = format_errors(e) if isinstance(e, ValidationError) else str(e)
                raise ValueError(f"manifest {where}:{lineno}: not a {{url, sha256, size}} entry: {msg}") from None
        return specs
