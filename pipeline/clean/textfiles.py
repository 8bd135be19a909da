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
    """Every text of a task file of `opencorpus finetune` (model/tasks.py's format, read here
    without importing model/): the text columns of its data files, all splits."""
    import yaml

    try:
        task = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise TextFileError(f"{p}: not valid YAML: {e}") from None
    src = task.get("source") if isinstance(task, dict) else None
    if not isinstance(src, dict) or "format" not in src:
        raise TextFileError(f"{p}: not a task file (no `source:` with a `format`)")
    cols = task.get("columns") or {}
    fields = [cols.get(k, k) for k in ("text", "text_a", "text_b")]
    fmt = src["format"]
    base = p.parent
    files = [base / src["path"]] if src.get("path") else [base / f for f in (src.get("splits") or {}).values()]
    if fmt == "hf":
        where = src.get("dataset")
        files = sorted((base / where).rglob("*.arrow")) if where and (base / where).is_dir() else []
        if not files:
            raise TextFileError(f"{p}: an hf task is read from a save_to_disk folder (`dataset:`); {where} has no .arrow files")
    out: list[str] = []
    for f in files:
        if not f.exists():
            raise FileNotFoundError(f"{p}: data file {f} does not exist")
        if fmt == "text-files":
            for txt in sorted(f.glob("*.txt")) if f.is_dir() else [f]:
                out += [line for line in txt.read_text(encoding="utf-8").splitlines() if line.strip()]
            continue
        if fmt == "hf":
            t = _read_arrow(f)
        else:
            suffix = {"jsonl": ".jsonl", "json": ".json", "parquet": ".parquet", "csv": ".csv", "tsv": ".tsv"}.get(fmt)
            if suffix is None:
                raise TextFileError(f"{p}: unknown task source format {fmt!r}")
            out += read_file(f, None, suffix_as=suffix, fields_present=fields)
            continue
        out += _from_table(t, [c for c in fields if c in t.column_names] or None, f)
    return out


def _read_arrow(p: Path) -> pa.Table:
    with pa.memory_map(str(p)) as src:
        try:
            return pa.ipc.open_stream(src).read_all()
        except pa.ArrowInvalid:
            return pa.ipc.open_file(src).read_all()


def read_file(p: Path, fields: list[str] | None = None, suffix_as: str | None = None,
              fields_present: list[str] | None = None) -> list[str]:
    """The texts of one file. `fields_present`: take those of these fields a record has."""
    suffix = suffix_as or _base_suffix(p)
    if fields_present:
        fields = _present(p, suffix, fields_present)
    try:
        if suffix in (".txt", ".md", ""):
            return [t for t in _PARAGRAPH.split(_open_text(p)) if t.strip()]
        if suffix in (".jsonl", ".ndjson"):
            rows = []
            for n, line in enumerate(_open_text(p).split("\n"), 1):
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
            return _from_table(_read_arrow(p), fields, p)
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


def _present(p: Path, suffix: str, wanted: list[str]) -> list[str] | None:
    """Those of `wanted` the file's records (its header, or first record) have."""
    try:
        if suffix in (".csv", ".tsv"):
            first = _open_text(p).split("\n", 1)[0]
            names = first.split("\t" if suffix == ".tsv" else ",")
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            names = pq.read_schema(p).names
        elif suffix in (".jsonl", ".ndjson"):
            line = next((x for x in _open_text(p).split("\n") if x.strip()), "{}")
            names = list(json.loads(line))
        else:
            rows = json.loads(_open_text(p))
            rows = rows.get("data", rows) if isinstance(rows, dict) else rows
            names = list(rows[0]) if isinstance(rows, list) and rows and isinstance(rows[0], dict) else []
    except (ValueError, OSError):
        return None
    got = [f for f in wanted if f in [n.strip() for n in names]]
    return got or None


def read_texts(path: str, fields: list[str] | None = None, what: str = "path") -> list[tuple[str, str]]:
    """[(file, text)] of every text a path, glob or folder holds."""
    out = []
    for f in expand(path, what):
        out += [(str(f), t) for t in read_file(f, fields)]
    return out
