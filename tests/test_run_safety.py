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


def test_empty_source_and_fully_rejected_corpus_write_manifest_and_card(tmp_path, prefect_api, capfd):
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
    capfd.readouterr()
    assert main(["run", str(recipe), "--output", str(tmp_path / "b"), "--workers", "1", "--cards-dir", ""]) == 1
    err = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "clean left no document" in err[0] and "min_chars" in err[0]
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    clean = manifest["stages"]["clean"]
    assert clean["docs_out"] == 0 and clean["docs_rejected"] == clean["docs_in"] > 0
    assert clean["rejected_by_filter"]["min_chars"] > 0 and manifest["stages"]["dedup"] is None
    card = (tmp_path / "b" / "README.md").read_text()
    assert "`min_chars`" in card  # the funnel of what was removed and why is on the card


def test_users_folder_is_refused_and_never_emptied(tmp_path, prefect_api, capfd):
    from flows.cli import main
    from flows.corpus import run_corpus

    recipe = recipe_file(tmp_path)
    mine = tmp_path / "mine"
    (mine / "documents").mkdir(parents=True)
    notes = mine / "notes.txt"
    notes.write_text("my notes")
    lookalike = mine / "documents" / "part-py-00099.parquet"  # our naming, not ours
    lookalike.write_bytes(b"not a shard of opencorpus")
    capfd.readouterr()
    assert main(["run", str(recipe), "--output", str(mine), "--workers", "1", "--cards-dir", ""]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert err == [line for line in err if line.startswith("error:")] and "--force" in err[-1]
    assert not (mine / ".opencorpus").exists()

    in_the_way = mine / "documents" / "part-py-00000.parquet"  # exactly the name of the run's first shard
    in_the_way.write_bytes(b"mine too")
    with pytest.raises(OutputFolderError, match="documents/part-py-00000.parquet"):
        run_corpus(str(recipe), str(mine), workers=1, cards_dir=None, force=True)
    assert in_the_way.read_bytes() == b"mine too"
    in_the_way.unlink()
    lookalike.rename(mine / "part-py-00099.parquet")  # beside the run's folders: never in its way
    lookalike = mine / "part-py-00099.parquet"

    run_corpus(str(recipe), str(mine), workers=1, cards_dir=None, force=True)
    written = (mine / ".opencorpus" / "written.txt").read_text().split()
    assert not [w for w in written if ".tmp-" in w] and "tokens/index.json" in written
    recipe = recipe_file(tmp_path, ingest={"shard_docs": 7})  # other shards: the old ones are pruned
    run_corpus(str(recipe), str(mine), workers=1, cards_dir=None, force=True)
    assert notes.read_text() == "my notes" and lookalike.read_bytes() == b"not a shard of opencorpus"
    ours = sorted(p.name for p in (mine / "documents").glob("part-py-*.parquet"))
    manifest = json.loads((mine / "manifest.json").read_text())
    assert sorted(Path(s).name for s in manifest["stages"]["ingest"]["sources"]["py"]["shards"]) == ours

    file_out = tmp_path / "a-file"
    file_out.write_text("x")
    assert main(["run", str(recipe), "--output", str(file_out)]) == 2
    assert "is a file, not a folder" in capfd.readouterr().err


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
            with claim_output(out):  # after waiting LOCK_WAIT_S for the holder to let go
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


def _session_members(session: int) -> list[int]:
    """Pids of the processes in a session (from /proc/PID/stat: field 6 is the session id)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return out


def _wait(predicate, timeout: float, step: float = 0.2) -> bool:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@pytest.mark.slow
def test_ctrl_c_and_kill_9_leave_no_process_behind(tmp_path):
    """Ctrl-C (SIGINT to the command's process group, as a terminal sends it) stops the run,
    its Prefect server and its pool workers within seconds; so does a kill -9 of the command.
    The rerun then completes with no temporary file left."""
    import os
    import random
    import signal
    import subprocess
    import sys

    rng = random.Random(7)
    words = "the river and the stone of the market with a garden to the light that was quiet in the north".split()
    with open(tmp_path / "docs.jsonl", "w", encoding="utf-8") as f:
        for i in range(3_000):
            text = ". ".join(" ".join(rng.choice(words) for _ in range(12)).capitalize() for _ in range(25)) + "."
            f.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
    recipe = recipe_file(tmp_path, sources=[{"name": "gen", "type": "jsonl", "paths": ["docs.jsonl"]}],
                         ingest={"shard_docs": 500})
    out = tmp_path / "out"
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"))
    env.pop("PREFECT_API_URL", None)  # its own temporary server, as a user's run has
    cmd = [sys.executable, "-m", "flows.cli", "run", str(recipe), "--output", str(out), "--workers", "2",
           "--cards-dir", ""]

    for how in ("ctrl-c", "kill -9"):
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        assert _wait(lambda: (out / ".opencorpus" / "progress.jsonl").exists() and len(_children(proc.pid)) > 0, 120)
        session = _children(proc.pid)[0]  # the supervised child leads a session of its own
        assert _wait(lambda: len(_session_members(session)) >= 3, 60)  # flow, Prefect server, pool workers
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(timeout=15) == 130
            assert "interrupted" in proc.stderr.read()
        else:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        assert _wait(lambda: not _session_members(session), 10), (how, _session_members(session))

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [p for p in out.rglob(".tmp-*") if ".opencorpus" not in p.parts]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["ingest"]["docs_in"] == 3_000


def test_full_disk_and_missing_run_are_one_line(tmp_path, monkeypatch, capsys):
    """A full disk (ENOSPC) and a missing run folder end in one line each, no traceback;
    --debug shows the traceback."""
    import errno

    import model.evaluate
    from flows.cli import main

    assert main(["eval", str(tmp_path / "no-such-run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no-such-run" in err[0]

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "eval.json"))

    monkeypatch.setattr(model.evaluate, "evaluate", full)
    assert main(["eval", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: no space left on the device writing {tmp_path / 'run' / 'eval.json'}"]
    with pytest.raises(OSError):
        main(["eval", str(tmp_path / "run"), "--debug"])


def test_run_writes_only_where_told(tmp_path, prefect_api, monkeypatch, capfd):
    """`opencorpus run FOLDER` (a folder holding recipe.yaml) run from any folder writes its
    output, and the card's copy only into --cards-dir when given: never ./data_cards of the
    current folder."""
    from flows.cli import main

    folder = tmp_path / "recipe"
    folder.mkdir()
    recipe_file(folder).rename(folder / "recipe.yaml")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert main(["run", str(folder), "--output", str(tmp_path / "out"), "--workers", "1"]) == 0, capfd.readouterr().err
    assert (tmp_path / "out" / "README.md").is_file()
    assert sorted(here.iterdir()) == []
    assert main(["run", str(here)]) == 2
    assert capfd.readouterr().err.strip() == f"error: {here}: a folder without a recipe.yaml; give the recipe file"


def test_version(capsys):
    from flows.cli import main
    from pipeline.manifest import code_version

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"opencorpus {code_version()}\n"


def test_run_a_recipe_url(tmp_path, prefect_api, monkeypatch, capfd):
    """A recipe URL is fetched by the downloader (a loopback one only when allowed); the
    manifest and the card name the URL, not a local copy."""
    from httpserver import FileServer

    from flows.cli import main
    from pipeline.recipe import ALLOW_PRIVATE_ENV

    recipe = recipe_file(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "0")  # the CLI flag sets it; restored after the test
    with FileServer({"/recipes": tmp_path}) as srv:
        url = srv.url("/recipes/r.yaml")
        assert main(["run", url, "--output", str(out), "--workers", "1"]) == 2
        assert "--allow-private-networks" in capfd.readouterr().err
        assert main(["run", url, "--output", str(out), "--workers", "1", "--allow-private-networks"]) == 0, \
            capfd.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe_path"] == url and manifest["name"] == "safety"
    assert f"\nopencorpus run {url} --output " in (out / "README.md").read_text()


def test_prefect_state_stays_out_of_the_users_home_and_the_server_starts_quietly(tmp_path):
    """`opencorpus run` outside make (no PREFECT_HOME, no API): Prefect's database goes to
    $OPENCORPUS_CACHE/prefect, nothing to ~/.prefect, and the temporary server's start and
    stop leave no line on the console. --help says where the state goes. Two workers: the
    process pool's log forwarder once started a second temporary server of its own."""
    import os
    import subprocess
    import sys

    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(HOME=str(home), OPENCORPUS_CACHE=str(cache), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(recipe_file(tmp_path)), "--output",
                           str(tmp_path / "out"), "--workers", "2"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (cache / "prefect" / "prefect.db").is_file()
    assert not (home / ".prefect").exists()
    assert "temporary server" not in proc.stderr, proc.stderr
    help_text = subprocess.run([sys.executable, "-m", "flows.cli", "--help"], env=env, capture_output=True,
                               text=True).stdout
    assert "$OPENCORPUS_CACHE/prefect" in help_text
