"""Deduplication: exact (normalized text, URL) and MinHash near-duplicates; see docs/dedup.md."""
from pipeline.dedup.config import DedupConfig, MinHashConfig


def __getattr__(name):
    # The stage (MinHash, pyarrow.compute) loads on first use, not when a recipe is read.
    if name in ("plan_dedup", "run_dedup"):
        from pipeline.dedup import stage

        return getattr(stage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DedupConfig", "MinHashConfig", "plan_dedup", "run_dedup"]
