"""The dedup stage end to end on generated WikiText-style articles with seeded copies and edits:
outputs, conservation, determinism, bad input; Dolma's own expected line dedup (marked `shared`)."""
from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.dedup import DedupConfig, run_dedup
from pipeline.dedup.params import CLUSTERS_SCHEMA
from pipeline.io import list_shards, write_parquet
from pipeline.schema import CLEAN_SCHEMA, REJECTED_SCHEMA, conform
from pipeline.units import scratch_dir

from conftest import require_shared
from fixtures_corpus import wiki_text


def _articles(n: int = 40) -> list[str]:
    raw = wiki_text(80)
    parts = [p for p in raw.split("\n = ") if len(p.split()) > 300]
    return [" = " + p for p in parts[:n]]


def _edit(text: str, rate: float, rng: random.Random) -> str:
    words = text.split()
    out = []
    for w in words:
        r = rng.random()
        if r < rate / 2:
            continue
        out.append(w)
        if r > 1 - rate / 2:
            out.append(rng.choice(words))
    return " ".join(out)


def _shards(tmp: Path, rows: list[dict], per_shard: int) -> list[Path]:
    paths = []
    for i in range(0, len(rows), per_shard):
        t = conform(pa.Table.from_pylist(rows[i : i + per_shard]), CLEAN_SCHEMA)
        paths.append(write_parquet(t, tmp / "clean" / f"part-{i // per_shard:05d}.parquet"))
    return paths


def _corpus(tmp: Path, per_shard: int = 25):
    """Generated articles plus exact copies (case/whitespace changed), light edits (J >> 0.75) and heavy edits."""
    rng = random.Random(0)
    arts = _articles()
    rows = [{"id": f"a{i:03d}", "text": t, "source": "wiki", "kind": "prose", "url": f"https://w/{i}"} for i, t in enumerate(arts)]
    expect_exact, expect_near, expect_kept_variant = set(), set(), set()
    for i in range(0, 10):
        rows.append({"id": f"x{i}", "text": "  " + arts[i].upper().replace(" ", "\n  "), "source": "copy", "kind": "prose"})
        expect_exact.add(f"x{i}")
    for i in range(10, 20):
        rows.append({"id": f"n{i}", "text": _edit(arts[i], 0.01, rng) + " (edited copy)", "source": "edit", "kind": "prose"})
        expect_near.add(f"n{i}")
    for i in range(20, 30):
        rows.append({"id": f"h{i}", "text": _edit(arts[i], 0.4, rng), "source": "edit", "kind": "prose"})
        expect_kept_variant.add(f"h{i}")
    variants = rows[len(arts):]
    rng.shuffle(variants)  # originals first: the earliest document of a cluster is kept
    rows = rows[: len(arts)] + variants
    return _shards(tmp, rows, per_shard), rows, expect_exact, expect_near, expect_kept_variant


def _read_dir(folder: Path, pattern="part-*.parquet") -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in list_shards(folder, pattern)])


def test_dedup_end_to_end(tmp_path):
    paths, rows, exact, near, kept_variant = _corpus(tmp_path)
    stats = run_dedup(paths, tmp_path, DedupConfig())
    kept = _read_dir(tmp_path / "dedup")
    rejected = _read_dir(tmp_path / "rejected", "dedup-*.parquet")
    clusters = _read_dir(tmp_path / "clusters")
    assert kept.schema.equals(CLEAN_SCHEMA) and rejected.schema.equals(REJECTED_SCHEMA)
    assert clusters.schema.equals(CLUSTERS_SCHEMA)
    # same shard names, conservation
    assert [p.name for p in list_shards(tmp_path / "dedup")] == [p.name for p in paths]
    assert stats.docs_in == len(rows) == stats.docs_out + stats.docs_rejected
    assert kept.num_rows == stats.docs_out and rejected.num_rows == stats.docs_rejected
    removed = dict(zip(rejected.column("id").to_pylist(), rejected.column("filter").to_pylist()))
    assert {k for k, f in removed.items() if f == "exact_duplicate"} == exact
    assert {k for k, f in removed.items() if f == "near_duplicate"} == near
    assert not (kept_variant & set(removed))
    assert stats.exact_removed == 10 and stats.near_removed == 10 and stats.clusters == 20
    # every removal names the kept document, which is the original article, and gives a reason
    for rid, dup_of, reason in zip(*(rejected.column(c).to_pylist() for c in ("id", "duplicate_of", "reason"))):
        assert dup_of == "a" + rid[1:].zfill(3) and dup_of in set(kept.column("id").to_pylist())
        assert "duplicate" in reason and dup_of in reason
    near_reasons = [r for r, f in zip(rejected.column("reason").to_pylist(), rejected.column("filter").to_pylist()) if f == "near_duplicate"]
    assert all("threshold 0.75" in r for r in near_reasons)
    # clusters: cluster_id = kept id, one kept member each, similarity estimated
    c = clusters.to_pylist()
    assert len(c) == 40 and sum(r["kept"] for r in c) == 20
    for r in c:
        if r["kept"]:
            assert r["cluster_id"] == r["id"] and r["similarity"] == 1.0
        else:
            assert r["method"] in ("exact", "minhash") and 0.75 <= r["similarity"] <= 1.0
    assert stats.bands * stats.rows <= stats.num_perm
    assert stats.largest_clusters[0].size == 2 and stats.largest_clusters[0].excerpt
    assert stats.rejected_by_filter == {"exact_duplicate": 10, "near_duplicate": 10}
    assert stats.docs_in_clusters == 40 and stats.cluster_sizes == {"2": 20}
    assert not scratch_dir(tmp_path, "dedup").exists()  # scratch removed
    assert stats.plan.ram_bytes_estimate > 0 and stats.plan.docs == len(rows)


@pytest.mark.parametrize("executor", ["threads", pytest.param("processes", marks=pytest.mark.slow)])
def test_deterministic_whatever_the_workers(tmp_path, executor):
    paths, *_ = _corpus(tmp_path, per_shard=15)
    out1, out2 = tmp_path / "w1", tmp_path / executor
    s1 = run_dedup(paths, out1, DedupConfig(), workers=1)
    s2 = run_dedup(paths, out2, DedupConfig(executor=executor), workers=2)
    _same_outputs(out1, out2)
    assert s1.docs_out == s2.docs_out


def _same_outputs(out1: Path, out2: Path):
    for sub, pattern in (("dedup", "part-*.parquet"), ("clusters", "part-*.parquet"), ("rejected", "dedup-*.parquet")):
        f1, f2 = list_shards(out1 / sub, pattern), list_shards(out2 / sub, pattern)
        assert [p.name for p in f1] == [p.name for p in f2]
        for a, b in zip(f1, f2):
            assert a.read_bytes() == b.read_bytes(), f"{sub}/{a.name} differs between {out1.name} and {out2.name}"


def test_bad_input_never_crashes(tmp_path):
    arts = _articles(3)
    huge = " ".join([arts[0]] * 400)  # ~2 M words in one document
    rows = [
        {"id": "empty1", "text": ""},
        {"id": "empty2", "text": "   \n "},
        {"id": "short1", "text": "too short"},
        {"id": "short2", "text": "Too   short"},
        {"id": "short3", "text": "also short"},
        {"id": "dup", "text": arts[1]},
        {"id": "dup", "text": arts[2]},
        {"id": "huge", "text": huge},
        {"id": "huge2", "text": huge + " tail"},
    ]
    for r in rows:
        r.update(source="t", kind="prose")
    paths = _shards(tmp_path, rows, per_shard=4)
    paths.append(write_parquet(CLEAN_SCHEMA.empty_table(), tmp_path / "clean" / "part-00099.parquet"))
    stats = run_dedup(paths, tmp_path, DedupConfig(batch_bytes=1 << 20))
    rejected = _read_dir(tmp_path / "rejected", "dedup-*.parquet").to_pylist()
    by_id = {(r["id"], r["filter"]) for r in rejected}
    assert ("empty2", "exact_duplicate") in by_id  # empty texts are equal to each other
    assert ("short2", "exact_duplicate") in by_id  # short documents: one shingle, exact key still works
    assert ("dup", "duplicate_id") in by_id
    assert ("huge2", "near_duplicate") in by_id
    assert ("short3", "near_duplicate") not in by_id
    assert all(r["reason"] for r in rejected)
    assert stats.docs_in == len(rows) == stats.docs_out + stats.docs_rejected
    assert stats.empty_docs == 2 and stats.short_docs >= 3
    assert pq.read_table(tmp_path / "dedup" / "part-00099.parquet").num_rows == 0
    assert (tmp_path / "clusters" / "part-00099.parquet").exists()


def test_exact_only_and_fineweb_preset(tmp_path):
    paths, rows, exact, near, _ = _corpus(tmp_path)
    s = run_dedup(paths, tmp_path / "exact", DedupConfig(minhash=None))
    assert s.exact_removed == 10 and s.near_removed == 0
    s = run_dedup(paths, tmp_path / "fw", DedupConfig.model_validate({"minhash": {"preset": "fineweb"}}))
    assert (s.bands, s.rows, s.num_perm, s.verify) == (14, 8, 112, "none")
    assert s.near_removed >= 9


def test_incremental_equals_dedup_of_both(tmp_path):
    paths, rows, *_ = _corpus(tmp_path, per_shard=20)
    old_paths, new_paths = paths[:3], paths[3:]  # 60 docs first, then the rest (with their duplicates)
    together = run_dedup(paths, tmp_path / "together", DedupConfig())
    first = run_dedup(old_paths, tmp_path / "first", DedupConfig())
    assert (tmp_path / "first" / "dedup_index" / "index.json").is_file()
    # the index names its texts relative to itself: moving the corpus folder keeps it usable
    # (exact verification reads the indexed texts, so a dangling path would fail here)
    moved = tmp_path / "elsewhere" / "first"
    moved.parent.mkdir()
    (tmp_path / "first").rename(moved)
    inc = run_dedup(new_paths, tmp_path / "second", DedupConfig(incremental_index=str(moved / "dedup_index")))
    assert inc.indexed_docs == first.docs_out

    def kept_ids(out, shards):
        return set().union(*(pq.read_table(out / "dedup" / p.name, columns=["id"]).column("id").to_pylist() for p in shards))

    assert kept_ids(tmp_path / "second", new_paths) == kept_ids(tmp_path / "together", new_paths)
    assert kept_ids(moved, old_paths) == kept_ids(tmp_path / "together", old_paths)
    assert first.docs_rejected + inc.docs_rejected == together.docs_rejected
    rej = _read_dir(tmp_path / "second" / "rejected", "dedup-*.parquet").to_pylist()
    old_ids = set(r["id"] for r in rows[:60])
    assert any(r["duplicate_of"] in old_ids for r in rej)  # removed in favour of an indexed document
    # the index grows: a third run against the second index sees both generations
    again = run_dedup(new_paths[:1], tmp_path / "third", DedupConfig(incremental_index=str(tmp_path / "second" / "dedup_index")))
    assert again.indexed_docs == first.docs_out + inc.docs_out
    assert again.docs_out == 0  # every document of that shard is already in the index (same ids)
    with pytest.raises(ValueError, match="other settings"):
        run_dedup(new_paths, tmp_path / "bad", DedupConfig(incremental_index=str(moved / "dedup_index"),
                                                          minhash={"num_perm": 64}))


@pytest.mark.shared
def test_line_dedup_matches_dolma_paragraph_spans(tmp_path):
    """Dolma's own expected output: its "paragraphs" are lines; the first occurrence is kept."""
    import gzip
    import json

    folder = require_shared() / "dedup" / "dolma_deduper"
    docs = [json.loads(x) for x in gzip.open(folder / "documents_000.json.gz")]
    expected = {json.loads(x)["id"]: json.loads(x)["attributes"]["bff_duplicate_paragraph_spans"]
                for x in gzip.open(folder / "expected_dedupe-paragraphs.json.gz")}
    rows = [{"id": d["id"], "text": d["text"], "source": "dolma", "kind": "prose"} for d in docs]
    paths = _shards(tmp_path, rows, per_shard=4)
    cfg = DedupConfig.model_validate({"lines": {"enabled": True, "unit": "line", "min_chars": 1}})
    stats = run_dedup(paths, tmp_path, cfg)
    kept = {r["id"]: r["text"] for r in _read_dir(tmp_path / "dedup").to_pylist()}
    assert stats.docs_out == len(docs) and stats.units_removed > 0
    for d in docs:
        spans = expected[d["id"]]
        removed_expected = [d["text"][s:e].rstrip("\n") for s, e, _ in spans]
        remaining = d["text"]
        if not spans:
            assert kept[d["id"]] == d["text"], d["id"]
            continue
        lines = d["text"].split("\n")
        kept_lines = kept[d["id"]].split("\n")
        removed = [x for x in lines if x not in kept_lines or lines.count(x) > kept_lines.count(x)]
        assert sorted(set(x.strip() for x in removed) - {""}) == sorted(set(x.strip() for x in removed_expected) - {""}), d["id"]
        assert len(kept_lines) < len(lines) and remaining
    assert DedupConfig().lines.enabled is False


def test_defaults_find_license_texts_and_vendored_copies(tmp_path):
    """The project's default corpus (Python packages) repeats license texts with other copyright lines."""
    import glob
    import sysconfig

    site = sysconfig.get_paths()["purelib"]
    files = sorted(f for f in glob.glob(f"{site}/*.dist-info/**/LICENSE*", recursive=True) if Path(f).is_file())
    texts = {f: Path(f).read_text(encoding="utf-8", errors="replace") for f in files}
    mit = [f for f, t in texts.items() if "Permission is hereby granted, free of charge" in t and len(t) < 1400]
    if len(mit) < 5:
        pytest.skip("fewer than 5 MIT license files in this environment")
    rows = [{"id": f, "text": t, "source": "site-packages", "kind": "prose"} for f, t in texts.items()]
    stats = run_dedup(_shards(tmp_path, rows, per_shard=100), tmp_path, DedupConfig())
    clusters = _read_dir(tmp_path / "clusters").to_pylist()
    cluster_of = {r["id"]: r["cluster_id"] for r in clusters}
    biggest = max(set(cluster_of[f] for f in mit if f in cluster_of), key=lambda c: sum(cluster_of.get(f) == c for f in mit))
    share = sum(cluster_of.get(f) == biggest for f in mit) / len(mit)
    assert share >= 0.8, f"only {share:.0%} of {len(mit)} MIT licenses in one cluster"
    assert stats.near_removed > 0 and stats.exact_removed > 0


def test_relative_incremental_index_resolves_against_the_recipe_folder(tmp_path, monkeypatch):
    """`dedup.incremental_index: prev/dedup_index` in a recipe means the folder beside the
    recipe, whatever the working directory: the stage opens the folder the cache key hashed."""
    from pipeline.recipe import load_recipe

    paths, rows, *_ = _corpus(tmp_path, per_shard=20)
    project = tmp_path / "project"
    first = run_dedup(paths[:3], project / "prev", DedupConfig())
    (project / "r.yaml").write_text(
        "name: r\nsources: [{name: s, type: jsonl, paths: ['*.jsonl']}]\n"
        "dedup: {incremental_index: prev/dedup_index}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # not the recipe's folder
    recipe = load_recipe(project / "r.yaml")
    assert recipe.dedup.incremental_index == str(project.resolve() / "prev" / "dedup_index")
    assert recipe.as_written()["dedup"]["incremental_index"] == "prev/dedup_index"  # the manifest keeps what was written
    inc = run_dedup(paths[3:], tmp_path / "second", recipe.dedup)
    assert inc.indexed_docs == first.docs_out > 0

    missing = DedupConfig(incremental_index=str(project / "nope"))
    with pytest.raises(FileNotFoundError, match="nope"):
        run_dedup(paths[3:], tmp_path / "third", missing)


def test_write_phase_reads_in_batches_of_the_recipes_batch_bytes(tmp_path, monkeypatch):
    """The recipe's memory bound (`dedup.batch_bytes`) holds in every phase, the write phase included."""
    import pipeline.dedup.sign as sign
    import pipeline.dedup.params as work
    import pipeline.dedup.write as write

    paths, *_ = _corpus(tmp_path, per_shard=25)
    seen = []
    real = work.rows_per_batch

    def spy(pf, batch_bytes):
        seen.append(batch_bytes)
        return real(pf, batch_bytes)

    monkeypatch.setattr(sign, "rows_per_batch", spy)
    monkeypatch.setattr(write, "rows_per_batch", spy)
    run_dedup(paths, tmp_path / "out", DedupConfig(batch_bytes=1 << 17))
    assert len(seen) >= 2 * len(paths)  # sign and write phases, every shard
    assert set(seen) == {1 << 17}


class _Killed(Exception):
    pass


class _DyingMapper:
    """Runs units inline and dies (like a killed worker) once `budget` units have finished."""

    def __init__(self, budget: int):
        self.budget, self.ran = budget, []

    def __call__(self, phase, fn, arg_lists):
        out = []
        for args in arg_lists:
            if len(self.ran) >= self.budget:
                raise _Killed(phase)
            out.append(fn(*args))
            self.ran.append((phase, args[2]))
        return out


def _files_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for folder in ("dedup", "clusters", "rejected")
            for p in sorted((root / folder).glob("*.parquet"))}


@pytest.mark.parametrize("partitions", [None, 3])
def test_killed_dedup_resumes_from_its_finished_units(tmp_path, partitions):
    """A dedup killed between units reruns only the units it had not finished, and its outputs
    equal an uninterrupted run's whatever the partition count."""
    paths, *_ = _corpus(tmp_path, per_shard=25)
    cfg = DedupConfig(partitions=partitions)
    fresh = run_dedup(paths, tmp_path / "fresh", cfg)
    total = _DyingMapper(10**9)
    run_dedup(paths, tmp_path / "count", cfg, mapper=total, key="k")
    dying = _DyingMapper(len(total.ran) // 2)
    with pytest.raises(_Killed):
        run_dedup(paths, tmp_path / "out", cfg, mapper=dying, key="k")
    again = _DyingMapper(10**9)
    resumed = run_dedup(paths, tmp_path / "out", cfg, mapper=again, key="k")
    assert len(again.ran) == len(total.ran) - len(dying.ran)  # nothing finished ran twice
    assert not set(again.ran) & set(dying.ran)
    assert _files_bytes(tmp_path / "out") == _files_bytes(tmp_path / "fresh")
    assert resumed.model_dump(exclude={"seconds", "timings", "peak_rss_mb_after"}) == \
        fresh.model_dump(exclude={"seconds", "timings", "peak_rss_mb_after"})
    # another key (config, inputs or code changed) never trusts the scratch state
    other = _DyingMapper(10**9)
    run_dedup(paths, tmp_path / "out", cfg, mapper=other, key="k2")
    assert len(other.ran) == len(total.ran)
