"""Change detection: editing one stage's config reruns that stage and what follows, not
what precedes; after any sequence of edits the folder equals a fresh build of the recipe."""
from __future__ import annotations

import pytest

from orchestration_support import small_recipe, snapshot

pytestmark = pytest.mark.slow


def _reran(manifest) -> dict[str, bool]:
    """Stage -> whether any unit ran in this build (False: every unit was reused)."""
    return {stage: r.reused < r.units for stage, r in manifest.resume.items()}


def test_config_edits_rerun_the_stage_and_what_follows(tmp_path, corpora, prefect_api):
    from flows.corpus import run_corpus

    out = tmp_path / "out"

    def build(**overrides) -> dict:
        recipe = small_recipe(tmp_path / "recipes", corpora, **overrides)
        return run_corpus(str(recipe), str(out), workers=1, cards_dir=None)

    first = build()
    assert all(_reran(first).values())
    again = build()
    assert not any(_reran(again).values()), again.resume

    # encoding-only option: the tokenizer is kept, the token shards are rewritten
    tok = {"tokenize": {"shard_tokens": 5000}}
    assert _reran(build(**tok)) == {"ingest": False, "clean": False, "dedup": False, "tokenizer": False, "tokenize": True}

    # dedup off: dedup and everything after it rerun, ingest and clean are reused
    dedup = {"dedup": {"exact": False, "minhash": None}}
    m = build(**tok, **dedup)
    assert _reran(m) == {"ingest": False, "clean": False, "dedup": True, "tokenizer": True, "tokenize": True}
    assert m.stages.dedup.docs_rejected == 0

    # a clean rule: clean and what follows rerun, ingest is reused
    clean = {"clean": {"min_chars": 3000}}
    m = build(**tok, **dedup, **clean)
    assert _reran(m) == {"ingest": False, "clean": True, "dedup": True, "tokenizer": True, "tokenize": True}

    # a source dropped: its shards leave every folder; nothing else is redone
    recipe = small_recipe(tmp_path / "recipes", corpora, **tok, **dedup, **clean)
    import yaml

    data = yaml.safe_load(recipe.read_text())
    data["sources"] = [s for s in data["sources"] if s["name"] != "botchan_copy"]
    recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    m = run_corpus(str(recipe), str(out), workers=1, cards_dir=None)
    assert m.dump()["resume"]["ingest"] == {"units": 3, "reused": 3}
    assert m.resume["clean"].reused == m.resume["clean"].units
    assert not list(out.rglob("*botchan_copy*"))

    # incremental == from scratch
    fresh = tmp_path / "fresh"
    run_corpus(str(recipe), str(fresh), workers=1, cards_dir=None)
    assert snapshot(out) == snapshot(fresh)
