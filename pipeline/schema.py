"""Arrow schemas shared by every stage: the contract between pipeline stages.

Every document shard (`documents/`, `clean/`, `dedup/`) has a fixed schema so that a
folder of shards reads as one table in `datasets`, `polars` and `duckdb` (they refuse
shards whose schemas differ). Source-specific metadata that has no column of its own
travels as a JSON object in `meta`.
"""
from __future__ import annotations

import pyarrow as pa

# Columns every document has from ingest on.
DOC_FIELDS = [
    pa.field("id", pa.string(), nullable=False),  # stable across runs; the record's own id when it has one
    pa.field("text", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),  # the recipe's source name
    pa.field("license", pa.string()),  # SPDX expression where one is known
    pa.field("kind", pa.string()),  # "prose" or "code"
    pa.field("url", pa.string()),
    pa.field("path", pa.string()),  # file the document came from (and line, when one file holds many)
    pa.field("meta", pa.string()),  # JSON object: everything else the source knows
]
DOC_SCHEMA = pa.schema(DOC_FIELDS)

# The clean stage adds language identification and the learned quality score (null when the
# recipe has no `clean.quality` scorer, and for code); dedup keeps the clean schema.
CLEAN_SCHEMA = pa.schema(
    DOC_FIELDS
    + [
        pa.field("language", pa.string()),
        pa.field("language_score", pa.float32()),
        pa.field("quality_score", pa.float32()),
    ]
)

# One row per document a stage removed. `filter` is the rule's name, `reason` a
# human-readable sentence (the measured value and the threshold); `duplicate_of` is
# the id of the document kept instead (dedup only); `quality_score` is the learned score of a
# document the clean stage's scorer judged (null for the others), so a rejected document can
# be re-thresholded later without recomputing it.
REJECTED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("filter", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("duplicate_of", pa.string()),
        pa.field("quality_score", pa.float32()),
    ]
)

# Token shards (`tokens/train/`, `tokens/val/`): one row per document, the
# end-of-text token already appended. input_ids is uint16 when the vocabulary fits.
def token_schema(vocab_size: int) -> pa.Schema:
    id_type = pa.uint16() if vocab_size <= 65536 else pa.uint32()
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("input_ids", pa.list_(id_type), nullable=False),
            pa.field("n_tokens", pa.int32(), nullable=False),
        ]
    )


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Return `table` with exactly `schema`'s columns, in order; missing nullable columns become nulls."""
    cols = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            if col.type != field.type:
                col = col.cast(field.type)
            cols.append(col)
        elif field.nullable:
            cols.append(pa.nulls(table.num_rows, field.type))
        else:
            raise ValueError(f"table lacks required column {field.name!r}")
    return pa.Table.from_arrays(cols, schema=schema)


def rejected_table(
    ids, sources, stage: str, filters, reasons, texts, duplicate_of=None, quality_score=None
) -> pa.Table:
    """Build a REJECTED_SCHEMA table; scalar `filters`/`reasons` are broadcast."""
    n = len(ids)

    def col(v):
        return v if isinstance(v, (list, pa.Array, pa.ChunkedArray)) else [v] * n

    return pa.Table.from_pydict(
        {
            "id": col(ids),
            "source": col(sources),
            "stage": [stage] * n,
            "filter": col(filters),
            "reason": col(reasons),
            "text": col(texts),
            "duplicate_of": col(duplicate_of) if duplicate_of is not None else [None] * n,
            "quality_score": col(quality_score) if quality_score is not None else [None] * n,
        },
        schema=REJECTED_SCHEMA,
    )
