"""Recipe options of the tokenize stage (`tokenize:`)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TokenizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vocab_size: int = Field(8192, ge=260)
    min_frequency: int = Field(2, ge=1)
    val_fraction: float = Field(0.05, ge=0, lt=1)
    seed: int = 1234
    tokenizer: str | None = Field(None, description="path of an existing tokenizer.json to use instead of training one")
