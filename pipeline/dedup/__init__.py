"""Deduplication: exact (normalized text, URL) and MinHash near-duplicates; see docs/dedup.md."""
from pipeline.dedup.config import DedupConfig, MinHashConfig
from pipeline.dedup.stage import plan_dedup, run_dedup

__all__ = ["DedupConfig", "MinHashConfig", "plan_dedup", "run_dedup"]
