"""Resume: real `opencorpus run` processes killed (SIGKILL, whole process group) at several
points; the rerun skips the finished units and ends byte-identical to an uninterrupted run."""
from __future__ import annotations

from pathlib import Path

import pytest

from flows.progress import progress_path, read_events
from orchestration_support import cli, run_until_killed, small_recipe, snapshot

pytestmark = pytest.mark.slow


def _run_until(cmd: list[str], ready, log: Path, timeout: float = 300) -> dict:
    """Start `cmd`, SIGKILL its process group as soon as `ready()` holds; the run's events."""
    run_until_killed(cmd, ready, log, timeout)
    return read_events(progress_path(Path(cmd[cmd.index("--output") + 1])))


def _cached(events: list[dict], stage: str) -> int:
    return next((e["cached_units"] for e in events if e["event"] == "stage_start" and e["stage"] == stage), -1)


def test_killed_runs_resume_to_identical_outputs(tmp_path, corpora, prefect_api):
    from flows.corpus import run_corpus

    recipe = small_recipe(tmp_path, corpora)
    ref, out = tmp_path / "ref", tmp_path / "out"
    done = out / ".opencorpus" / "done"
    cmd = cli("run", str(recipe), "--output", str(out), "--workers", "2", "--cards-dir", "")
    # 1. during ingest: as soon as one source is recorded
    _run_until(cmd, lambda: any((done / "ingest").glob("*.json")), tmp_path / "kill1.log")
    assert not (out / "manifest.json").exists()
    # 2. during clean: the sources finished before are reused, then killed after a first clean
    # shard. The head start may finish a clean shard before the flow run has reported its ingest
    # stage, so the kill also waits for that report (what this step checks).
    def clean_shard_and_ingest_reported():
        return any((done / "clean").glob("*.json")) and _cached(read_events(progress_path(out)), "ingest") != -1

    events = _run_until(cmd, clean_shard_and_ingest_reported, tmp_path / "kill2.log")
    assert _cached(events, "ingest") >= 1
    # 3. during tokenizer training / encoding: dedup recorded, the run killed right after
    events = _run_until(cmd, lambda: (done / "dedup" / "all.json").exists(), tmp_path / "kill3.log")
    assert _cached(events, "clean") >= 1
    assert not (out / "manifest.json").exists()

    final = run_corpus(str(recipe), str(out), workers=2, cards_dir=None)
    # The uninterrupted run, right after (the same code: keys are computed from it).
    reference = run_corpus(str(recipe), str(ref), workers=2, cards_dir=None)
    n_sources, n_shards = reference.resume["ingest"].units, reference.resume["clean"].units
    assert n_sources == 4 and n_shards >= 5
    resume = final.dump()["resume"]
    assert resume["ingest"] == {"units": n_sources, "reused": n_sources}
    assert resume["clean"] == {"units": n_shards, "reused": n_shards}
    assert resume["dedup"] == {"units": 1, "reused": 1}
    assert snapshot(out) == snapshot(ref)
    assert not list(out.rglob(".tmp-*")), "a killed write left a temporary file that was not cleaned up"
    for stage in ("ingest", "clean", "dedup", "tokenize"):
        for key in ("docs_in", "docs_out", "docs_rejected", "bytes_in", "bytes_out"):
            assert getattr(getattr(final.stages, stage), key) == getattr(getattr(reference.stages, stage), key), (stage, key)
