"""Ingest: read one recipe source into `documents/` shards (DOC_SCHEMA) and `rejected/`.

Each source writes its own shards, `documents/part-<source>-<nnnnn>.parquet`, so sources
can be ingested in parallel and a rerun can skip a source whose shards are complete.
Within a source, a record whose id was already seen is rejected (`duplicate_id`) naming
the earlier record's path, never silently dropped.
"""
from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa

from pipeline.io import text_bytes, write_parquet
from pipeline.records import IngestSourceStats
from pipeline.schema import DOC_SCHEMA, REJECTED_SCHEMA, rejected_table
from pipeline.sources.base import MALFORMED_FILTERS


def shard_name(source: str, seq: int) -> str:
    return f"part-{source}-{seq:05d}.parquet"


def ingest_source(source, out_dir: Path, shard_docs: int, rejected_text: str = "excerpt",
                  excerpt_chars: int = 500) -> IngestSourceStats:
    """Read `source` (a pipeline.sources.Source) into out_dir/documents and out_dir/rejected.

    Records rejected as malformed input (MALFORMED_FILTERS) keep only their first
    `excerpt_chars` characters of text unless `rejected_text == "full"`.

    Returns the stage stats for this source, including the shard paths written (relative to
    out_dir) and the source's provenance (files read, sizes, checksums)."""
    t0 = time.perf_counter()
    name = source.config.name
    docs_dir, rej_dir = Path(out_dir) / "documents", Path(out_dir) / "rejected"
    seen: dict[str, str] = {}  # id -> path of first occurrence
    pending: list[pa.Table] = []
    rejected: list[pa.Table] = []
    pending_rows = 0
    shards: list[str] = []
    stats = {"docs_in": 0, "docs_out": 0, "docs_rejected": 0, "bytes_in": 0, "bytes_out": 0,
             "surrogates_replaced": 0}
    reasons: dict[str, int] = {}

    def flush(final: bool):
        nonlocal pending, pending_rows
        while pending_rows >= shard_docs or (final and (pending_rows or not shards)):
            table = pa.concat_tables(pending) if pending else DOC_SCHEMA.empty_table()
            head, rest = table.slice(0, shard_docs), table.slice(shard_docs)
            path = docs_dir / shard_name(name, len(shards))
            write_parquet(head, path)
            shards.append(str(path))
            stats["docs_out"] += head.num_rows
            stats["bytes_out"] += text_bytes(head)
            pending, pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
            if final and not pending_rows:
                break

    for batch in source.read():
        docs = batch.docs
        stats["docs_in"] += docs.num_rows + batch.rejected.num_rows
        stats["bytes_in"] += batch.bytes_read
        stats["surrogates_replaced"] += getattr(batch, "surrogates_replaced", 0)
        if batch.rejected.num_rows:
            rejected.append(batch.rejected if rejected_text == "full" else _excerpts(batch.rejected, excerpt_chars))
        docs, dup_rej = _reject_repeated_ids(docs, seen)
        if dup_rej is not None:
            rejected.append(dup_rej)
        if docs.num_rows:
            pending.append(docs)
            pending_rows += docs.num_rows
        flush(final=False)
    flush(final=True)

    rej = pa.concat_tables(rejected) if rejected else REJECTED_SCHEMA.empty_table()
    write_parquet(rej, rej_dir / f"ingest-{name}.parquet")
    stats["docs_rejected"] = rej.num_rows
    for f in rej.column("filter").to_pylist():
        reasons[f] = reasons.get(f, 0) + 1
    return IngestSourceStats(
        **stats, seconds=round(time.perf_counter() - t0, 3), rejected_by_filter=reasons,
        shards=[Path(p).relative_to(out_dir).as_posix() for p in shards], provenance=source.provenance,
        type=source.config.type, license=source.config.license,
    )


def _reject_repeated_ids(docs: pa.Table, seen: dict[str, str]):
    ids = docs.column("id").to_pylist()
    paths = docs.column("path").to_pylist()
    keep, bad = [], []
    for i, (doc_id, path) in enumerate(zip(ids, paths)):
        if doc_id in seen:
            bad.append(i)
        else:
            seen[doc_id] = path
            keep.append(i)
    if not bad:
        return docs, None
    dup = docs.take(pa.array(bad, type=pa.int64()))
    rej = rejected_table(
        dup.column("id").to_pylist(), dup.column("source").to_pylist(), "ingest", "duplicate_id",
        [f"{paths[i]}: id {ids[i]!r} already used by {seen[ids[i]]}" for i in bad], dup.column("text").to_pylist(),
        duplicate_of=[ids[i] for i in bad],
    )
    return docs.take(pa.array(keep, type=pa.int64())), rej  # typed: `keep` may be empty


def _excerpts(rej: pa.Table, chars: int) -> pa.Table:
    """`rej` with the text of its malformed-input rejections cut to `chars` characters."""
    import pyarrow.compute as pc

    malformed = pc.is_in(rej.column("filter"), value_set=pa.array(sorted(MALFORMED_FILTERS)))
    if not pc.any(malformed).as_py():
        return rej
    text = rej.column("text")
    cut = pc.if_else(malformed, pc.utf8_slice_codeunits(text, 0, chars), text)
    i = rej.schema.get_field_index("text")
    return rej.set_column(i, rej.schema.field(i), cut.cast(rej.schema.field(i).type))
