"""Recipe options of the dedup stage (`dedup:`)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MinHashConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ngram: int = Field(5, ge=1, description="shingle size in words (characters for CJK text)")
    num_perm: int = Field(128, ge=8)
    bands: int | None = Field(None, ge=1)
    rows: int | None = Field(None, ge=1)
    threshold: float | None = Field(0.75, gt=0, le=1, description="used to derive bands x rows when they are not given")
    seed: int = 1


class DedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exact: bool = True
    minhash: MinHashConfig | None = Field(default_factory=MinHashConfig)
    threshold: float | None = Field(None, gt=0, le=1, description="shorthand for minhash.threshold")
