"""Dedup phase 6, write (one unit per shard): the kept documents, the rejections with their
reasons and the cluster rows of one shard, from the shard and its `assign/` file.

The shard is streamed batch by batch into `dedup/<shard>` (atomic), so a unit holds one batch of
text; `rejected/dedup-<shard>` and `clusters/<shard>` hold only the removed and clustered rows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dedup.cluster import read_assignment
from pipeline.dedup.config import DedupConfig
from pipeline.dedup.lines import drop_units
from pipeline.dedup.params import CLUSTERS_SCHEMA, DUP_ID, EXACT, FILTERS, KEPT, LINES, METHODS, STAGE, URL, Params
from pipeline.dedup.params import rows_per_batch
from pipeline.io import PARQUET_COMPRESSION, ParquetWriter, atomic_path, text_bytes, write_parquet
from pipeline.schema import CLEAN_SCHEMA, conform, rejected_table


def write_shard(path: str, first_doc: int, out_dir: str, work: str, params: Params, unit_drops: dict | None = None,
                unit: str = "line", batch_bytes: int = DedupConfig.model_fields["batch_bytes"].default) -> dict:
    """Write the kept documents, the rejections and the cluster rows of one shard.

    `unit_drops` (line/paragraph dedup): row -> indices of the units to remove from its text; a
    document left without text is rejected as "duplicate_lines".
    """
    path, out_dir = Path(path), Path(out_dir)
    name = path.name
    pf = pq.ParquetFile(path)
    a = read_assignment(Path(work), name, first_doc, pf.metadata.num_rows)
    status, kept_doc, rep_doc, id_of = a["status"], a["kept_doc"], a["rep_doc"], a["id_of"]
    similarity, edge_sim, in_cluster = a["similarity"], a["edge_sim"], a["in_cluster"]
    units_removed = unit_bytes_removed = bytes_out = docs_out = 0
    rej_parts, clu_parts = [], []  # (id, source, text) of rejected rows; id of cluster rows
    # Streamed batch by batch into the output file (atomic), so a worker holds one batch of text.
    with atomic_path(out_dir / "dedup" / name) as tmp:
        with ParquetWriter(tmp, CLEAN_SCHEMA, compression=PARQUET_COMPRESSION) as writer:
            s = 0
            for rb in pf.iter_batches(batch_size=rows_per_batch(pf, batch_bytes)):
                e = s + rb.num_rows
                table = conform(pa.Table.from_batches([rb]), CLEAN_SCHEMA)
                drops = {r - s: d for r, d in (unit_drops or {}).items() if s <= r < e}
                if drops:
                    texts = table.column("text").to_pylist()
                    for row, drop in drops.items():
                        before = texts[row]
                        texts[row] = drop_units(before, set(drop), unit)
                        units_removed += len(drop)
                        unit_bytes_removed += len(before.encode("utf-8")) - len(texts[row].encode("utf-8"))
                        if not texts[row].strip():
                            status[s + row] = LINES
                    idx = table.schema.get_field_index("text")
                    table = table.set_column(idx, table.schema.field(idx), pa.array(texts, pa.string()))
                keep_b = status[s:e] == KEPT
                kept = table.filter(pa.array(keep_b))
                writer.write_table(kept)
                docs_out += kept.num_rows
                bytes_out += text_bytes(kept)
                rej = pa.array(np.flatnonzero(~keep_b), pa.int64())
                rej_parts.append(table.select(["id", "source", "text"]).take(rej))
                clu_parts.append(table.select(["id"]).take(pa.array(np.flatnonzero(in_cluster[s:e]), pa.int64())))
                s = e
    keep = status == KEPT
    rej_tab = pa.concat_tables(rej_parts) if rej_parts else pa.table({"id": pa.array([], pa.string()), "source": pa.array([], pa.string()), "text": pa.array([], pa.string())})
    ids = rej_tab.column("id").to_pylist()
    rej_rows = np.flatnonzero(~keep)
    filters, reasons, dup_of = [], [], []
    for j, r in enumerate(rej_rows):
        st = int(status[r])
        k_id = id_of.get(int(kept_doc[r]), "?")
        filters.append(FILTERS[st])
        if st == DUP_ID:
            reasons.append(f"id {ids[j]!r} already used by an earlier document (document #{int(rep_doc[r])} in shard order); ids must be unique")
            dup_of.append(id_of.get(int(rep_doc[r]), ids[j]))
            continue
        dup_of.append(k_id)
        if st == EXACT:
            via = "" if rep_doc[r] == kept_doc[r] else f" (via {id_of.get(int(rep_doc[r]), '?')})"
            reasons.append(f"exact duplicate of {k_id}{via}: the same words after normalization ({params.norm})")
        elif st == URL:
            reasons.append(f"same URL as {k_id}, which is kept")
        elif st == LINES:
            dup_of[-1] = None
            reasons.append(f"every {unit} of at least the minimum length already appears in earlier documents; nothing left")
        else:
            edge = f"; linked by a pair with {params.verify if params.verify != 'none' else 'LSH'} Jaccard {edge_sim[r]:.3f}" if edge_sim[r] > 0 else ""
            reasons.append(
                f"near duplicate of {k_id}: estimated Jaccard {similarity[r]:.3f} of {params.ngram}-gram shingles "
                f"(threshold {params.threshold:.2f}){edge}"
            )
    rej = rejected_table(rej_tab.column("id"), rej_tab.column("source"), STAGE, filters, reasons, rej_tab.column("text"), dup_of)
    write_parquet(rej, out_dir / "rejected" / f"{STAGE}-{name}")

    c_rows = np.flatnonzero(in_cluster)
    clusters = pa.table(
        {
            "id": pa.concat_tables(clu_parts).column("id") if clu_parts else pa.array([], pa.string()),
            "cluster_id": [id_of.get(int(kept_doc[r]), "?") for r in c_rows],
            "kept": keep[c_rows],
            "similarity": similarity[c_rows].astype(np.float32),
            "method": [None if keep[r] else METHODS.get(int(status[r])) for r in c_rows],
        },
        schema=CLUSTERS_SCHEMA,
    )
    write_parquet(clusters, out_dir / "clusters" / name)
    return {"name": name, "docs_out": docs_out, "bytes_out": bytes_out, "docs_rejected": len(rej_rows),
            "emptied_rows": np.flatnonzero(status == LINES).tolist(), "units_removed": units_removed,
            "unit_bytes_removed": unit_bytes_removed,
            "status_counts": {FILTERS[c]: int((status == c).sum()) for c in FILTERS if (status == c).any()}}
