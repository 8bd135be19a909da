"""Clean stage: text repair, language identification, published quality rule sets, PII replacement.

Public API (what the corpus flow calls):
    clean_table(table, config) -> CleanResult(kept, rejected, stats: CleanStats)
    clean_shard(in_path, out_path, rejected_path, config) -> CleanStats
    CleanStats.merged([stats, ...]) -> CleanStats (pipeline.records)
"""
from pipeline.clean.config import CleanConfig

_STAGE = ("CleanResult", "Cleaner", "clean_shard", "clean_table")


def __getattr__(name):
    # The stage (text repair, language ID, pyarrow.compute: ~1 s of imports) loads on first use,
    # not when a recipe is read: `opencorpus run` checks a recipe before anything else starts.
    if name in _STAGE:
        from pipeline.clean import stage

        return getattr(stage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CleanConfig", "CleanResult", "Cleaner", "clean_shard", "clean_table"]
