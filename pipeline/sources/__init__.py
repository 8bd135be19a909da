"""Source types, by the `type:` a recipe names. Add a type by subclassing `Source` and registering it here."""
from __future__ import annotations

from pipeline.sources.base import Source, SourceBatch, SourceConfig

_REGISTRY: dict[str, type[Source]] = {}


def register(cls: type[Source]) -> type[Source]:
    _REGISTRY[cls.type] = cls
    return cls


def source_class(type_name: str) -> type[Source]:
    _load_builtin()
    try:
        return _REGISTRY[type_name]
    except KeyError:
        raise KeyError(f"unknown source type {type_name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def source_types() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


_LOADED = False


def _load_builtin():
    # A flag, not "is the registry empty": importing one source module (say warc, which
    # imports http) registers those two only, and the others must still be loaded.
    global _LOADED
    if _LOADED:
        return
    from pipeline.sources import files  # noqa: F401  (modules register themselves)

    for optional in ("python_env", "hf", "http", "warc", "commoncrawl"):
        try:
            __import__(f"pipeline.sources.{optional}")
        except ModuleNotFoundError as e:
            if e.name != f"pipeline.sources.{optional}":
                raise
    _LOADED = True


__all__ = ["Source", "SourceBatch", "SourceConfig", "register", "source_class", "source_types"]
