"""`python-env`: the open text every Python installation carries, as a corpus.

One document per file of the chosen distributions: the package long description from the
metadata, README/docs files (`.md`, `.rst`, `.txt`), license files, and `.py` sources;
optionally the standard library's modules. Each document records its distribution name
and version, file path, kind (`prose` or `code`) and license (an SPDX expression derived
from the distribution metadata where possible, else the metadata's own words).

This corpus has real duplicates: pip and setuptools vendor copies of other packages
(rich, pygments, packaging, ...), and many distributions ship the same license text.
Documents are read in a sorted, deterministic order; the set depends on what is installed,
which the data card records (distribution versions).
"""
from __future__ import annotations

import fnmatch
import importlib.metadata as md
import re
import sys
import sysconfig
from pathlib import Path
from typing import Iterator, Literal

from pydantic import Field

from pipeline.sources import register
from pipeline.sources.base import BatchBuilder, Source, SourceBatch, SourceConfig

STDLIB = "python-stdlib"
_PROSE_EXT = {".md", ".rst", ".txt"}
_LICENSE_NAME = re.compile(r"^(LICEN[CS]E|COPYING|NOTICE|AUTHORS)", re.I)

# Trove classifiers and free-text License fields -> SPDX identifiers.
_CLASSIFIER_SPDX = {
    "MIT License": "MIT",
    "Apache Software License": "Apache-2.0",
    "BSD License": "BSD-3-Clause",
    "Python Software Foundation License": "PSF-2.0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "ISC License (ISCL)": "ISC",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "The Unlicense (Unlicense)": "Unlicense",
    "Zope Public License": "ZPL-2.1",
    "Historical Permission Notice and Disclaimer (HPND)": "HPND",
}
_TEXT_SPDX = [
    (re.compile(r"^\s*(the\s+)?mit(\s+license)?\s*$|permission is hereby granted, free of charge", re.I), "MIT"),
    (re.compile(r"^\s*apache(\s+license)?[\s,-]*(version\s*)?2(\.0)?\s*$|^\s*apache\s+software\s+license|apache license,?\s+version 2\.0", re.I), "Apache-2.0"),
    (re.compile(r"^\s*(new |modified |revised )?bsd([\s-]*3[\s-]*clause)?(\s+license)?\s*$|redistribution and use in source and binary forms", re.I), "BSD-3-Clause"),
    (re.compile(r"^\s*bsd[\s-]*2[\s-]*clause", re.I), "BSD-2-Clause"),
    (re.compile(r"^\s*(psf|python software foundation)", re.I), "PSF-2.0"),
    (re.compile(r"^\s*isc(\s+license)?\s*$", re.I), "ISC"),
    (re.compile(r"^\s*mpl[\s-]*2(\.0)?\s*$|mozilla public license,? v(ersion)?\.? ?2", re.I), "MPL-2.0"),
]
_SPDX_ID = re.compile(r"^[A-Za-z0-9.+-]+( (AND|OR|WITH) [A-Za-z0-9.+-]+)*$")


def spdx_license(meta) -> str | None:
    """Best SPDX expression for a distribution's metadata, or its own short words, or None."""
    expr = meta.get("License-Expression")
    if expr:
        return expr.strip()
    text = (meta.get("License") or "").strip()
    if text and text.upper() not in {"UNKNOWN", "NONE"}:
        for pattern, spdx in _TEXT_SPDX:
            if pattern.search(text[:2000]):
                return spdx
        first = text.splitlines()[0].strip()
        if _SPDX_ID.match(first) and len(first) < 60:
            return first
    found = []
    for c in meta.get_all("Classifier") or []:
        if c.startswith("License ::"):
            spdx = _CLASSIFIER_SPDX.get(c.split(" :: ")[-1])
            if spdx and spdx not in found:
                found.append(spdx)
    if found:
        return " OR ".join(found)
    if text:
        return text.splitlines()[0][:80]
    return None


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class PythonEnvConfig(SourceConfig):
    packages: list[str] | None = Field(
        None, description="distribution names to include (PEP 503-normalized match); null means every installed distribution"
    )
    stdlib: bool = Field(True, description=f"include the standard library as distribution {STDLIB!r}")
    stdlib_modules: list[str] | None = Field(
        None, description="top-level stdlib modules/packages to include (default: all but tests, idlelib, tkinter, ...)"
    )
    include: list[Literal["description", "docs", "license", "code"]] = Field(
        ["description", "docs", "license", "code"], description="which kinds of files become documents"
    )
    exclude: list[str] = Field(
        ["*/tests/*", "*/test/*", "*/testing/*"], description="fnmatch globs on the file path within the distribution"
    )
    max_file_bytes: int = Field(1_000_000, gt=0, description="files larger than this are rejected with a reason (generated tables)")
    max_docs_per_package: int | None = Field(None, gt=0, description="cap per distribution, taken in sorted path order")


_STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "site-packages", "config-3", "__pycache__",
                "pydoc_data", "lib-dynload"}


@register
class PythonEnvSource(Source):
    type = "python-env"
    Config = PythonEnvConfig

    def _distributions(self) -> list[md.Distribution]:
        c: PythonEnvConfig = self.config
        by_name: dict[str, md.Distribution] = {}
        for dist in md.distributions():
            name = dist.metadata.get("Name")
            if name and _normalize(name) not in by_name:
                by_name[_normalize(name)] = dist
        if c.packages is None:
            return [by_name[k] for k in sorted(by_name)]
        missing = [p for p in c.packages if _normalize(p) not in by_name]
        if missing:
            raise ValueError(f"source {c.name!r}: packages not installed in {sys.prefix}: {missing}")
        return [by_name[_normalize(p)] for p in c.packages]

    def _dist_files(self, dist: md.Distribution) -> list[tuple[str, Path, str]]:
        """(relative path, absolute path, kind) for the files of `dist` we read, sorted."""
        c = self.config
        out = []
        for f in dist.files or []:
            rel = str(f)
            if rel.endswith(".pyc") or "__pycache__" in rel or rel.startswith(".."):
                continue
            if any(fnmatch.fnmatch("/" + rel, pat) for pat in c.exclude):
                continue
            p = Path(rel)
            in_info = p.parts[0].endswith((".dist-info", ".egg-info"))
            if in_info:
                if "license" in c.include and (_LICENSE_NAME.match(p.name) or "licenses" in p.parts):
                    out.append((rel, Path(dist.locate_file(f)), "license"))
                continue
            if p.suffix == ".py" and "code" in c.include:
                out.append((rel, Path(dist.locate_file(f)), "code"))
            elif "docs" in c.include and (p.suffix.lower() in _PROSE_EXT or p.name.upper().startswith("README")):
                kind = "license" if _LICENSE_NAME.match(p.name) else "docs"
                if kind in c.include:
                    out.append((rel, Path(dist.locate_file(f)), kind))
        return sorted(out)

    def _stdlib_files(self) -> list[tuple[str, Path, str]]:
        c = self.config
        root = Path(sysconfig.get_paths()["stdlib"])
        wanted = set(c.stdlib_modules) if c.stdlib_modules is not None else None
        out = []
        for p in sorted(root.rglob("*.py")):
            rel = p.relative_to(root)
            top = rel.parts[0].removesuffix(".py")
            if wanted is not None and top not in wanted:
                continue
            if wanted is None and (top in _STDLIB_SKIP or top.startswith("config-")):
                continue
            if "site-packages" in rel.parts or "__pycache__" in rel.parts:
                continue
            if any(fnmatch.fnmatch("/" + str(rel), pat) for pat in c.exclude):
                continue
            if "code" in c.include:
                out.append((str(rel), p, "code"))
        return out

    def read(self) -> Iterator[SourceBatch]:
        c: PythonEnvConfig = self.config
        b = BatchBuilder(c.name, c.license)
        total = 0
        groups: list[tuple[str, str, str | None, str | None, list]] = []
        if c.stdlib:
            groups.append((STDLIB, sys.version.split()[0], "PSF-2.0", None, self._stdlib_files()))
        for dist in self._distributions():
            meta = dist.metadata
            desc = None
            if "description" in c.include:
                desc = meta.get_payload() or meta.get("Description")
            groups.append((meta["Name"], meta["Version"], spdx_license(meta), desc, self._dist_files(dist)))

        for dist_name, version, lic, description, files in groups:
            lic = c.license or lic
            per_pkg = 0
            info = {"distribution": dist_name, "version": version}
            if description and description.strip():
                doc_id = f"{c.name}/{dist_name}/METADATA:description"
                b.add(doc_id, description, kind="prose", license=lic, path=f"{dist_name}-{version}/METADATA",
                      meta={**info, "file_kind": "description"})
                b.bytes_read += len(description.encode())
                per_pkg += 1
                total += 1
            for rel, path, kind in files:
                if c.max_docs and total >= c.max_docs:
                    break
                if c.max_docs_per_package and per_pkg >= c.max_docs_per_package:
                    break
                doc_id = f"{c.name}/{dist_name}/{rel}"
                total += 1
                per_pkg += 1
                try:
                    raw = path.read_bytes()
                except OSError as e:
                    b.reject(doc_id, "unreadable", f"{path}: cannot read: {e}")
                    continue
                b.bytes_read += len(raw)
                if len(raw) > c.max_file_bytes:
                    b.reject(doc_id, "file_too_large", f"{path}: {len(raw)} bytes > max_file_bytes {c.max_file_bytes}",
                             raw[:10000].decode("utf-8", "replace"))
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    b.reject(doc_id, "invalid_utf8", f"{path}: invalid UTF-8 at byte {e.start}", raw.decode("utf-8", "replace"))
                    continue
                b.add(doc_id, text, kind="code" if kind == "code" else "prose", license=lic, path=str(path),
                      meta={**info, "file": rel, "file_kind": kind})
                if b.full():
                    yield b.flush()
            self.provenance.append({"distribution": dist_name, "version": version, "license": lic, "files": len(files)})
            if c.max_docs and total >= c.max_docs:
                break
        yield b.flush()
