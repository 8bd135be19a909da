"""Recipe options of the clean stage (`clean:`)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CleanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fix_text: bool = Field(True, description="repair mojibake and broken Unicode with ftfy")
    normalization: str | None = Field("NFC", description="Unicode normal form, or null for none")
    min_chars: int = Field(1, ge=0, description="documents shorter than this (after repair) are rejected")
    max_chars: int | None = Field(None, description="documents longer than this are rejected")
    max_symbol_ratio: float = Field(0.3, ge=0, description="reject when the share of non-alphanumeric, non-space characters exceeds this")
