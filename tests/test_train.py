"""The training loop end to end: outputs, exact resume (also after SIGKILL), bad input, evaluation."""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from model.data import DataError
from model.evaluate import evaluate
from model.metrics import read_metrics
from model.train import main, train
from model_fixtures import make_corpus, novel_text, train_tokenizer

REPO = Path(__file__).resolve().parents[1]
TINY = dict(n_layer=2, n_head=2, n_embd=64, block_size=64, batch_size=8, progress=False)


# Tiny models: one torch thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus") / "data")


def losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl")}


def test_train_writes_run_folder_and_learns(corpus_dir, tmp_path):
    run = tmp_path / "run"
    s = train(corpus_dir, run, max_steps=40, checkpoint_every=15, warmup_steps=5, **TINY)
    assert s["steps"] == 40 and s["tokens_seen"] == 40 * 8 * 64
    m = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in m] == list(range(1, 41))
    assert {"step", "loss", "lr", "tokens_per_s"} <= set(m[0])
    assert sum(r["loss"] for r in m[-5:]) / 5 < m[0]["loss"] - 0.7  # it learns
    assert [st for st, _ in list_checkpoints(run)] == [30, 40]  # every 15, the end, keep 2
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["final_step"] == 40
    corpus = info["corpus"]
    assert corpus["recipe_hash"] == "test-recipe-0001"
    assert corpus["manifest_sha256"] and len(corpus["manifest_sha256"]) == 64
    assert {sh["path"] for sh in corpus["shards"]} >= {"tokens/train/part-00000.parquet", "tokens/val/part-00000.parquet"}
    assert all(sh["sha256"] for sh in corpus["shards"])
    ck = load_checkpoint(run / "checkpoints" / "step-00000040.pt")
    assert ck["data"][0]["epoch"] >= 0 and "torch" in ck["rng"][0]
    assert ck["corpus"]["tokenizer_sha256"] == corpus["tokenizer_sha256"]


def test_resume_in_process_is_bit_identical(corpus_dir, tmp_path):
    cfg = dict(TINY, checkpoint_every=4, decay_steps=12, warmup_steps=3, dropout=0.1)  # dropout: RNG must resume too
    train(corpus_dir, tmp_path / "a", max_steps=12, **cfg)
    train(corpus_dir, tmp_path / "b", max_steps=6, **cfg)
    s = train(corpus_dir, tmp_path / "b", max_steps=12, **cfg)  # same folder: resumes at 6 (checkpoint at end)
    assert s["start_step"] == 6
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    # A finished run rerun does nothing and keeps its metrics.
    again = train(corpus_dir, tmp_path / "b", max_steps=12, **cfg)
    assert again["start_step"] == 12 and losses(tmp_path / "b") == losses(tmp_path / "a")


def _cli(data, out, steps):
    return [sys.executable, "-m", "model.train", "--data", str(data), "--out", str(out), "--max-steps", str(steps),
            "--checkpoint-every", "5", "--n-layer", "2", "--n-head", "2", "--n-embd", "64", "--block-size", "64",
            "--batch-size", "8", "--threads", "1", "--no-progress"]


@pytest.mark.slow
def test_sigkill_then_resume_gives_identical_losses(corpus_dir, tmp_path):
    steps = 80
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # The uninterrupted reference runs in this process (one thread, like the --threads 1 CLI runs).
    train(corpus_dir, tmp_path / "full", max_steps=steps, checkpoint_every=5, **TINY)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(corpus_dir, killed, steps), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if max(losses(killed), default=0) >= 13:  # two checkpoints (5, 10) behind it
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    at_kill = max(losses(killed))
    assert at_kill < steps, "the run ended before it was killed"
    resumed_from = list_checkpoints(killed)[-1][0]
    assert resumed_from < steps

    again = subprocess.run(_cli(corpus_dir, killed, steps), cwd=REPO, env=env, capture_output=True)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    summary = json.loads(again.stdout)
    assert summary["start_step"] == resumed_from
    a, b = losses(tmp_path / "full"), losses(killed)
    assert list(b) == list(range(1, steps + 1))  # steps logged after the checkpoint were redone, not doubled
    assert a == b  # bit-identical: floats from JSON compare exactly


# ---------------------------------------------------------------------------- bad input
def _copy(corpus_dir, tmp_path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(corpus_dir, dst)
    return dst


def _assert_no_step(run: Path):
    assert not list_checkpoints(run)
    assert not read_metrics(run / "metrics.jsonl")


def test_missing_and_empty_shards_fail_before_training(corpus_dir, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        train(tmp_path / "nope", tmp_path / "r0", **TINY)

    d = _copy(corpus_dir, tmp_path)
    (d / "tokens" / "train" / "part-00001.parquet").unlink()
    with pytest.raises(DataError, match=r"part-00001.parquet is listed in .*index.json but missing"):
        train(d, tmp_path / "r1", **TINY)

    shutil.rmtree(d / "tokens" / "train")
    index = json.loads((d / "tokens" / "index.json").read_text())
    index["shards"] = [e for e in index["shards"] if e["split"] == "val"]
    (d / "tokens" / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="no training shards"):
        train(d, tmp_path / "r2", **TINY)

    (d / "tokens" / "train").mkdir()
    empty = pq.read_table(d / "tokens" / "val" / "part-00000.parquet").slice(0, 0)
    pq.write_table(empty, d / "tokens" / "train" / "part-00000.parquet")
    with pytest.raises(DataError, match="hold no tokens"):
        train(d, tmp_path / "r3", **TINY)
    for r in ("r0", "r1", "r2", "r3"):
        _assert_no_step(tmp_path / r)


def test_vocabulary_larger_than_model_fails(corpus_dir, tmp_path):
    with pytest.raises(DataError, match=r"corpus vocabulary \(512 tokens\) is larger than the model's vocab_size=256"):
        train(corpus_dir, tmp_path / "r", vocab_size=256, **TINY)
    # A shard holding ids beyond the vocabulary is named before any optimizer step.
    d = _copy(corpus_dir, tmp_path)
    shard = d / "tokens" / "train" / "part-00000.parquet"
    t = pq.read_table(shard)
    bad = pa.array([[1, 2, 700, 3] * 40], type=t.schema.field("input_ids").type)
    t = pa.table({"id": ["bad-doc"], "input_ids": bad, "n_tokens": pa.array([160], pa.int32())}, schema=t.schema)
    pq.write_table(t, shard)
    with pytest.raises(DataError, match=r"part-00000.parquet holds token id 700, beyond the model's vocabulary"):
        train(d, tmp_path / "r2", **TINY)
    _assert_no_step(tmp_path / "r2")


def test_mismatched_tokenizer_fails(corpus_dir, tmp_path):
    d = _copy(corpus_dir, tmp_path)
    other = train_tokenizer([novel_text()[:100_000]], 300)
    other.save(str(d / "tokenizer.json"))
    with pytest.raises(DataError, match=r"tokenizer mismatch: .*tokenizer.json has \d+ tokens but .*vocab_size=512"):
        train(d, tmp_path / "r", **TINY)

    # Same vocabulary size, different merges: caught when resuming or evaluating a run.
    run = tmp_path / "run"
    train(corpus_dir, run, max_steps=2, **TINY)
    d2 = _copy(corpus_dir, tmp_path / "x")
    train_tokenizer([novel_text()], 512).save(str(d2 / "tokenizer.json"))
    with pytest.raises(DataError, match="tokenizer mismatch"):
        train(d2, run, max_steps=4, **TINY)
    with pytest.raises(DataError, match="tokenizer mismatch"):
        evaluate(run, d2)
    assert [st for st, _ in list_checkpoints(run)] == [2]


def test_corrupt_checkpoint_fails_clearly(corpus_dir, tmp_path):
    run = tmp_path / "run"
    train(corpus_dir, run, max_steps=4, checkpoint_every=2, **TINY)
    latest = run / "checkpoints" / "step-00000004.pt"
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])
    before = read_metrics(run / "metrics.jsonl")
    with pytest.raises(CheckpointError, match=r"step-00000004.pt is corrupt"):
        train(corpus_dir, run, max_steps=8, **TINY)
    assert read_metrics(run / "metrics.jsonl") == before
    assert main(["--data", str(corpus_dir), "--out", str(run), "--max-steps", "8", "--n-layer", "2",
                 "--n-head", "2", "--n-embd", "64", "--block-size", "64", "--batch-size", "8"]) == 2


def test_changed_settings_refuse_to_resume(corpus_dir, tmp_path):
    train(corpus_dir, tmp_path / "run", max_steps=2, **TINY)
    with pytest.raises(CheckpointError, match="batch_size: checkpoint 8, now 4"):
        train(corpus_dir, tmp_path / "run", max_steps=4, **dict(TINY, batch_size=4))


def test_cli_reports_bad_input(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------------------- evaluation
def test_evaluate_writes_metrics_report_and_samples(corpus_dir, tmp_path):
    from tokenizers import Tokenizer

    run = tmp_path / "run"
    train(corpus_dir, run, max_steps=30, warmup_steps=5, **TINY)
    r = evaluate(run)
    saved = json.loads((run / "eval.json").read_text())
    assert {"val_loss", "val_perplexity", "val_bits_per_byte", "tokens_seen", "samples"} <= set(saved)
    assert saved["tokens_seen"] == 30 * 8 * 64
    assert r["val_perplexity"] == pytest.approx(math.exp(r["val_loss"]))
    assert math.log(512) > r["val_loss"] > 2.0

    # bits per byte = total nats / ln 2 / UTF-8 bytes of the decoded targets.
    tok = Tokenizer.from_file(str(corpus_dir / "tokenizer.json"))
    ids = pq.read_table(corpus_dir / "tokens" / "val" / "part-00000.parquet").column("input_ids").to_pylist()
    stream = [i for doc in ids for i in doc]
    n_bytes = len(tok.decode(stream[1:], skip_special_tokens=True).encode("utf-8"))
    assert r["val_tokens"] == len(stream) - 1 and r["val_bytes"] == n_bytes
    assert r["val_bits_per_byte"] == pytest.approx(r["val_loss"] * r["val_tokens"] / math.log(2) / n_bytes)

    assert len(r["samples"]) >= 3 and all(isinstance(s["completion"], str) for s in r["samples"])
    assert evaluate(run)["samples"] == r["samples"]  # fixed seed: the same text
    report = (run / "report.md").read_text()
    assert "bits per byte" in report and "test-recipe-0001" in report and "loss.png" in report


@pytest.mark.slow
def test_ddp_two_ranks_on_cpu_trains_and_resumes(corpus_dir, tmp_path):
    """torchrun with 2 CPU ranks (gloo): gradient accumulation with no_sync, per-rank data
    positions in the checkpoint, and a resume from it."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    run = tmp_path / "ddp"

    def launch(steps):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "model.train", "--data", str(corpus_dir), "--out", str(run), "--max-steps", str(steps),
               "--checkpoint-every", "3", "--grad-accum", "4", "--n-layer", "2", "--n-head", "2", "--n-embd", "64",
               "--block-size", "64", "--batch-size", "4", "--threads", "1", "--no-progress", "--device", "cpu"]
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]

    launch(3)
    ck = load_checkpoint(run / "checkpoints" / "step-00000003.pt")
    assert [d["rank"] for d in ck["data"]] == [0, 1] and all(d["world_size"] == 2 for d in ck["data"])
    assert ck["tokens_seen"] == 3 * 4 * 4 * 64
    launch(6)
    assert list(losses(run)) == list(range(1, 7))
    assert json.loads((run / "run.json").read_text())["resumed_from_step"] == 3


def test_one_mechanism_for_training_settings(corpus_dir, tmp_path, capsys):
    """TrainConfig is the only place an option lives: every field is a flag of `opencorpus
    train` (with its help), a key of a recipe's `train:` section (preset, then recipe, then
    command line), and the fine-tuning flags it shares carry the same help."""
    import argparse
    import dataclasses

    from flows.cli import main as cli_main
    from model.config import TrainConfig, help_of
    from model.tasks import add_finetune_arguments
    from model.train import build_parser

    flags = {a.dest: a for a in build_parser()._actions}
    for f in dataclasses.fields(TrainConfig):
        assert f.name in flags, f"TrainConfig.{f.name} has no --{f.name.replace('_', '-')} flag"
        assert flags[f.name].help.startswith(help_of(f.name))
    ft = argparse.ArgumentParser()
    add_finetune_arguments(ft)
    ft_flags = {a.dest: a for a in ft._actions}
    assert ft_flags["min_lr"].help.startswith(help_of("min_lr")) and "(default 32)" in ft_flags["batch_size"].help

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nsources: [{name: s, type: text, paths: ['*.txt']}]\n"
                      "train: {preset: cpu-tiny, max_steps: 3, lr: 0.005, n_layer: 1, n_head: 2, n_embd: 32, "
                      "block_size: 32, batch_size: 4, progress: false}\n", encoding="utf-8")
    run = tmp_path / "run"
    assert cli_main(["train", "--recipe", str(recipe), "--data", str(corpus_dir), "--out", str(run),
                     "--max-steps", "2"]) == 0
    config = json.loads((run / "run.json").read_text())["config"]
    assert (config["max_steps"], config["lr"], config["n_layer"]) == (2, 0.005, 1)  # the command line wins

    recipe.write_text(recipe.read_text().replace("lr: 0.005", "learning_rate: 0.005"), encoding="utf-8")
    capsys.readouterr()
    assert cli_main(["train", "--recipe", str(recipe), "--data", str(corpus_dir), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert str(recipe) in err and "learning_rate" in err


def test_second_trainer_on_a_run_folder_exits_naming_the_holder(corpus_dir, tmp_path, capsys):
    """Two trainers on one run folder would interleave checkpoints: the second one stops at once."""
    import fcntl

    from model.train import main

    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".lock", "a+") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.write("pid 4242 on elsewhere\n")
        holder.flush()
        with pytest.raises(CheckpointError, match="being trained by pid 4242 on elsewhere"):
            train(corpus_dir, run, max_steps=2, **TINY)
        assert main(["--data", str(corpus_dir), "--out", str(run), "--max-steps", "2"]) == 2
        assert "being trained by pid 4242" in capsys.readouterr().err
    assert not list_checkpoints(run)
    train(corpus_dir, run, max_steps=2, **TINY)  # released: the run goes ahead
    assert list_checkpoints(run)
