"""Recipes: one YAML file that says what goes into a corpus and how each stage treats it.

Relative paths inside a recipe resolve against the recipe file's folder, so a recipe
means the same thing whatever folder it is run from. That happens here and nowhere else:
`parse_recipe` returns the recipe with every field declared with `pipeline.records.recipe_path`
made absolute, so stages, cache keys and the card all see the same file. The recipe as
written (relative paths kept) is what its hash and the manifest record, so a corpus
folder and its recipe can move together. Validation errors name the file and the field
(for example `recipe.yaml: sources[1].type: unknown source type 'foo'`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SerializeAsAny, ValidationError, field_validator

from pipeline.clean.config import CleanConfig
from pipeline.dedup.config import DedupConfig
from pipeline.records import format_errors, resolve_paths
from pipeline.sources import SourceConfig, source_class
from pipeline.tokenize.config import TokenizeConfig


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the field."""


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shard_docs: int = Field(5000, ge=1, description="documents per shard in documents/ (and so in clean/, dedup/)")


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    sources: list[SerializeAsAny[SourceConfig]] = Field(min_length=1)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    # Defaults for `opencorpus train --recipe`: `preset` and any model/config.py TrainConfig field,
    # checked by model.config.make_config (pipeline/ does not import model/).
    train: dict[str, Any] = Field(default_factory=dict)

    # Where relative paths resolved; set by parse_recipe, not part of the YAML.
    base_dir: Path = Field(default=Path("."), exclude=True)
    _as_written: dict | None = PrivateAttr(default=None)

    @field_validator("sources", mode="before")
    @classmethod
    def _typed_sources(cls, value):
        if not isinstance(value, list):
            return value
        typed = []
        for i, entry in enumerate(value):
            if not isinstance(entry, dict):
                raise ValueError(f"sources[{i}] must be a mapping, got {type(entry).__name__}")
            if "type" not in entry:
                raise ValueError(f"sources[{i}]: missing field 'type'")
            try:
                config_cls = source_class(entry["type"]).Config
            except KeyError as e:
                raise ValueError(f"sources[{i}].type: {e.args[0]}") from None
            try:
                typed.append(config_cls.model_validate(entry))
            except ValidationError as e:
                raise ValueError(f"sources[{i}] ({entry.get('name', '?')}): {format_errors(e)}") from None
        names = [s.name for s in typed]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}")
        return typed

    def as_written(self) -> dict:
        """The recipe with its paths as the YAML wrote them (what the manifest records)."""
        return self._as_written if self._as_written is not None else self.model_dump(mode="json")

    def hash(self) -> str:
        """sha256 of the recipe's canonical JSON as written: equal recipes give equal hashes."""
        return hashlib.sha256(json.dumps(self.as_written(), sort_keys=True).encode()).hexdigest()

    def source_objects(self, work_dir: Path):
        return [source_class(s.type)(s, self.base_dir, work_dir) for s in self.sources]


def parse_recipe(data: dict, base_dir: Path, origin: str = "<recipe>") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{origin}: a recipe must be a YAML mapping")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(f"{origin}: {format_errors(e)}") from None
    base_dir = Path(base_dir).resolve()
    written = recipe.model_dump(mode="json")
    recipe = resolve_paths(recipe, base_dir)
    recipe.base_dir = base_dir
    recipe._as_written = written
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: invalid YAML: {e}") from None
    return parse_recipe(data, path.parent, str(path))
