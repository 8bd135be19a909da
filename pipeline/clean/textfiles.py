"""Texts from files, for evaluation sets (decontamination) and scorer training examples.

    read_texts("evals/*.jsonl", fields=["question", "answer"]) -> [(origin, text), ...]

A path may be a file, a glob or a folder (every readable file below it, sorted). By suffix:
- `.txt`, `.md` (and `.gz` of them): one text per paragraph (blank-line separated);
- `.jsonl`, `.ndjson`, `.json` (a list of records, or `{"data": [...]}`), gzip allowed;
- `.parquet`, `.arrow` (a `datasets` save_to_disk shard), `.csv`, `.tsv`;
- `.yaml`/`.yml`: a task file of `opencorpus finetune` (every split's texts).
In records, `fields` names the text fields; by default every string field (and every list of
strings, e.g. multiple-choice options) is taken, each as its own text. Unreadable files are
errors naming the file; a path that matches nothing is a FileNotFoundError.
"""
from __future__ import annotations

import glob
import gzip
import io
import json
import re
from pathlib import Path

import pyarrow as pa

SUFFIXES = (".txt", ".md", ".jsonl", ".ndjson", ".json", ".parquet", ".arrow", ".csv", ".tsv", ".yaml", ".yml")
_PARAGRAPH = re.compile(r"\n\s*\n")


class TextFileError(ValueError):
    """A file that cannot be read as texts; names the file."""


def _base_suffix(p: Path) -> str:
    name = p.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).suffix


def expand(path: str, what: str = "path") -> list[Path]:
    """The files a path, glob or folder names (sorted); FileNotFoundError when none."""
    p = Path(path).expanduser()
    if any(c in str(path) for c in "*?["):
        files = sorted(Path(x) for x in glob.glob(str(p), recursive=True) if Path(x).is_file())
    elif p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and _base_suffix(f) in SUFFIXES
                       and not any(part.startswith(".") for part in f.relative_to(p).parts))
    elif p.is_file():
        files = [p]
    else:
        raise FileNotFoundError(f"{what}: no such file or folder {path}")
    if not files:
        raise FileNotFoundError(f"{what}: {path} matches no readable file ({', '.join(SUFFIXES)})")
    return files


def _open_text(p: Path) -> str:
    data = p.read_bytes()
    if p.name.lower().endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def _strings(value, out: list[str]) -> None:
    if isinstance(value, str):
        if value.strip():
            out.append(value)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, str) and v.strip():
                out.append(v)


def _from_records(rows, fields: list[str] | None, p: Path) -> list[str]:
    out: list[str] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            _strings(row, out)
            continue
        if fields:
            missing = [f for f in fields if f not in row]
            if len(missing) == len(fields):
                raise TextFileError(f"{p}: record {i} has none of the fields {fields} (it has {sorted(row)[:10]})")
            for f in fields:
                _strings(row.get(f), out)
        else:
            for v in row.values():
                _strings(v, out)
    return out


def _from_table(t: pa.Table, fields: list[str] | None, p: Path) -> list[str]:
    if fields:
        missing = [f for f in fields if f not in t.column_names]
        if missing:
            raise TextFileError(f"{p}: no column(s) {missing} (columns: {t.column_names})")
        t = t.select(fields)
    else:
        keep = [n for n, typ in zip(t.column_names, t.schema.types)
                if pa.types.is_string(typ) or pa.types.is_large_string(typ)
                or (pa.types.is_list(typ) and pa.types.is_string(typ.value_type))]
        t = t.select(keep)
    return _from_records(t.to_pylist(), None, p)


def _task_texts(p: Path) -> list[str]:
    from model.tasks import TaskError, load_task, load_task_data  # the fine-tuning task format

    try:
        data = load_task_data(load_task(p))
    except TaskError as e:
        raise TextFileError(f"{p}: {e}") from None
    out: list[str] = []
    for ex in data.splits.values():
        out += [t for t in ex.text_a if t]
        out += [t for t in (ex.text_b or []) if t]
    return out


def read_file(p: Path, fields: list[str] | None = None) -> list[str]:
    suffix = _base_suffix(p)
    try:
        if suffix in (".txt", ".md", ""):
            return [t for t in _PARAGRAPH.split(_open_text(p)) if t.strip()]
        if suffix in (".jsonl", ".ndjson"):
            rows = []
            for n, line in enumerate(_open_text(p).splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise TextFileError(f"{p} line {n} is not valid JSON: {e}") from None
            return _from_records(rows, fields, p)
        if suffix == ".json":
            rows = json.loads(_open_text(p))
            if isinstance(rows, dict):
                rows = rows.get("data", rows.get("examples", [rows]))
            return _from_records(rows if isinstance(rows, list) else [rows], fields, p)
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return _from_table(pq.read_table(p), fields, p)
        if suffix == ".arrow":
            with pa.memory_map(str(p)) as src:
                try:
                    t = pa.ipc.open_stream(src).read_all()
                except pa.ArrowInvalid:
                    t = pa.ipc.open_file(src).read_all()
            return _from_table(t, fields, p)
        if suffix in (".csv", ".tsv"):
            import pyarrow.csv as pacsv

            parse = (pacsv.ParseOptions(delimiter="\t", quote_char=False) if suffix == ".tsv"
                     else pacsv.ParseOptions(delimiter=","))
            t = pacsv.read_csv(io.BytesIO(_open_text(p).encode()), parse_options=parse,
                               convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
            return _from_table(t, fields, p)
        if suffix in (".yaml", ".yml"):
            return _task_texts(p)
    except (TextFileError, FileNotFoundError):
        raise
    except Exception as e:  # noqa: BLE001 - pyarrow/json raise many types for malformed files
        raise TextFileError(f"{p}: cannot be read as {suffix or 'text'}: {e}") from None
    raise TextFileError(f"{p}: unknown file type {suffix!r} (use one of {', '.join(SUFFIXES)})")


def read_texts(path: str, fields: list[str] | None = None, what: str = "path") -> list[tuple[str, str]]:
    """[(file, text)] of every text a path, glob or folder holds."""
    out = []
    for f in expand(path, what):
        out += [(str(f), t) for t in read_file(f, fields)]
    return out
