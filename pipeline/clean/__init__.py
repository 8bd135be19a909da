"""Clean stage: text repair, language identification, published quality rule sets, PII replacement.

Public API (what the corpus flow calls):
    clean_table(table, config) -> CleanResult(kept, rejected, stats)
    clean_shard(in_path, out_path, rejected_path, config) -> stats dict
    merge_stats([stats, ...]) -> stats dict
"""
from pipeline.clean.config import CleanConfig
from pipeline.clean.stage import CleanResult, Cleaner, clean_shard, clean_table, merge_stats

__all__ = ["CleanConfig", "CleanResult", "Cleaner", "clean_shard", "clean_table", "merge_stats"]
