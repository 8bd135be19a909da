"""What every phase of the dedup stage shares: the resolved parameters, status codes, the
shard layout (global document numbers in shard order) and the clusters schema."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dedup.config import DedupConfig
from pipeline.dedup.minhash import Signer, optimal_bands_rows

STAGE = "dedup"
KEPT, DUP_ID, EXACT, URL, NEAR, LINES = 0, 1, 2, 3, 4, 5
FILTERS = {DUP_ID: "duplicate_id", EXACT: "exact_duplicate", URL: "duplicate_url", NEAR: "near_duplicate", LINES: "duplicate_lines"}
METHODS = {EXACT: "exact", URL: "url", NEAR: "minhash"}
CLUSTERS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("cluster_id", pa.string(), nullable=False),
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("similarity", pa.float32()),
        pa.field("method", pa.string()),
    ]
)


@dataclass(frozen=True)
class Params:
    """Everything a worker needs, resolved from the config (picklable)."""

    ngram: int
    num_perm: int
    bands: int
    rows: int
    seed: int
    hash: str
    cjk: str
    cjk_min_ratio: float
    threshold: float
    verify: str
    minhash: bool
    norm: str = "whitespace"

    @classmethod
    def from_config(cls, cfg: DedupConfig) -> "Params":
        m = cfg.minhash
        if m is None:
            return cls(5, 8, 1, 1, 1, "words64", "chars", 0.3, 1.0, "none", False)
        if m.bands is not None:
            bands, rows = m.bands, m.rows
        else:
            bands, rows = optimal_bands_rows(m.threshold, m.num_perm, m.fp_weight())
        threshold = m.threshold if m.threshold is not None else (1.0 / bands) ** (1.0 / rows)
        return cls(m.ngram, m.num_perm, bands, rows, m.seed, m.hash, m.cjk, m.cjk_min_ratio, threshold, m.verify, True)

    def with_norm(self, cfg: DedupConfig) -> "Params":
        n = cfg.normalize
        parts = ["whitespace"] + [name for flag, name in [(n.unicode_nfkc, "NFKC"), (n.lowercase, "lowercase"),
                                                          (n.strip_punctuation, "no punctuation"), (n.strip_digits, "no digits")] if flag]
        return dataclasses.replace(self, norm=", ".join(parts))

    def signer(self) -> Signer:
        return Signer(self.num_perm, self.seed, self.ngram, self.hash, self.cjk, self.cjk_min_ratio)


@dataclass(frozen=True)
class Layout:
    """The shards in dedup order (a persisted index's parts first): names, first global document
    number and row count of each. Document numbers are dense, so a unit finds its rows alone."""

    names: list
    counts: list
    n_old: int = 0  # documents of the persisted index (never removed)

    @property
    def first(self) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(self.counts)[:-1])).astype(np.int64) if self.counts else np.zeros(0, np.int64)

    @property
    def n_docs(self) -> int:
        return int(sum(self.counts))

    def shard_of(self, docs: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.first, np.asarray(docs, np.int64), side="right") - 1

    def locate(self, doc: int) -> tuple[str, int]:
        s = int(self.shard_of(np.array([doc]))[0])
        return self.names[s], doc - int(self.first[s])


def rows_per_batch(pf: pq.ParquetFile, batch_bytes: int) -> int:
    """Rows per record batch for about batch_bytes of text, from the Parquet metadata."""
    md = pf.metadata
    if md.num_rows == 0:
        return 1024
    idx = pf.schema_arrow.get_field_index("text")
    text_bytes_total = sum(md.row_group(i).column(idx).total_uncompressed_size for i in range(md.num_row_groups))
    avg = max(text_bytes_total / md.num_rows, 1.0)
    return int(min(max(batch_bytes / avg, 16), 1 << 16))
