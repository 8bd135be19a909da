"""The head start (flows/head_start.py): `opencorpus run` begins its ingest and clean units on the
pool before the Prefect flow run exists, and the flow's tasks take their results.

It must change nothing but when the work starts: the same files as a run without it, the units
counted as run (not reused), a finished folder's units not run again, and, when the flow plans a
unit the head start did not (an input changed in between), none of the head start's units used."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from orchestration_support import cli, cli_env, small_recipe, snapshot


def _events(out: Path, kind: str) -> dict[str, int]:
    """The last run's events of this kind: {stage: units}."""
    events = [json.loads(line) for line in (out / ".opencorpus" / "progress.jsonl").read_text().splitlines()]
    last = max(i for i, e in enumerate(events) if e["event"] == "run_start")
    return {e["stage"]: e["units"] for e in events[last:] if e["event"] == kind}


def _locked_by_another(out: Path) -> bool:
    """What another process would find: the folder's lock held (flock locks are per open file)."""
    import fcntl

    with open(out / ".opencorpus" / "lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def _run(recipe: Path, out: Path, head_start: bool = True) -> dict:
    env = cli_env()
    env["OPENCORPUS_HEAD_START"] = "1" if head_start else "0"
    proc = subprocess.run(cli("run", str(recipe), "--output", str(out), "--workers", "2"), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "manifest.json").read_text())


def test_units_begun_before_the_flow_run_are_run_not_reused_and_change_no_byte(tmp_path, corpora, prefect_api):
    recipe = small_recipe(tmp_path, corpora)
    early, plain = tmp_path / "early", tmp_path / "plain"
    manifest = _run(recipe, early)
    ingest_units, clean_units = manifest["resume"]["ingest"]["units"], manifest["resume"]["clean"]["units"]
    assert ingest_units == 4 and clean_units > 4
    # Every ingest and clean unit began before the flow run, and its task took its result.
    assert _events(early, "head_start") == {"ingest": ingest_units, "clean": clean_units}
    assert manifest["resume"]["ingest"]["reused"] == 0 and manifest["resume"]["clean"]["reused"] == 0
    # The card's stage time counts from when the work began, not from when the flow got there.
    ingest = manifest["stages"]["ingest"]
    assert ingest["seconds"] >= max(source["seconds"] for source in ingest["sources"].values())

    _run(recipe, plain, head_start=False)
    assert not _events(plain, "head_start")
    assert snapshot(early) == snapshot(plain)

    # A finished folder: the head start starts nothing, every unit is reused.
    again = _run(recipe, early)
    assert not _events(early, "head_start")
    assert again["resume"]["ingest"] == {"units": ingest_units, "reused": ingest_units}
    assert again["resume"]["clean"] == {"units": clean_units, "reused": clean_units}


def test_an_input_changed_after_the_head_start_began_is_read_by_the_flow(tmp_path, corpora, prefect_api):
    """The head start has planned (and may have run) units on the old input; the flow plans other
    keys, abandons the head start and runs every unit itself, on what the file holds now."""
    from flows import head_start, pool
    from flows.corpus import run_corpus
    import random

    rng = random.Random(7)
    words = ("river stone market winter garden letter harbour engine village summer paper lantern "
             "orchard bridge kettle meadow signal copper window basket").split()

    def document(i: int) -> str:  # prose enough for the default filters, each its own
        sentences = ["The {} by the {} was {} and {}, with a {} of {} that {} had.".format(
            *(rng.choice(words) for _ in range(7))) for _ in range(12)]
        return f"Note {i}. " + " ".join(sentences)

    source = tmp_path / "docs.jsonl"
    lines = [json.dumps({"text": document(i)}) for i in range(30)]
    source.write_text("\n".join(lines) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"name": "changed", "sources": [{"name": "docs", "type": "jsonl", "paths": [str(source)]}],
                                  "ingest": {"shard_docs": 10},
                                  "tokenize": {"vocab_size": 300, "val_fraction": 0.1}}))
    out = tmp_path / "out"
    pool.prestart()
    try:
        assert head_start.start(str(recipe), str(out), 2)
        assert _locked_by_another(out)  # the head start holds the folder before the flow claims it
        source.write_text("\n".join(lines + [json.dumps({"text": document(30)})]) + "\n")
        manifest = run_corpus(str(recipe), str(out), workers=2, cards_dir=None)
    finally:
        head_start.finish()
    assert manifest.stages.ingest.docs_in == 31
    assert not _events(out, "head_start")
    assert manifest.resume["ingest"].reused == 0
    assert head_start._current is None and not pool.early_tags()
    assert not _locked_by_another(out)  # let go of when the run ended
