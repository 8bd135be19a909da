"""The source interface: a recipe entry in, batches of documents (and rejected records) out.

A source type is a `Source` subclass with a pydantic `Config` (its recipe options) and a
`read()` generator of `SourceBatch`es. Every record a source reads ends either in a
batch's `docs` (DOC_SCHEMA) or in its `rejected` (REJECTED_SCHEMA, stage "ingest") with a
reason naming the file and line: nothing is dropped silently.
"""
from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterator

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pipeline.schema import DOC_SCHEMA, REJECTED_SCHEMA, conform, rejected_table


class SourceConfig(BaseModel):
    """Options every source takes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="short name, used in ids and the data card")
    type: str
    license: str | None = Field(None, description="SPDX expression or a short license note for the data card")
    max_docs: int | None = Field(None, gt=0, description="stop after this many documents (sampling)")


@dataclass
class SourceBatch:
    docs: pa.Table
    rejected: pa.Table
    records_read: int = 0  # docs + rejected; for the funnel
    bytes_read: int = 0


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
        d = self.docs
        d["id"].append(id)
        d["text"].append(text)
        d["source"].append(self.source)
        d["license"].append(license if license is not None else self.license)
        d["kind"].append(kind)
        d["url"].append(url)
        d["path"].append(path)
        d["meta"].append(json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str) if meta else None)

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
        docs = pa.Table.from_pydict(self.docs, schema=DOC_SCHEMA)
        r = self.rej
        rejected = rejected_table(r["id"], self.source, "ingest", r["filter"], r["reason"], r["text"])
        batch = SourceBatch(docs, rejected, docs.num_rows + rejected.num_rows, self.bytes_read)
        self.docs = {f.name: [] for f in DOC_SCHEMA}
        self.rej = {"id": [], "filter": [], "reason": [], "text": []}
        self.bytes_read = 0
        return batch


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

    def resolve_globs(self, patterns: list[str]) -> list[Path]:
        """Expand `paths:` globs (made absolute when the recipe was parsed); a pattern matching nothing is an error."""
        files: list[Path] = []
        for pat in patterns:
            full = Path(pat).expanduser()
            matches = sorted(Path(m) for m in glob.glob(str(full), recursive=True) if Path(m).is_file())
            if not matches:
                raise FileNotFoundError(f"source {self.config.name!r}: paths pattern {pat!r} matched no file (looked for {full})")
            files.extend(matches)
        # keep order, drop repeats
        return list(dict.fromkeys(files))


def own_or_fallback_ids(table: pa.Table, id_field: str, fallback: list[str]) -> list[str]:
    """The records' own ids from `id_field` where present and non-empty, else `fallback`."""
    if id_field not in table.column_names:
        return fallback
    own = table.column(id_field).cast(pa.string()).to_pylist()
    return [o if o not in (None, "") else f for o, f in zip(own, fallback)]


def to_docs(table: pa.Table) -> pa.Table:
    return conform(table, DOC_SCHEMA)


def empty_batch() -> SourceBatch:
    return SourceBatch(DOC_SCHEMA.empty_table(), REJECTED_SCHEMA.empty_table())
