"""The source interface: a recipe entry in, batches of documents (and rejected records) out.

A source type is a `Source` subclass with a pydantic `Config` (its recipe options) and a
`read()` generator of `SourceBatch`es. Every record a source reads ends either in a
batch's `docs` (DOC_SCHEMA) or in its `rejected` (REJECTED_SCHEMA, stage "ingest") with a
reason naming the file and line: nothing is dropped silently.
"""
from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterator

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pipeline.schema import DOC_SCHEMA, rejected_table

log = logging.getLogger("pipeline.sources")


class InputError(ValueError):
    """An input that cannot be read at all (a folder that cannot be listed, a Parquet file
    whose footer cannot be read). The message is one line naming the source and the file.
    (A truncated compressed stream stays an IOError naming the source and the file.)"""


class SourceConfig(BaseModel):
    """Options every source takes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="short name, used in ids and the data card")
    type: str
    license: str | None = Field(None, description="SPDX expression or a short license note for the data card")
    max_docs: int | None = Field(None, gt=0, description="stop after this many documents (sampling)")


# Rejections that say a record is not well-formed input (not that its text was judged):
# their text is stored as an excerpt unless the recipe says `ingest: {rejected_text: full}`.
MALFORMED_FILTERS = frozenset({"invalid_json", "invalid_utf8", "not_an_object", "missing_text_field", "text_not_string",
                               "oversize_record", "unreadable_record"})


# Object stores a `paths:` URL may name: the run copies their files to a local cache first
# (flows/storage.py, through fsspec). Web URLs go through the `http` source, with its checks.
OBJECT_STORE_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "file", "local"})


def check_local_paths(paths: list[str]) -> list[str]:
    """`paths:` are local files and globs, or object-store URLs (OBJECT_STORE_SCHEMES); any
    other URL (`scheme://...`) is refused when the recipe is validated, naming its scheme,
    instead of failing or matching nothing once the run has started."""
    for p in paths:
        m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", p)
        if m and m.group(1).lower() not in OBJECT_STORE_SCHEMES:
            hint = ("fetch it with an `http` (or `warc`) source's `urls:`" if m.group(1).lower() in ("http", "https")
                    else f"object stores supported: {', '.join(sorted(OBJECT_STORE_SCHEMES))}")
            raise ValueError(f"{p!r}: URL scheme {m.group(1)!r} is not supported in `paths:`; {hint}")
    return paths


@dataclass
class SourceBatch:
    docs: pa.Table
    rejected: pa.Table
    records_read: int = 0  # docs + rejected; for the funnel
    bytes_read: int = 0
    surrogates_replaced: int = 0  # records whose strings held lone UTF-16 surrogates (now U+FFFD)


@dataclass
class BatchBuilder:
    """Accumulates documents and rejections as Python lists and emits Arrow batches."""

    source: str
    license: str | None
    batch_size: int = 2000
    docs: dict = field(default_factory=lambda: {f.name: [] for f in DOC_SCHEMA})
    rej: dict = field(default_factory=lambda: {"id": [], "filter": [], "reason": [], "text": []})
    bytes_read: int = 0

    def add(self, id: str, text: str, *, kind="prose", url=None, path=None, license=None, meta=None):
        meta = json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str) if meta else None  # may raise: before any append
        d = self.docs
        d["id"].append(id)
        d["text"].append(text)
        d["source"].append(self.source)
        d["license"].append(license if license is not None else self.license)
        d["kind"].append(kind)
        d["url"].append(url)
        d["path"].append(path)
        d["meta"].append(meta)

    def reject(self, id: str, filter: str, reason: str, text: str | None = None):
        self.rej["id"].append(id)
        self.rej["filter"].append(filter)
        self.rej["reason"].append(reason)
        self.rej["text"].append(text)

    def __len__(self):
        return len(self.docs["id"]) + len(self.rej["id"])

    def full(self) -> bool:
        return len(self) >= self.batch_size

    def flush(self) -> SourceBatch:
        fixed = 0
        try:
            docs = pa.Table.from_pydict(self.docs, schema=DOC_SCHEMA)
        except UnicodeEncodeError:  # a lone surrogate (JSON "\\ud83d"): rare, so only checked on failure
            fixed += replace_lone_surrogates(self.docs)
            docs = pa.Table.from_pydict(self.docs, schema=DOC_SCHEMA)
        r = self.rej
        try:
            rejected = rejected_table(r["id"], self.source, "ingest", r["filter"], r["reason"], r["text"])
        except UnicodeEncodeError:
            fixed += replace_lone_surrogates(r)
            rejected = rejected_table(r["id"], self.source, "ingest", r["filter"], r["reason"], r["text"])
        batch = SourceBatch(docs, rejected, docs.num_rows + rejected.num_rows, self.bytes_read, fixed)
        self.docs = {f.name: [] for f in DOC_SCHEMA}
        self.rej = {"id": [], "filter": [], "reason": [], "text": []}
        self.bytes_read = 0
        return batch


_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_lone_surrogates(columns: dict[str, list]) -> int:
    """Replace every lone UTF-16 surrogate in the string values of `columns` (equal-length
    lists, one entry per record) by U+FFFD, in place; return how many records had one.
    (json.loads joins escaped pairs into one code point, so any surrogate left is lone.)"""
    touched: set[int] = set()
    for values in columns.values():
        for i, v in enumerate(values):
            if isinstance(v, str) and _SURROGATE.search(v):
                values[i] = _SURROGATE.sub("\ufffd", v)
                touched.add(i)
    return len(touched)


class Source:
    type: ClassVar[str]
    Config: ClassVar[type[SourceConfig]] = SourceConfig

    def __init__(self, config: SourceConfig, base_dir: Path, work_dir: Path):
        self.config = config
        self.base_dir = Path(base_dir)  # the recipe's folder (its paths are already absolute)
        self.work_dir = Path(work_dir)  # the run's output folder (downloads go to work_dir/raw)
        self.provenance: list[dict] = []  # per input file: path/url, size, sha256, ... for the card

    def read(self) -> Iterator[SourceBatch]:
        raise NotImplementedError

    def _full_patterns(self, patterns: list[str]) -> list[str]:
        # absolute already: the recipe resolved them against its folder when it was parsed
        return [os.path.normpath(Path(pat).expanduser()) for pat in patterns]

    def resolve_globs(self, patterns: list[str]) -> list[Path]:
        """Expand `paths:` globs (made absolute when the recipe was parsed); a pattern matching nothing is an error.

        `**` matches any number of folders. Every real folder is listed at most once, so a
        symlink loop (or a second link to a folder already walked) is skipped; skipped links
        and dangling links are reported in one warning line. A folder that cannot be listed
        is an InputError naming it. A file reached under two names is read once."""
        files: list[Path] = []
        skipped: list[str] = []
        dangling: list[str] = []
        for pat, full in zip(patterns, self._full_patterns(patterns)):
            try:
                matches = sorted(_glob_files(full, skipped, dangling))
            except OSError as e:
                where = e.filename if e.filename is not None else full
                raise InputError(f"source {self.config.name!r}: cannot list folder {where}: "
                                 f"{e.strerror or e} (paths pattern {pat!r})") from e
            if not matches:
                raise FileNotFoundError(f"source {self.config.name!r}: paths pattern {pat!r} matched no file (looked for {full})")
            files.extend(Path(m) for m in matches)
        skipped, dangling = list(dict.fromkeys(skipped)), list(dict.fromkeys(dangling))
        if skipped or dangling:
            parts = []
            if skipped:
                parts.append(f"{len(skipped)} folder link(s) skipped (loop or folder already listed): {', '.join(skipped)}")
            if dangling:
                parts.append(f"{len(dangling)} dangling link(s): {', '.join(dangling)}")
            message = f"source {self.config.name!r}: {'; '.join(parts)}"
            if getattr(self, "_warned", None) != message:  # once per source, not per listing
                self._warned = message
                log.warning(message)
        # keep order, drop repeats (also the same file reached through a link)
        unique: dict[str, Path] = {}
        for f in files:
            unique.setdefault(os.path.realpath(f), f)
        self._input_root = _common_root(self._full_patterns(patterns))
        return list(unique.values())

    def input_name(self, path: Path) -> str:
        """`path` relative to the common folder of the `paths:` patterns (their part before the
        first wildcard), in `/` form: unique per input file and stable across reruns; what
        generated ids are made of (`<source>/<input_name>:<line>`)."""
        root = getattr(self, "_input_root", None)
        if root is None:
            root = self._input_root = _common_root(self._full_patterns(getattr(self.config, "paths", None) or [str(path)]))
        rel = os.path.relpath(os.path.normpath(path), root)
        return Path(rel).as_posix() if not rel.startswith("..") else Path(path).name


_MAGIC = re.compile(r"[*?[]")


def _static_prefix(full: str) -> str:
    """The folder part of a pattern before its first wildcard component."""
    parts = Path(full).parts
    for i, part in enumerate(parts):
        if _MAGIC.search(part):
            return str(Path(*parts[:i])) if i else os.curdir
    return str(Path(full).parent)


def _common_root(full_patterns: list[str]) -> str:
    prefixes = [os.path.abspath(_static_prefix(f)) for f in full_patterns]
    return os.path.commonpath(prefixes) if prefixes else os.path.abspath(os.curdir)


def _glob_files(full: str, skipped: list[str], dangling: list[str]) -> Iterator[str]:
    """Files matching the glob `full` (absolute or relative to the working folder). Like
    glob(recursive=True) for files, but each real folder is walked once per pattern
    position, listing errors raise OSError, and skipped/dangling links are collected."""
    parts = Path(full).parts
    for i, part in enumerate(parts):
        if _MAGIC.search(part):
            break
    else:
        if os.path.isfile(full):
            yield full
        return
    root = str(Path(*parts[:i])) if i else os.curdir
    rest = list(parts[i:])
    if rest[-1] == "**":
        rest.append("*")  # `dir/**` means every file below dir
    if not os.path.isdir(root):
        return
    seen: set[tuple[str, int]] = set()
    yield from _match(root, rest, 0, seen, skipped, dangling)


def _scan(folder: str) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _visible(name: str, part: str) -> bool:
    return not name.startswith(".") or part.startswith(".")


def _match(folder: str, rest: list[str], k: int, seen: set, skipped: list[str], dangling: list[str]) -> Iterator[str]:
    key = (os.path.realpath(folder), k)
    if key in seen:
        return
    seen.add(key)
    part, last = rest[k], k == len(rest) - 1
    if part == "**":
        # zero folders here, then one more folder below (each real folder once)
        yield from _match(folder, rest, k + 1, seen, skipped, dangling)
        # real folders before links to folders, so a folder is named by its own path first
        for e in sorted(_scan(folder), key=lambda e: e.is_symlink()):
            if e.name.startswith(".") or not e.is_dir():  # like glob, `**` skips hidden folders
                if e.is_symlink() and not os.path.exists(e.path):
                    dangling.append(e.path)
                continue
            if e.is_symlink() and (os.path.realpath(e.path), k) in seen:
                skipped.append(f"{e.path} -> {os.readlink(e.path)}")
                continue
            yield from _match(e.path, rest, k, seen, skipped, dangling)
        return
    if not _MAGIC.search(part):
        p = os.path.join(folder, part)
        if last:
            if os.path.isfile(p):
                yield p
        elif os.path.isdir(p):
            yield from _match(p, rest, k + 1, seen, skipped, dangling)
        return
    for e in _scan(folder):
        if not _visible(e.name, part) or not fnmatch.fnmatchcase(e.name, part):
            continue
        if e.is_symlink() and not os.path.exists(e.path):
            dangling.append(e.path)
        elif last:
            if e.is_file():
                yield e.path
        elif e.is_dir():
            yield from _match(e.path, rest, k + 1, seen, skipped, dangling)


# Record fields that are DOC_SCHEMA columns of their own; every other field goes into `meta`.
DIRECT_FIELDS = ("url", "license", "kind")


def docs_from_table(t: pa.Table, c, ids: list[str], text, paths: list[str]) -> pa.Table:
    """DOC_SCHEMA columns (all nullable: the caller filters rows without text) for a table of
    records from a columnar source (Parquet, a Hugging Face dataset) with config `c`."""
    n, names = t.num_rows, t.column_names
    meta_cols = c.meta_fields if c.meta_fields is not None else [
        k for k in names if k not in {c.text_field, c.id_field, *DIRECT_FIELDS}]
    meta_cols = [m for m in meta_cols if m in names]
    meta_rows = t.select(meta_cols).to_pylist() if meta_cols else [None] * n
    cols = {
        "id": ids,
        "text": text,
        "source": [c.name] * n,
        "license": t.column("license").cast(pa.string()) if "license" in names else [c.license] * n,
        "kind": t.column("kind").cast(pa.string()) if "kind" in names else ["prose"] * n,
        "url": t.column("url").cast(pa.string()) if "url" in names else [None] * n,
        "path": paths,
        "meta": [json.dumps(m, ensure_ascii=False, sort_keys=True, default=str) if m else None for m in meta_rows],
    }
    return pa.Table.from_pydict(cols, schema=pa.schema([f.with_nullable(True) for f in DOC_SCHEMA]))


def own_or_fallback_ids(table: pa.Table, id_field: str, fallback: list[str]) -> list[str]:
    """The records' own ids from `id_field` where present and non-empty, else `fallback`."""
    if id_field not in table.column_names:
        return fallback
    own = table.column(id_field).cast(pa.string()).to_pylist()
    return [o if o not in (None, "") else f for o, f in zip(own, fallback)]
