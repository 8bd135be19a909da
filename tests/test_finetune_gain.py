"""What pretraining buys, measured: a masked-LM encoder pretrained on a corpus built from
../shared/corpora (lingua sentences, tokenized by the pipeline's tokenize stage) against
the same architecture trained from scratch, with fixed seeds, on the two shipped tasks.

Language ID (16 Latin-script languages, few examples per class): the pretrained model
must beat scratch, on every seed. PAWS-X German: measured and reported (see
docs/mlm_finetune.md), not asserted: at this scale neither model gets clearly above the
majority class, and a test that demanded a gain there would be testing noise.

The task sentences never occur in the pretraining corpus (checked below).
"""
from __future__ import annotations

import json

import pytest

from conftest import require_shared, shipped_task

pytestmark = pytest.mark.slow

SEEDS = (0, 1)
PRETRAIN = dict(objective="mlm", n_layer=2, n_head=4, n_embd=128, block_size=128, batch_size=16, lr=3e-3,
                min_lr=3e-4, warmup_steps=30, checkpoint_every=10_000, progress=False, threads=1)
PRETRAIN_STEPS = 1200
SKIP_LINES = 100  # pretraining uses lines 100.. of each language; the task the first 80
LID = dict(max_per_class=80, split=dict(validation=0.1, test=0.6, seed=0))
LID_SETTINGS = dict(epochs=10, lr=5e-4, batch_size=32, max_len=64)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    require_shared()
    from mlm_corpus import LANGUAGES, build_lingua_corpus

    from model.train import train

    root = tmp_path_factory.mktemp("gain")
    data = build_lingua_corpus(root / "data", LANGUAGES, skip_lines=SKIP_LINES, vocab_size=2048)
    train(data, root / "mlm", max_steps=PRETRAIN_STEPS, **PRETRAIN)
    return root


def _lid_task():
    from mlm_corpus import LANGUAGES

    from model.tasks import load_task

    t = load_task(shipped_task("lingua_langid.yaml"), **LID_SETTINGS)
    return t.model_copy(update={
        "source": t.source.model_copy(update={"classes": LANGUAGES, "max_per_class": LID["max_per_class"]}),
        "split": t.split.model_copy(update=LID["split"]),
    })


def test_task_sentences_are_not_in_the_pretraining_corpus(pretrained):
    import pyarrow.parquet as pq

    from model.tasks import load_task_data

    docs = " ".join(pq.read_table(pretrained / "data" / "dedup").column("text").to_pylist())
    task = load_task_data(_lid_task())
    for split in ("train", "test"):
        leaked = [t for t in task.splits[split].text_a if t in docs]
        assert not leaked, leaked[:3]


@pytest.mark.parametrize("seed", SEEDS)
def test_pretrained_beats_scratch_on_language_id(pretrained, seed):
    from model.finetune import finetune

    r = finetune(pretrained / "mlm", _lid_task(), pretrained / f"lid-{seed}", from_scratch=True, seed=seed,
                 progress=False)
    print(f"\nlanguage ID seed {seed}: pretrained {r['accuracy']:.4f}, scratch {r['scratch_accuracy']:.4f}, "
          f"gain {r['accuracy_gain']:+.4f} over {r['splits']['test']['examples']} test sentences")
    assert r["splits"]["test"]["examples"] == 16 * 48
    assert r["accuracy_gain"] > 0, json.dumps({k: r[k] for k in ("accuracy", "scratch_accuracy")})


def test_pawsx_is_measured_and_reported(pretrained):
    from model.finetune import finetune

    r = finetune(pretrained / "mlm", shipped_task("pawsx_de.yaml"), pretrained / "paws",
                 from_scratch=True, seed=0, progress=False, epochs=2)
    print(f"\nPAWS-X de: pretrained {r['accuracy']:.4f}, scratch {r['scratch_accuracy']:.4f}, "
          f"majority {r['majority_class_accuracy']:.4f}")
    assert r["pairs"] and r["splits"]["test"]["examples"] == 400
    assert r["majority_class_accuracy"] == pytest.approx(234 / 400)
    report = (pretrained / "paws" / "report.md").read_text()
    assert "What pretraining bought" in report and "majority class" in report
