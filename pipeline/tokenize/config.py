"""Recipe options of the tokenize stage (`tokenize:`)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pipeline.records import recipe_path


class TokenizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vocab_size: int = Field(8192, ge=260, le=2**32, description="BPE vocabulary size, special tokens and the 256 bytes included (token ids are stored as at most uint32)")
    min_frequency: int = Field(2, ge=1, description="a pair seen fewer times than this in the sample is never merged")
    val_fraction: float = Field(
        0.05, ge=0, lt=1, description="share of documents in the val split, chosen by a seeded hash of the id"
    )
    seed: int = Field(1234, description="seeds the train/val hash and the tokenizer's training sample")
    tokenizer: str | None = recipe_path(None, description="path of an existing tokenizer.json to use instead of training one")
    train_sample_bytes: int | None = Field(
        100_000_000,
        ge=1,
        description="UTF-8 bytes of text (train split only, a seeded hash sample of documents) the tokenizer "
        "is trained on; null trains on every train-split document",
    )
    shard_tokens: int = Field(
        50_000_000, ge=1, description="target tokens per output shard (a shard closes at the first document past it)"
    )
    row_group_tokens: int = Field(
        1_000_000, ge=1, description="target tokens per Parquet row group (the unit a reader can fetch alone)"
    )
    zstd_level: int = Field(
        3, ge=1, le=22, description="zstd level of the token shards (3: 0.73x a raw uint16 array, at ~30 ns/token)"
    )
    batch_docs: int = Field(1024, ge=1, description="at most this many documents per encode_batch call")
    batch_bytes: int = Field(
        2_000_000,
        ge=1,
        description="at most this many bytes of text per encode_batch call (a longer document goes alone); "
        "bounds memory: tokenizers holds ~100 bytes per token of a batch in flight",
    )
    pack_length: int | None = Field(
        None,
        ge=2,
        description="also write fixed-length sequences of this many tokens to tokens/packed/{train,val}/ "
        "(documents concatenated with their end-of-text tokens; the last row of a split is padded)",
    )
