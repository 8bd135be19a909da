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
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SerializeAsAny, ValidationError, field_validator, model_validator

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
    rejected_text: Literal["full", "excerpt"] = Field(
        "excerpt", description="text kept in rejected/ for records rejected as malformed input (invalid JSON or "
        "UTF-8, ...): their first `rejected_excerpt_chars` characters, or all of it")
    rejected_excerpt_chars: int = Field(500, ge=0, description="characters kept by `rejected_text: excerpt`")


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    allow_private_networks: bool = Field(
        False, description="let every network source fetch from loopback, private and link-local addresses")
    sources: list[SerializeAsAny[SourceConfig]] = Field(min_length=1)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    # Defaults for `opencorpus train --recipe`: `preset` and any model/config.py TrainConfig field,
    # checked by model.config.make_config (pipeline/ does not import model/).
    train: dict[str, Any] = Field(default_factory=dict)
    # Source weights of the training stream (`opencorpus train --recipe` passes them as `mix`):
    # above 1 repeats a source's documents, below 1 samples them, 0 leaves the source out. Only
    # training reads it, so changing it rebuilds nothing of the corpus.
    mix: dict[str, float] = Field(default_factory=dict)

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

    @field_validator("name")
    @classmethod
    def _not_a_folder_step(cls, value: str) -> str:
        if value in (".", ".."):
            raise ValueError(f"{value!r} is not a corpus name (it names a folder step, and data/<name> is written)")
        return value

    @model_validator(mode="after")
    def _mix_names_sources(self):
        unknown = sorted(set(self.mix) - {s.name for s in self.sources})
        if unknown:
            raise ValueError(f"mix: {unknown} are not sources of this recipe ({[s.name for s in self.sources]})")
        negative = {k: v for k, v in self.mix.items() if not v >= 0}
        if negative:
            raise ValueError(f"mix: weights must be >= 0, got {negative}")
        return self

    @model_validator(mode="after")
    def _private_networks(self):
        if self.allow_private_networks:
            for s in self.sources:
                if "allow_private_networks" in type(s).model_fields:
                    s.allow_private_networks = True
        return self

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
    _load_custom_filters(recipe, origin)
    _check_clean_inputs(recipe, origin)
    return recipe


def _check_clean_inputs(recipe: Recipe, origin: str) -> None:
    """Open the clean stage's files now: a missing or damaged quality model, a missing or empty
    evaluation set or block list is an error naming the recipe before any stage runs. The
    files' hashes join the config (so the clean stage's cache key)."""
    c = recipe.clean
    try:
        if c.urls.active:
            from pipeline.clean.urls import UrlFilter

            domains, urls = c.urls.files()
            UrlFilter(domains, urls, c.urls.bad_words_path)
        if c.quality is not None:
            from pipeline.clean.quality import QualityModel

            c.quality.model_sha256 = QualityModel.load(c.quality.model).sha256
        if c.decontaminate is not None:
            from pipeline.clean.decontam import build_index, files_sha256

            entries = c.decontaminate.entries()
            build_index(entries, c.decontaminate.ngram)
            c.decontaminate.files_sha256 = files_sha256(entries)
    except (ValueError, OSError) as e:
        raise RecipeError(f"{origin}: clean: {e}") from None


def _load_custom_filters(recipe: Recipe, origin: str) -> None:
    """Import each custom clean filter now (a bad one fails before any stage runs) and pin
    its code in the config (so in the clean stage's cache key)."""
    from pipeline.clean.custom import CustomFilterError, code_sha256, load_filter

    for i, cf in enumerate(recipe.clean.custom_filters):
        try:
            _, file = load_filter(cf.function, cf.folder)
        except CustomFilterError as e:
            raise RecipeError(f"{origin}: clean.custom_filters[{i}]: {e}") from None
        cf.code_sha256 = code_sha256(file)


RECIPE_FILE = "recipe.yaml"  # what a folder given as the recipe holds
# Set (to 1) to fetch a recipe URL from a loopback or private address (`opencorpus run --allow-private-networks`).
ALLOW_PRIVATE_ENV = "OPENCORPUS_ALLOW_PRIVATE_NETWORKS"


def is_recipe_url(path: str | Path) -> bool:
    return isinstance(path, str) and path.startswith(("http://", "https://"))


def recipe_file(path: str | Path) -> Path:
    """The recipe file `path` names: the file itself, or a folder's recipe.yaml."""
    path = Path(path)
    if path.is_dir():
        if not (path / RECIPE_FILE).is_file():
            raise RecipeError(f"{path}: a folder without a {RECIPE_FILE}; give the recipe file")
        return path / RECIPE_FILE
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    return path


def load_recipe(path: str | Path) -> Recipe:
    """A recipe from a YAML file, a folder holding recipe.yaml, or an http(s) URL (fetched
    with the downloader's retries and address checks; its relative paths resolve against
    the current folder)."""
    if is_recipe_url(path):
        import os

        from pipeline.download import BlockedAddressError, DownloadError, fetch_text

        try:
            text = fetch_text(path, allow_private_networks=os.environ.get(ALLOW_PRIVATE_ENV) == "1").decode("utf-8")
        except BlockedAddressError:
            raise RecipeError(f"{path}: refused: its host is a loopback or private address; "
                              "`opencorpus run --allow-private-networks` fetches it") from None
        except (DownloadError, UnicodeDecodeError) as e:
            raise RecipeError(f"{path}: recipe not fetched: {str(e).removeprefix(f'{path}: ')}") from None
        return _parse_yaml(text, Path.cwd(), path)
    path = recipe_file(path)
    return _parse_yaml(path.read_text(encoding="utf-8"), path.parent, str(path))


def _parse_yaml(text: str, base_dir: Path, origin: str) -> Recipe:
    try:
        data = yaml.load(text, Loader=_BoundedLoader)
    except _TooManyAliases as e:
        raise RecipeError(f"{origin}: {e}") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{origin}: invalid YAML: {e}") from None
    return parse_recipe(data, base_dir, origin)


MAX_YAML_ALIASES = 1000  # a recipe has little use for aliases; an alias bomb needs few, nested
MAX_YAML_NODES = 1_000_000  # values in the recipe once every alias is expanded


class _TooManyAliases(ValueError):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a document with more than MAX_YAML_ALIASES alias uses
    (`*name`) or more than MAX_YAML_NODES values once its aliases are expanded, before
    anything is built: a few nested aliases ("billion laughs") stand for billions of values,
    which validation, hashing or the trainer would then expand into gigabytes."""

    def __init__(self, stream):
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                mark = self.peek_event().start_mark
                raise _TooManyAliases(f"line {mark.line + 1}: more than {MAX_YAML_ALIASES} YAML aliases (*name); refused")
        return super().compose_node(parent, index)

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None and self._aliases:
            _expanded_size(node, {})
        return node


def _expanded_size(node, memo: dict) -> int:
    """Values under `node` with every alias expanded (shared nodes counted once per use)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive alias counts once
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(v, memo) for v in node.value)
    else:
        size = 1
    if size > MAX_YAML_NODES:
        raise _TooManyAliases(f"line {node.start_mark.line + 1}: its aliases (*name) expand to more than "
                              f"{MAX_YAML_NODES:,} values; refused (an alias bomb)")
    memo[key] = size
    return size
