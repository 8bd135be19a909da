"""Classification tasks: a YAML file says where the labelled texts are; this module reads them.

    name: pawsx-de
    source:
      format: tsv                 # jsonl | json | parquet | csv | tsv | text-files | hf
      path: ../../../shared/corpora/dedup/pawsx_de_dev.tsv    # relative to the task file
    columns: {text_a: sentence1, text_b: sentence2, label: label}
    split: {validation: 0.1, test: 0.2, seed: 0}
    finetune: {epochs: 3, batch_size: 32, lr: 3.0e-4, max_len: 128}

Sources: one file split by a seeded, stratified split (`path`), or given split files
(`splits: {train: a.jsonl, validation: b.jsonl, test: c.jsonl}`; a missing validation or
test split is carved out of train the same way), a `text-files` folder (one file per
class, one example per non-empty line, the label is the file name without `.txt`), or a
Hugging Face dataset (`hf`: a `save_to_disk` folder, or a hub name already in the local
cache; nothing is downloaded at run time). Texts are single (`text`) or pairs (`text_a`,
`text_b`); the defaults are those column names and `label`.

Labels are compared as strings (a TSV's "1" and a JSONL's 1 are one label). Every problem
(no label column, an empty text, a label in validation/test that training never shows)
is a TaskError naming the file and the record, raised before any training step.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from model.config import add_options, help_of

SPLITS = ("train", "validation", "test")


class TaskError(ValueError):
    """The task file or its data cannot be used; the message names the file and the record."""


class SourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["jsonl", "json", "parquet", "csv", "tsv", "text-files", "hf"] = Field(
        description="how the labelled examples are stored")
    path: str | None = Field(None, description="one file (split by `split:`), or the folder of a text-files source")
    splits: dict[str, str] | None = Field(
        None, description="split name (train, validation, test) -> file, or -> split name for an hf source")
    dataset: str | None = Field(None, description="hf: a save_to_disk folder, or a dataset name in the local cache")
    config: str | None = Field(None, description="hf: the dataset's configuration name")
    classes: list[str] | None = Field(None, description="text-files: the classes (file stems) to use; default all")
    max_per_class: int | None = Field(None, ge=1, description="text-files: first N non-empty lines of each file")

    @model_validator(mode="after")
    def _where(self):
        if self.format == "hf":
            if not self.dataset:
                raise ValueError("an hf source needs `dataset`")
        elif bool(self.path) == bool(self.splits):
            raise ValueError("give exactly one of `path` (one file or folder) and `splits` (a file per split)")
        if self.format == "text-files" and self.splits:
            raise ValueError("a text-files source is one folder: use `path`")
        for name in self.splits or {}:
            if name not in SPLITS:
                raise ValueError(f"unknown split {name!r}; splits are {SPLITS}")
        if self.splits and "train" not in self.splits:
            raise ValueError("`splits` must name a train split")
        return self


class ColumnsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description="column of a single text (default 'text')")
    text_a: str | None = Field(None, description="column of the first text of a pair")
    text_b: str | None = Field(None, description="column of the second text of a pair")
    label: str = Field("label", description="column of the label")
    id: str | None = Field(None, description="column naming each record in error messages (default: 'id' if present)")

    @model_validator(mode="after")
    def _shape(self):
        if self.text and (self.text_a or self.text_b):
            raise ValueError("give `text` for single texts or `text_a` and `text_b` for pairs, not both")
        if bool(self.text_a) != bool(self.text_b):
            raise ValueError("a pair task needs both `text_a` and `text_b`")
        return self


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    validation: float = Field(0.1, ge=0, lt=1, description="share of each class carved out for validation")
    test: float = Field(0.2, ge=0, lt=1, description="share of each class carved out for test")
    seed: int = Field(0, description="seeds the split (the same seed gives the same split)")


class FinetuneSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(3.0, gt=0, description="passes over the training split (sets max_steps)")
    # Options the trainer has too take its help (model/config.py); the defaults are fine-tuning's own.
    max_steps: int | None = Field(None, ge=1, description=help_of("max_steps") + "; overrides epochs")
    batch_size: int = Field(32, ge=1, description="examples per step")
    lr: float = Field(3e-4, gt=0, description=help_of("lr"))
    min_lr: float | None = Field(None, ge=0, description=help_of("min_lr") + " (default lr / 10)")
    warmup_fraction: float = Field(0.1, ge=0, lt=1, description="share of the steps spent warming up")
    weight_decay: float = Field(0.01, ge=0, description=help_of("weight_decay"))
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout before the classification head")
    max_len: int = Field(128, ge=4, description="tokens per example (pairs: both texts and separators); "
                                               "capped at the model's context")
    pooling: Literal["auto", "first", "mean", "last"] = Field(
        "auto", description="auto: mean for an encoder, last real token for a decoder")
    checkpoint_every: int = Field(200, ge=1, description=help_of("checkpoint_every"))
    eval_batch_size: int = Field(128, ge=1, description="examples per evaluation batch")


class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="task name, used in reports and the data card")
    description: str = Field("", description="one line on what the task measures")
    source: SourceConfig
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    labels: list[str] | None = Field(None, description="the label set, in order (default: sorted training labels)")
    split: SplitConfig = Field(default_factory=SplitConfig)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)
    base_dir: str = Field(".", description="folder relative paths are read from (set to the task file's folder)")

    @model_validator(mode="before")
    @classmethod
    def _labels_as_strings(cls, data):
        if isinstance(data, dict) and isinstance(data.get("labels"), list):
            data = {**data, "labels": [str(x) for x in data["labels"]]}
        return data

    def resolve(self, p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() else Path(self.base_dir) / path

    def fingerprint(self) -> str:
        """Hash of the settings that define the task's data and training (not where it was loaded from)."""
        d = self.model_dump(exclude={"base_dir", "description"})
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def load_task(path, **finetune_overrides) -> TaskConfig:
    """Read a task YAML; relative data paths are taken relative to the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"task file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise TaskError(f"task file {path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise TaskError(f"task file {path} must be a mapping with name, source, columns, ...")
    raw.setdefault("base_dir", str(path.resolve().parent))
    if finetune_overrides:
        raw["finetune"] = {**(raw.get("finetune") or {}),
                           **{k: v for k, v in finetune_overrides.items() if v is not None}}
    try:
        return TaskConfig.model_validate(raw)
    except ValidationError as e:
        raise TaskError(f"task file {path}: {e}") from e


# ---------------------------------------------------------------------------- examples
@dataclass
class Examples:
    """One split: texts (and second texts for pairs), string labels, record names for errors."""

    text_a: list[str]
    labels: list[str]
    ids: list[str]
    origin: list[str]  # the file each record came from
    text_b: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx) -> "Examples":
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return Examples(pick(self.text_a), pick(self.labels), pick(self.ids), pick(self.origin),
                        pick(self.text_b) if self.text_b is not None else None)

    @staticmethod
    def concat(parts: list["Examples"]) -> "Examples":
        pairs = parts[0].text_b is not None
        return Examples([t for p in parts for t in p.text_a], [x for p in parts for x in p.labels],
                        [x for p in parts for x in p.ids], [x for p in parts for x in p.origin],
                        [t for p in parts for t in p.text_b] if pairs else None)


@dataclass
class TaskData:
    task: TaskConfig
    splits: dict[str, Examples]
    label_names: list[str]
    pairs: bool
    split_origin: dict[str, str] = field(default_factory=dict)  # "given" or "carved from train (seed N)"

    def label_ids(self, split: str) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.label_names)}
        return np.array([index[x] for x in self.splits[split].labels], dtype=np.int64)

    def summary(self) -> dict:
        out = {}
        for name, ex in self.splits.items():
            counts = {lab: 0 for lab in self.label_names}
            for x in ex.labels:
                counts[x] += 1
            out[name] = {"examples": len(ex), "label_counts": counts, "origin": self.split_origin.get(name)}
        return out


def _read_table(path: Path, fmt: str) -> pa.Table:
    if not path.is_file():
        raise TaskError(f"data file {path} does not exist")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if fmt in ("csv", "tsv"):
            import pyarrow.csv as pacsv

            # TSV files (PAWS-X and most GLUE-style dumps) do not quote: a quote is text.
            parse = (pacsv.ParseOptions(delimiter="\t", quote_char=False) if fmt == "tsv"
                     else pacsv.ParseOptions(delimiter=","))
            return pacsv.read_csv(path, parse_options=parse,
                                  convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
        if fmt == "jsonl":
            rows = []
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as e:
                            raise TaskError(f"{path} line {n} is not valid JSON: {e}") from e
            return _rows_table(rows, path)
        if fmt == "json":
            rows = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(rows, dict) and "data" in rows:
                rows = rows["data"]
            if not isinstance(rows, list):
                raise TaskError(f"{path}: a json source must be a list of records (or {{'data': [...]}})")
            return _rows_table(rows, path)
    except TaskError:
        raise
    except Exception as e:  # pyarrow raises several types for malformed files
        raise TaskError(f"data file {path} cannot be read as {fmt}: {e}") from e
    raise TaskError(f"unknown format {fmt!r}")


def _rows_table(rows: list, path: Path) -> pa.Table:
    for n, r in enumerate(rows, 1):
        if not isinstance(r, dict):
            raise TaskError(f"{path} record {n} is not an object")
    cols = sorted({k for r in rows for k in r})
    return pa.table({c: [r.get(c) for r in rows] for c in cols})


def _column_names(task: TaskConfig, available: list[str], where: str) -> tuple[list[str], str, str | None]:
    c = task.columns
    if c.text:
        texts = [c.text]
    elif c.text_a:
        texts = [c.text_a, c.text_b]
    elif "text" in available:
        texts = ["text"]
    elif "text_a" in available and "text_b" in available:
        texts = ["text_a", "text_b"]
    else:
        raise TaskError(f"{where} has no text column: name it with columns.text (or text_a/text_b); "
                        f"columns are {available}")
    for name in texts:
        if name not in available:
            raise TaskError(f"{where} has no text column {name!r} (columns: {available})")
    if c.label not in available:
        raise TaskError(f"{where} has no label column {c.label!r} (columns: {available}); "
                        f"set columns.label in the task file")
    id_col = c.id or ("id" if "id" in available else None)
    if id_col and id_col not in available:
        raise TaskError(f"{where} has no id column {id_col!r} (columns: {available})")
    return texts, c.label, id_col


def _examples_from_table(task: TaskConfig, table: pa.Table, where: str) -> Examples:
    texts, label_col, id_col = _column_names(task, table.column_names, where)
    cols = [table.column(n).to_pylist() for n in texts]
    labels = table.column(label_col).to_pylist()
    ids = ([str(x) for x in table.column(id_col).to_pylist()] if id_col
           else [f"row {i + 1}" for i in range(table.num_rows)])
    for name, values in zip(texts, cols):
        for i, v in enumerate(values):
            if v is None or not str(v).strip():
                raise TaskError(f"{where} record {ids[i]!r}: empty text in column {name!r}")
    for i, v in enumerate(labels):
        if v is None or (isinstance(v, str) and not v.strip()):
            raise TaskError(f"{where} record {ids[i]!r}: no label in column {label_col!r}")
    labels = [str(v) for v in labels]
    origin = [where] * table.num_rows
    return Examples([str(v) for v in cols[0]], labels, ids, origin,
                    [str(v) for v in cols[1]] if len(cols) == 2 else None)


def _text_files(task: TaskConfig) -> Examples:
    folder = task.resolve(task.source.path)
    if not folder.is_dir():
        raise TaskError(f"text-files folder {folder} does not exist")
    wanted = task.source.classes or sorted(p.stem for p in folder.glob("*.txt"))
    if not wanted:
        raise TaskError(f"text-files folder {folder} holds no *.txt files")
    parts = []
    for cls in wanted:
        path = folder / f"{cls}.txt"
        if not path.is_file():
            raise TaskError(f"class {cls!r}: {path} does not exist")
        # One example per non-empty line (blank lines separate, they are not examples).
        lines = [(n, s.strip()) for n, s in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if s.strip()]
        if task.source.max_per_class:
            lines = lines[: task.source.max_per_class]
        if not lines:
            raise TaskError(f"class {cls!r}: {path} has no non-empty line")
        parts.append(Examples([s for _, s in lines], [cls] * len(lines), [f"{cls}:{n}" for n, _ in lines],
                              [str(path)] * len(lines)))
    return Examples.concat(parts)


def _hf_splits(task: TaskConfig) -> dict[str, tuple[pa.Table, str]]:
    src = task.source
    local = task.resolve(src.dataset)
    try:
        import datasets

        if local.exists():
            ds = datasets.load_from_disk(str(local))
        else:
            ds = datasets.load_dataset(src.dataset, src.config)
    except Exception as e:
        raise TaskError(f"hf dataset {src.dataset!r} cannot be loaded (only a save_to_disk folder or a dataset "
                        f"already in the local cache works offline): {e}") from e
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    names = src.splits or {s: s for s in SPLITS if s in ds}
    if "train" not in names:
        raise TaskError(f"hf dataset {src.dataset!r} has no train split (splits: {list(ds)}); map one with `splits`")
    out = {}
    for ours, theirs in names.items():
        if theirs not in ds:
            raise TaskError(f"hf dataset {src.dataset!r} has no split {theirs!r} (splits: {list(ds)})")
        out[ours] = (ds[theirs].data.table, f"{src.dataset}[{theirs}]")
    return out


def stratified_split(labels: list[str], fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Indices per split: within every class, a seeded permutation cut by the fractions
    (so every class keeps its share in every split and at least one training example)."""
    rng = np.random.default_rng(seed)
    arr = np.array(labels, dtype=object)
    out = {name: [] for name in ("train", *fractions)}
    for lab in sorted(set(labels)):
        idx = np.flatnonzero(arr == lab)
        idx = idx[rng.permutation(idx.size)]
        start = 0
        for name, frac in fractions.items():
            n = int(round(frac * idx.size))
            n = min(n, idx.size - start - 1)  # leave at least one for training
            out[name].append(idx[start: start + max(0, n)])
            start += max(0, n)
        out["train"].append(idx[start:])
    return {k: np.sort(np.concatenate(v)) if v else np.zeros(0, dtype=np.int64) for k, v in out.items()}


def _sort_labels(labels) -> list[str]:
    labels = sorted(set(labels))
    try:
        return sorted(labels, key=float)  # "2" before "10"
    except ValueError:
        return labels


def load_task_data(task: TaskConfig) -> TaskData:
    """Read, validate and split the task's examples (every check happens here, before training)."""
    src = task.source
    given: dict[str, Examples] = {}
    if src.format == "text-files":
        given["train"] = _text_files(task)
    elif src.format == "hf":
        for name, (table, where) in _hf_splits(task).items():
            given[name] = _examples_from_table(task, table, where)
    elif src.path:
        path = task.resolve(src.path)
        given["train"] = _examples_from_table(task, _read_table(path, src.format), str(path))
    else:
        for name, p in src.splits.items():
            path = task.resolve(p)
            given[name] = _examples_from_table(task, _read_table(path, src.format), str(path))
    pairs = given["train"].text_b is not None

    splits, origin = dict(given), {name: "given" for name in given}
    carve = {name: getattr(task.split, name) for name in ("validation", "test") if name not in given}
    if carve:
        parts = stratified_split(given["train"].labels, carve, task.split.seed)
        for name, idx in parts.items():
            splits[name] = given["train"].take(idx)
            if name == "train":
                origin[name] = "given" if len(given) > 1 else "the source, less the carved splits"
            else:
                origin[name] = f"carved from train ({carve[name]:.0%} of each class, seed {task.split.seed})"
    for name in SPLITS:
        if name not in splits or len(splits[name]) == 0:
            raise TaskError(f"task {task.name!r}: the {name} split is empty (set split.{name} > 0 or give a file)")

    train_labels = set(splits["train"].labels)
    if task.labels:
        extra = sorted(train_labels - set(task.labels))
        if extra:
            i = next(k for k, x in enumerate(splits["train"].labels) if x in extra)
            ex = splits["train"]
            raise TaskError(f"{ex.origin[i]} record {ex.ids[i]!r}: label {ex.labels[i]!r} is not in the task's "
                            f"labels {task.labels}")
        names = list(task.labels)
    else:
        names = _sort_labels(train_labels)
    if len(names) < 2:
        raise TaskError(f"task {task.name!r}: the training split has a single label {names}; nothing to classify")
    for split in ("validation", "test"):
        ex = splits[split]
        for i, lab in enumerate(ex.labels):
            if lab not in train_labels:
                raise TaskError(f"{ex.origin[i]} record {ex.ids[i]!r}: label {lab!r} in the {split} split never "
                                f"occurs in the training split (training labels: {sorted(train_labels)})")
    return TaskData(task=task, splits=splits, label_names=names, pairs=pairs, split_origin=origin)


# ---------------------------------------------------------------------------- CLI flags
# FinetuneSettings fields that are trainer options too, and the trainer flags `opencorpus finetune` takes.
SHARED_SETTINGS = ("max_steps", "batch_size", "lr", "min_lr", "weight_decay", "checkpoint_every", "eval_batch_size")
TRAINER_FLAGS = SHARED_SETTINGS + ("device", "progress")

def add_finetune_arguments(p):
    """`opencorpus finetune` flags (here, not in model/finetune.py, so the CLI parser needs no torch)."""
    p.add_argument("run_dir", help="a pretrained run folder (opencorpus train --out)")
    p.add_argument("--task", required=True, help="task YAML (see recipes/tasks/)")
    p.add_argument("--out", required=True, help="fine-tuning folder; an existing one is resumed")
    p.add_argument("--from-scratch", action="store_true",
                   help="also train the same architecture from random weights and report the difference")
    p.add_argument("--seed", type=int, default=0, help="head init, data order and dropout (default 0)")
    p.add_argument("--data", help="the run's corpus folder, if it moved")
    p.add_argument("--epochs", type=float, help=FinetuneSettings.model_fields["epochs"].description)
    # the trainer's own flags (model/config.py), with fine-tuning's defaults shown
    add_options(p, TRAINER_FLAGS, defaults={k: FinetuneSettings.model_fields[k].default for k in SHARED_SETTINGS})
