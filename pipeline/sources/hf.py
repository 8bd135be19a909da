"""`hf` source: a Hugging Face dataset through `datasets`, from the Hub or a local folder.

    - name: tinystories
      type: hf
      path: roneneldan/TinyStories      # Hub id, or a local folder
      split: validation
      revision: main                    # pin a commit sha for reproducible corpora
      text_field: text

`path` may be a local folder: one written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`
(read with `load_from_disk`), or a folder of parquet/json/csv/text data files (read with
`load_dataset`, which infers the format). Hub access goes through `datasets` and
`huggingface_hub`, so their environment variables apply: `HF_ENDPOINT` for a mirror,
`HF_HUB_OFFLINE=1` / `HF_DATASETS_OFFLINE=1` to use only the local cache, `HF_TOKEN` for
gated datasets, `HF_HOME` for the cache location. They are read when those libraries are
imported, so set them in the environment of the run, not in the recipe.

Rows are read as Arrow batches (no Python object per row). Ids are the row's own
`id_field` when present, else `<source>/<split>:<row number>`. A row whose text is null
or not a string becomes a rejected record naming the dataset, split and row.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from pipeline.records import recipe_path
from pipeline.schema import DOC_SCHEMA, rejected_table
from pipeline.sources import register
from pipeline.sources.base import Source, SourceBatch, SourceConfig, docs_from_table, own_or_fallback_ids



class HfConfig(SourceConfig):
    path: str = recipe_path(kind="local_or_id", description="Hub dataset id (owner/name) or a local dataset folder (relative to the recipe)")
    config_name: str | None = Field(None, description="dataset configuration (the `name` argument of load_dataset)")
    split: str = Field("train", description="split to read")
    revision: str | None = Field(None, description="Hub branch, tag or commit sha (pin one for a reproducible corpus)")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(None, description="data_files for load_dataset")
    text_field: str = Field("text", description="column holding the text")
    id_field: str = Field("id", description="column holding the row's own id, if any")
    meta_fields: list[str] | None = Field(None, description="columns kept in `meta` (default: all others)")
    streaming: bool = Field(False, description="stream from the Hub instead of downloading the whole split first")
    batch_size: int = Field(2000, ge=1, description="rows per Arrow batch")
    cache_dir: str | None = Field(None, description="datasets cache folder (default: HF_HOME's)")
    document_start: str | None = Field(
        None, description="regex: join consecutive rows into one document, a new one starting at each row that "
                          "matches (for datasets stored one line per row, e.g. WikiText: '^ = [^=]')")



@register
class HfSource(Source):
    type = "hf"
    Config = HfConfig

    def _local_path(self) -> Path | None:
        p = Path(self.config.path).expanduser()  # absolute when it named a folder beside the recipe
        return p if p.is_absolute() and p.exists() else None

    def load(self):
        """The split as a `datasets.Dataset` (or `IterableDataset` when streaming)."""
        import datasets

        c: HfConfig = self.config
        local = self._local_path()
        if local is not None and local.is_dir() and (
                (local / "dataset_info.json").exists() or (local / "dataset_dict.json").exists()
                or (local / "state.json").exists()):
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                if c.split not in ds:
                    raise KeyError(f"{local}: no split {c.split!r} (splits: {list(ds)})")
                ds = ds[c.split]
            if c.streaming:
                ds = ds.to_iterable_dataset()
            return ds, str(local)
        kwargs = dict(split=c.split, streaming=c.streaming)
        if c.cache_dir:
            kwargs["cache_dir"] = c.cache_dir
        if c.config_name:
            kwargs["name"] = c.config_name
        if c.revision:
            kwargs["revision"] = c.revision
        if c.data_files is not None:
            kwargs["data_files"] = c.data_files
        where = str(local) if local is not None else c.path
        try:
            return datasets.load_dataset(where, **kwargs), where
        except ValueError as e:
            if "split" in str(e).lower():
                raise KeyError(f"{where}: {e}") from e
            raise
        except ConnectionError as e:
            if local is not None:
                raise
            hint = ("offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) and it is not in the cache "
                    f"({datasets.config.HF_DATASETS_CACHE}); run once with network" if datasets.config.HF_HUB_OFFLINE
                    else f"the Hub ({os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}) cannot be reached")
            raise ConnectionError(f"source {c.name!r}: cannot load {c.path!r} ({e}): {hint}, "
                                  "or set HF_ENDPOINT to a mirror, or give a local folder as `path`") from e

    def read(self) -> Iterator[SourceBatch]:
        c: HfConfig = self.config
        ds, where = self.load()
        self.provenance.append(self._provenance(ds, where))
        names = list(ds.column_names or []) if ds.column_names is not None else None
        if names is not None and c.text_field not in names:
            raise ValueError(f"{where} [{c.split}]: no column {c.text_field!r} (columns: {names})")
        row0 = 0
        batches = self._batches(ds)
        if c.document_start:
            batches = self._joined(batches, self.provenance[-1])
        for table in batches:
            if c.max_docs:
                table = table.slice(0, max(0, c.max_docs - row0))
            if table.num_rows == 0:
                break
            yield self._to_batch(table, row0, where)
            row0 += table.num_rows
            if c.max_docs and row0 >= c.max_docs:
                break

    def _batches(self, ds) -> Iterator[pa.Table]:
        bs = self.config.batch_size
        for batch in ds.with_format("arrow").iter(batch_size=bs):
            yield batch if isinstance(batch, pa.Table) else pa.Table.from_pydict(batch)

    def _joined(self, batches: Iterator[pa.Table], prov: dict) -> Iterator[pa.Table]:
        """Rows -> documents: a document runs from a row matching `document_start` to the row
        before the next match. Its id and path name its first row. Groups of blank rows
        (before the first heading) are not documents; their row count goes to provenance."""
        c: HfConfig = self.config
        start = re.compile(c.document_start)
        texts: list[str] = []
        firsts: list[int] = []
        lasts: list[int] = []
        group: list[str] = []
        first = row = 0
        blank_rows = 0

        def close():
            nonlocal blank_rows
            doc = "".join(group)
            if doc.strip():
                texts.append(doc)
                firsts.append(first)
                lasts.append(row - 1)
            else:
                blank_rows += len(group)

        for t in batches:
            if c.text_field not in t.column_names:
                raise ValueError(f"{c.path} [{c.split}]: no column {c.text_field!r} (columns: {t.column_names})")
            for line in t.column(c.text_field).to_pylist():
                line = line or ""
                if group and start.match(line):
                    close()
                    group, first = [], row
                group.append(line)
                row += 1
            if len(texts) >= c.batch_size:
                yield pa.table({c.text_field: texts, "_first_row": firsts, "_last_row": lasts})
                texts, firsts, lasts = [], [], []
        if group:
            close()
        if texts:
            yield pa.table({c.text_field: texts, "_first_row": firsts, "_last_row": lasts})
        prov.update(rows_read=row, blank_rows_not_documents=blank_rows)

    def _to_batch(self, t: pa.Table, row0: int, where: str) -> SourceBatch:
        c: HfConfig = self.config
        n = t.num_rows
        names = t.column_names
        if c.text_field not in names:
            raise ValueError(f"{where} [{c.split}]: no column {c.text_field!r} (columns: {names})")
        if "_first_row" in names:  # joined rows: name documents by their row span
            spans = list(zip(t.column("_first_row").to_pylist(), t.column("_last_row").to_pylist()))
            t = t.drop_columns(["_first_row", "_last_row"])
            names = t.column_names
            fallback = [f"{c.name}/{c.split}:{a}" for a, _ in spans]
            paths = [f"{where}[{c.split}]:{a}-{b}" for a, b in spans]
        else:
            fallback = [f"{c.name}/{c.split}:{r}" for r in range(row0, row0 + n)]
            paths = [f"{where}[{c.split}]:{r}" for r in range(row0, row0 + n)]
        ids = own_or_fallback_ids(t, c.id_field, fallback)
        text = t.column(c.text_field)
        if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
            raise ValueError(f"{where} [{c.split}]: column {c.text_field!r} has type {text.type}, not string")
        text = text.cast(pa.string())
        valid = pc.is_valid(text)
        table = docs_from_table(t, c, ids, text, paths)
        bad = [i for i, v in enumerate(valid.to_pylist()) if not v]
        rejected = rejected_table([ids[i] for i in bad], c.name, "ingest", "missing_text",
                                  [f"{where} [{c.split}] row {row0 + i}: column {c.text_field!r} is null" for i in bad],
                                  None)
        good = table.filter(valid).cast(DOC_SCHEMA)
        return SourceBatch(good, rejected, n, int(pc.sum(pc.binary_length(good.column("text"))).as_py() or 0))

    def _provenance(self, ds, where: str) -> dict:
        c: HfConfig = self.config
        entry = {"dataset": c.path, "config_name": c.config_name, "split": c.split, "revision": c.revision,
                 "path": where, "license": c.license, "streaming": c.streaming}
        info = getattr(ds, "info", None)
        if info is not None and getattr(info, "license", None):
            entry["dataset_license"] = info.license
        files = []
        for f in getattr(ds, "cache_files", None) or []:
            p = Path(f["filename"])
            if p.exists():
                files.append({"path": str(p), "size": p.stat().st_size})
        if files:
            entry["files"] = files
            entry["size"] = sum(f["size"] for f in files)
        fp = getattr(ds, "_fingerprint", None)
        if fp:
            entry["fingerprint"] = fp
        return entry
