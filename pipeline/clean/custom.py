"""A user's own clean filters: `clean.custom_filters` names Python callables `module:function`.

The function takes a `pyarrow.Table` of the documents the built-in chain kept in one shard
(CLEAN_SCHEMA: `id`, `text` as repaired, `source`, `license`, `kind`, `url`, `path`, `meta`,
`language`, `language_score`) and returns `(keep, reason)`: `keep` one boolean per row (Arrow
array, NumPy array or list; null keeps the row), `reason` one string for every rejected row or
one per row. The module is imported from the recipe's folder first, then from installed
packages; its file's sha256 joins the config, so editing the filter reruns the clean stage.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa


class CustomFilterError(ValueError):
    """A custom filter that cannot be loaded or returned something unusable; names the function and its file."""


def load_filter(function: str, folder: str | None) -> tuple[Callable, Path | None]:
    """The callable `module:function` (module from `folder` first, then installed) and its module's file."""
    module_name, _, attr = function.partition(":")
    try:
        module = _from_folder(module_name, Path(folder)) if folder else None
        if module is None:
            module = importlib.import_module(module_name)
    except ImportError as e:
        where = f"{folder} or installed packages" if folder else "installed packages"
        raise CustomFilterError(f"{function}: cannot import module {module_name!r} from {where}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while it was imported
        raise CustomFilterError(f"{function}: importing {module_name!r} raised {type(e).__name__}: {e}") from None
    file = Path(module.__file__) if getattr(module, "__file__", None) else None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise CustomFilterError(f"{file or module_name}: has no function {attr!r} (clean filter {function})")
    return fn, file


def _from_folder(module_name: str, folder: Path):
    """The module's file in `folder`, imported under a name of its own (path and content):
    two recipes with a my_filters.py each, or an edited one, never get a cached other copy."""
    rel = Path(*module_name.split("."))
    file = next((f for f in (folder / rel.with_suffix(".py"), folder / rel / "__init__.py") if f.is_file()), None)
    if file is None:
        return None
    unique = f"_opencorpus_filter_{hashlib.sha256(str(file.resolve()).encode() + file.read_bytes()).hexdigest()[:16]}"
    if unique in sys.modules:
        return sys.modules[unique]
    spec = importlib.util.spec_from_file_location(
        unique, file, submodule_search_locations=[str(file.parent)] if file.name == "__init__.py" else None)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))  # its own imports of modules beside it
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    sys.modules[unique] = module
    return module


def code_sha256(file: Path | None) -> str | None:
    return hashlib.sha256(file.read_bytes()).hexdigest() if file is not None and file.is_file() else None


def apply_filter(fn: Callable, label: str, table: pa.Table) -> tuple[np.ndarray, list[str | None]]:
    """(keep: bool per row, reason per row) from a filter's answer, checked."""
    try:
        answer = fn(table)
    except Exception as e:  # noqa: BLE001 - a failing user function is named, not a traceback in our code
        raise CustomFilterError(f"{label}: raised {type(e).__name__}: {e}") from e
    if not (isinstance(answer, tuple) and len(answer) == 2):
        raise CustomFilterError(f"{label}: returned {type(answer).__name__}; expected a tuple (keep mask, reason)")
    keep, reason = answer
    n = table.num_rows
    if isinstance(keep, (pa.Array, pa.ChunkedArray)):
        keep = keep.fill_null(True).to_numpy(zero_copy_only=False)
    keep = np.asarray(keep)
    if keep.shape != (n,) or keep.dtype != bool:
        raise CustomFilterError(f"{label}: keep mask has shape {keep.shape} and type {keep.dtype}; expected {n} booleans")
    if isinstance(reason, str):
        return keep, [reason] * n
    if isinstance(reason, (pa.Array, pa.ChunkedArray)):
        reason = reason.to_pylist()
    reason = list(reason) if reason is not None else []
    if len(reason) != n:
        raise CustomFilterError(f"{label}: {len(reason)} reasons for {n} rows; give one string or one per row")
    return keep, [None if r is None else str(r) for r in reason]
