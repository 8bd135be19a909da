"""Recipe options of the dedup stage (`dedup:`)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.records import recipe_path

# FineWeb / datatrove's MinHash setting: word 5-grams, 14 bands x 8 rows, no verification.
FINEWEB_PRESET = {"ngram": 5, "num_perm": 112, "bands": 14, "rows": 8, "verify": "none"}


class NormalizeConfig(BaseModel):
    """How text is normalized before hashing, for exact keys and MinHash shingles alike.

    Whitespace never matters: both compare the sequence of whitespace-separated words.
    """

    model_config = ConfigDict(extra="forbid")

    unicode_nfkc: bool = Field(False, description="apply Unicode NFKC (full-width forms, ligatures -> plain); the clean stage already applies NFC")
    lowercase: bool = Field(True, description="compare case-insensitively")
    strip_punctuation: bool = Field(False, description="drop punctuation and symbols before hashing")
    strip_digits: bool = Field(False, description="drop digits before hashing (dates, counters)")


class MinHashConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: Literal["fineweb"] | None = Field(
        None, description="'fineweb' = 5-grams, 112 perms, 14 bands x 8 rows, no verification (FineWeb/datatrove); explicit fields override it"
    )
    ngram: int = Field(5, ge=1, description="shingle size in words (characters for CJK text); a shorter document is one shingle")
    num_perm: int = Field(128, ge=8, le=1024, description="number of MinHash permutations (signature length)")
    bands: int | None = Field(None, ge=1, description="LSH bands; derived from the threshold when not given")
    rows: int | None = Field(None, ge=1, description="LSH rows per band; derived from the threshold when not given")
    threshold: float | None = Field(0.75, gt=0, le=1, description="Jaccard similarity at or above which two documents are duplicates")
    seed: int = Field(1, description="seed of the permutations (datasketch's `seed`)")
    hash: Literal["words64", "sha1"] = Field(
        "words64",
        description=(
            "shingle hash: 'words64' = vectorized polynomial hash of the shingle's words (fast; equal to "
            "datasketch.MinHash(hashfunc=pipeline.dedup.minhash.shingle_hash32)), 'sha1' = datasketch's default "
            "sha1_hash32 (slow, per shingle in Python)"
        ),
    )
    cjk: Literal["chars", "words"] = Field(
        "chars", description="documents mostly in Han/Kana script: 'chars' = character n-grams, 'words' = whitespace words like other text"
    )
    cjk_min_ratio: float = Field(0.3, ge=0, le=1, description="share of Han/Kana characters from which a document counts as CJK")
    verify: Literal["none", "signature", "exact"] = Field(
        "exact",
        description=(
            "check each LSH candidate pair before linking: 'exact' = exact Jaccard of the shingle sets, 'signature' = "
            "Jaccard estimated from the full signature, 'none' = every candidate pair is a duplicate (datatrove)"
        ),
    )
    false_positive_weight: float | None = Field(
        None, ge=0, le=1, description="weight of false positives when deriving bands x rows (datasketch's optimisation); default 0.5, or 0.005 when candidates are verified (recall-heavy: verification removes the false positives)"
    )
    max_bucket_pairs: int = Field(
        64, ge=2, description="LSH buckets up to this size give all their pairs; larger ones only pairs with their first member and neighbours"
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data):
        if isinstance(data, dict) and data.get("preset") == "fineweb":
            data = {**FINEWEB_PRESET, **data}
        return data

    @model_validator(mode="after")
    def _check(self):
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both minhash.bands and minhash.rows, or neither")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if self.bands is None and self.threshold is None:
            raise ValueError("give minhash.threshold or minhash.bands and minhash.rows")
        return self

    def fp_weight(self) -> float:
        if self.false_positive_weight is not None:
            return self.false_positive_weight
        return 0.5 if self.verify == "none" else 0.005


class LineDedupConfig(BaseModel):
    """Dolma/C4-style removal of repeated lines or paragraphs across documents (off by default)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="remove lines/paragraphs already seen in an earlier document")
    unit: Literal["line", "paragraph"] = Field("paragraph", description="'line' = split on newlines, 'paragraph' = split on blank lines")
    min_chars: int = Field(32, ge=1, description="shorter units are never removed (blank lines, short headings)")


class DedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exact: bool = Field(True, description="remove documents whose normalized text is identical to an earlier one")
    normalize: NormalizeConfig = Field(default_factory=NormalizeConfig, description="normalization before exact keys and shingles")
    exact_url: bool = Field(False, description="also remove documents whose URL equals an earlier document's URL")
    minhash: MinHashConfig | None = Field(default_factory=MinHashConfig, description="near-duplicate detection; null to turn off")
    threshold: float | None = Field(None, gt=0, le=1, description="shorthand for minhash.threshold")
    lines: LineDedupConfig = Field(default_factory=LineDedupConfig, description="line/paragraph-level exact dedup across documents")
    batch_bytes: int = Field(2 << 20, ge=1 << 16, description="text bytes hashed per numpy batch (bounds memory per worker)")
    executor: Literal["threads", "processes"] = Field(
        "threads", description="how `workers` run the per-shard phases: threads of one process (less memory) or spawned processes"
    )
    partitions: int | None = Field(
        None, ge=1, le=4096,
        description="hash partitions of the exact-group and verify phases (units of work); default one per 100,000 "
        "documents, at least 2. Never derived from the workers, so outputs do not depend on them",
    )
    incremental_index: str | None = recipe_path(
        None, description="folder of a persisted band index (a previous run's dedup_index/) to deduplicate against"
    )
    persist_index: bool = Field(True, description="write out_dir/dedup_index/ (kept documents' keys, signatures, band keys) for later incremental runs")

    @model_validator(mode="after")
    def _shorthand(self):
        if self.threshold is not None and self.minhash is not None:
            self.minhash.threshold = self.threshold
        return self
