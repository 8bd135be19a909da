"""Clean stage: text repair, language identification, published quality rule sets, PII replacement.

Public API (what the corpus flow calls):
    clean_table(table, config) -> CleanResult(kept, rejected, stats: CleanStats)
    clean_shard(in_path, out_path, rejected_path, config) -> CleanStats
    CleanStats.merged([stats, ...]) -> CleanStats (pipeline.records)
"""
from pipeline.clean.config import CleanConfig
from pipeline.clean.stage import CleanResult, Cleaner, clean_shard, clean_table

__all__ = ["CleanConfig", "CleanResult", "Cleaner", "clean_shard", "clean_table"]
