"""A run through the real flow and CLI, on folders and inputs that go wrong: an empty or
fully rejected corpus still gets its manifest and card, a folder of the user's is refused
(and its files are never deleted under --force), a second run on a held folder is refused
naming the holder, and the temporary files a killed run left are removed by the rerun."""
from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest
import yaml

from flows.state import OutputFolderError

PY_SOURCE = {"name": "py", "type": "python-env", "packages": ["idna"], "stdlib": False, "include": ["code", "docs"]}


def recipe_file(folder: Path, **sections) -> Path:
    data = {"name": "safety", "sources": [PY_SOURCE], "ingest": {"shard_docs": 10},
            "tokenize": {"vocab_size": 512, "val_fraction": 0.1}} | sections
    path = folder / "r.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory, prefect_api):
    """One finished corpus, built through the flow."""
    from flows.corpus import run_corpus

    root = tmp_path_factory.mktemp("safety")
    recipe = recipe_file(root)
    run_corpus(str(recipe), str(root / "out"), workers=1, cards_dir=None)
    return recipe, root / "out"


def test_empty_source_and_fully_rejected_corpus_write_manifest_and_card(tmp_path, prefect_api, capsys):
    from flows.cli import main
    from flows.corpus import EmptyCorpusError, run_corpus

    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    recipe = recipe_file(tmp_path, sources=[{"name": "nothing", "type": "jsonl", "paths": ["empty.jsonl"]}])
    with pytest.raises(EmptyCorpusError, match="ingest left no document: the sources hold no document"):
        run_corpus(str(recipe), str(tmp_path / "a"), workers=1, cards_dir=None)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["stages"]["ingest"]["docs_out"] == 0 and manifest["stages"]["clean"] is None
    assert "| ingest | 0 | 0 | 0 |" in (tmp_path / "a" / "README.md").read_text()

    recipe = recipe_file(tmp_path, clean={"min_chars": 10_000_000})
    capsys.readouterr()
    assert main(["run", str(recipe), "--output", str(tmp_path / "b"), "--workers", "1", "--cards-dir", ""]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "clean left no document" in err[0] and "min_chars" in err[0]
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    clean = manifest["stages"]["clean"]
    assert clean["docs_out"] == 0 and clean["docs_rejected"] == clean["docs_in"] > 0
    assert clean["rejected_by_filter"]["min_chars"] > 0 and manifest["stages"]["dedup"] is None
    card = (tmp_path / "b" / "README.md").read_text()
    assert "`min_chars`" in card  # the funnel of what was removed and why is on the card


def test_users_folder_is_refused_and_never_emptied(tmp_path, prefect_api, capsys):
    from flows.cli import main
    from flows.corpus import run_corpus

    recipe = recipe_file(tmp_path)
    mine = tmp_path / "mine"
    (mine / "documents").mkdir(parents=True)
    notes = mine / "notes.txt"
    notes.write_text("my notes")
    lookalike = mine / "documents" / "part-py-00099.parquet"  # our naming, not ours
    lookalike.write_bytes(b"not a shard of opencorpus")
    capsys.readouterr()
    assert main(["run", str(recipe), "--output", str(mine), "--workers", "1", "--cards-dir", ""]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [line for line in err if line.startswith("error:")] and "--force" in err[-1]
    assert not (mine / ".opencorpus").exists()

    run_corpus(str(recipe), str(mine), workers=1, cards_dir=None, force=True)
    recipe = recipe_file(tmp_path, ingest={"shard_docs": 7})  # other shards: the old ones are pruned
    run_corpus(str(recipe), str(mine), workers=1, cards_dir=None, force=True)
    assert notes.read_text() == "my notes" and lookalike.read_bytes() == b"not a shard of opencorpus"
    ours = sorted(p.name for p in (mine / "documents").glob("part-py-*.parquet"))
    manifest = json.loads((mine / "manifest.json").read_text())
    assert sorted(Path(s).name for s in manifest["stages"]["ingest"]["sources"]["py"]["shards"]) + [lookalike.name] == ours

    file_out = tmp_path / "a-file"
    file_out.write_text("x")
    assert main(["run", str(recipe), "--output", str(file_out)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_held_folder_is_refused_naming_the_holder(built):
    from flows.state import claim_output

    recipe, out = built
    with open(out / ".opencorpus" / "lock", "a+") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other.seek(0)
        other.truncate()
        other.write("pid 4242 on elsewhere\n")
        other.flush()
        with pytest.raises(OutputFolderError, match="being built by pid 4242 on elsewhere"):
            with claim_output(out):
                pass


def test_rerun_removes_temporary_files_a_killed_run_left(built):
    from flows.corpus import run_corpus

    recipe, out = built
    stale_file = out / "clean" / ".tmp-part-py-00000.parquet.k1ll3d"
    stale_file.write_bytes(b"half a shard")
    stale_dir = out / ".tmp-tokens.k1ll3d"
    (stale_dir / "train").mkdir(parents=True)
    (stale_dir / "train" / "part-00000.parquet").write_bytes(b"half")
    run_corpus(str(recipe), str(out), workers=1, cards_dir=None)
    assert not stale_file.exists() and not stale_dir.exists()
    assert not [p for p in out.rglob(".tmp-*") if ".opencorpus" not in p.parts]
