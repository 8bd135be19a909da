"""Fine-tuning: task files and their errors, every source format, metrics, the run folder,
resume, decoder and encoder heads, and the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.finetune import classification_metrics, encode_examples
from model.tasks import TaskError, load_task, load_task_data, stratified_split

from conftest import require_shared, shipped_task

TINY = dict(n_layer=1, n_head=2, n_embd=32, block_size=64, batch_size=4, warmup_steps=2, checkpoint_every=1000,
            progress=False, threads=1)


def _task_yaml(tmp_path: Path, body: str, name: str = "task.yaml") -> Path:
    p = tmp_path / name
    p.write_text(body, encoding="utf-8")
    return p


ROWS = [{"id": f"r{i}", "text": f"example number {i} " + ("good" if i % 2 else "bad"), "label": "pos" if i % 2 else "neg"}
        for i in range(40)]


# ---------------------------------------------------------------------------- task files
@pytest.mark.shared
def test_shipped_task_files_load():
    require_shared()
    paws = load_task_data(load_task(shipped_task("pawsx_de.yaml")))
    assert paws.pairs and paws.label_names == ["0", "1"]
    sizes = {k: len(v) for k, v in paws.splits.items()}
    assert sizes == {"train": 1400, "validation": 200, "test": 400}
    # stratified: the test split keeps the 1169:831 label ratio
    counts = paws.summary()["test"]["label_counts"]
    assert counts == {"0": 234, "1": 166}
    # the same seed gives the same split
    again = load_task_data(load_task(shipped_task("pawsx_de.yaml")))
    assert again.splits["test"].ids == paws.splits["test"].ids

    lid = load_task_data(load_task(shipped_task("lingua_langid.yaml")))
    assert not lid.pairs and len(lid.label_names) == 79 and "de" in lid.label_names
    assert not set(lid.splits["train"].ids) & set(lid.splits["test"].ids)


def test_stratified_split_keeps_every_class_in_training():
    labels = ["a"] * 50 + ["b"] * 10 + ["c"] * 1
    parts = stratified_split(labels, {"validation": 0.1, "test": 0.2}, seed=1)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(61))
    train = [labels[i] for i in parts["train"]]
    assert train.count("c") == 1 and [labels[i] for i in parts["test"]].count("a") == 10


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv", "parquet", "hf"])
def test_every_format_gives_the_same_examples(tmp_path, fmt):
    table = pa.Table.from_pylist(ROWS)
    if fmt == "jsonl":
        path = tmp_path / "d.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
        src = f"format: jsonl\n  path: {path.name}"
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, tmp_path / "d.csv")
        src = "format: csv\n  path: d.csv"
    elif fmt == "tsv":  # unquoted, as TSV dumps are: a quote inside a text is text
        rows = ["id\ttext\tlabel"] + [f"{r['id']}\t\"{r['text']}\t{r['label']}" for r in ROWS]
        (tmp_path / "d.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        src = "format: tsv\n  path: d.tsv"
    elif fmt == "parquet":
        pq.write_table(table, tmp_path / "d.parquet")
        src = "format: parquet\n  path: d.parquet"
    else:
        import datasets

        datasets.Dataset(table).save_to_disk(str(tmp_path / "hfds"))
        src = "format: hf\n  dataset: hfds"
    task = load_task(_task_yaml(tmp_path, f"name: t\nsource:\n  {src}\nsplit: {{validation: 0.25, test: 0.25, seed: 3}}\n"))
    data = load_task_data(task)
    assert data.label_names == ["neg", "pos"] and not data.pairs
    assert sorted(data.splits["train"].ids + data.splits["validation"].ids + data.splits["test"].ids) == \
        sorted(r["id"] for r in ROWS)
    assert len(data.splits["test"]) == 10
    texts = dict(zip(data.splits["train"].ids, data.splits["train"].text_a))
    some = data.splits["train"].ids[0]
    assert texts[some] == ('"' if fmt == "tsv" else "") + ROWS[int(some[1:])]["text"]


def test_given_splits_and_pair_columns(tmp_path):
    rows = [{"q": f"question {i}", "a": f"answer {i}", "y": i % 3} for i in range(30)]
    for name, part in (("train", rows[:20]), ("test", rows[20:])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    task = load_task(_task_yaml(tmp_path, """
name: pairs
source: {format: jsonl, splits: {train: train.jsonl, test: test.jsonl}}
columns: {text_a: q, text_b: a, label: y}
split: {validation: 0.2, test: 0.0, seed: 0}
"""))
    data = load_task_data(task)
    assert data.pairs and data.label_names == ["0", "1", "2"]
    assert len(data.splits["test"]) == 10 and data.split_origin["test"] == "given"
    assert len(data.splits["validation"]) + len(data.splits["train"]) == 20


# ---------------------------------------------------------------------------- bad input
def test_missing_label_column_names_the_file(tmp_path):
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in ROWS), encoding="utf-8")
    task = load_task(_task_yaml(tmp_path, "name: t\nsource: {format: jsonl, path: d.jsonl}\n"))
    with pytest.raises(TaskError, match=r"d\.jsonl has no label column 'label'"):
        load_task_data(task)


def test_empty_text_names_the_record(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[7]["text"] = "   "
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    task = load_task(_task_yaml(tmp_path, "name: t\nsource: {format: jsonl, path: d.jsonl}\n"))
    with pytest.raises(TaskError, match=r"d\.jsonl record 'r7': empty text in column 'text'"):
        load_task_data(task)


def test_unknown_label_in_test_split(tmp_path):
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    (tmp_path / "test.jsonl").write_text(json.dumps({"id": "t1", "text": "x", "label": "neutral"}) + "\n",
                                         encoding="utf-8")
    task = load_task(_task_yaml(tmp_path, "name: t\nsource: {format: jsonl, splits: {train: train.jsonl, test: test.jsonl}}\n"))
    with pytest.raises(TaskError, match=r"test\.jsonl record 't1': label 'neutral' in the test split never occurs"):
        load_task_data(task)


@pytest.mark.parametrize("body, match", [
    ("name: t\nsource: {format: jsonl}\n", "exactly one of `path`"),
    ("name: t\nsource: {format: xml, path: a}\n", "format"),
    ("name: t\nsource: {format: jsonl, path: a.jsonl}\ncolumns: {text_a: q}\n", "both `text_a` and `text_b`"),
    ("name: t\nsource: {format: jsonl, path: a.jsonl}\nfinetune: {epochs: 1, lr2: 3}\n", "lr2"),
    ("name: t\nsource: {format: jsonl, path: missing.jsonl}\n", None),
])
def test_bad_task_files(tmp_path, body, match):
    path = _task_yaml(tmp_path, body)
    with pytest.raises(TaskError, match=match or r"missing\.jsonl does not exist"):
        load_task_data(load_task(path))


# ---------------------------------------------------------------------------- metrics
def test_metrics_against_hand_computed_values():
    gold = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    m = classification_metrics(gold, pred, ["a", "b", "c"])
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # F1: a = 2*1*(2/3)/(5/3) = 0.8; b = 0.5; c = 2*0.5*1/1.5 = 2/3
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["majority_class_accuracy"] == pytest.approx(0.5)


def test_pair_encoding_truncates_the_longer_text():
    from tokenizers import Tokenizer, models, pre_tokenizers

    from model.tasks import Examples

    tok = Tokenizer(models.WordLevel({"<eot>": 0, "a": 1, "b": 2, "[UNK]": 3}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    ex = Examples(["a a a a a a a a"], ["x"], ["i"], ["f"], ["b b"])
    (ids,) = encode_examples(tok, ex, eot_id=0, max_len=8)
    assert ids.tolist() == [0, 1, 1, 1, 0, 2, 2, 0]


# ---------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def small_runs(tmp_path_factory, sentences_dir):
    """A masked-LM run and a decoder run on one small corpus of generated Scandinavian sentences (a few steps each)."""
    from mlm_corpus import build_lingua_corpus

    from model.train import train

    root = tmp_path_factory.mktemp("ft")
    data = build_lingua_corpus(root / "data", languages=["da", "nb", "sv"], skip_lines=800, vocab_size=512,
                               root=sentences_dir)
    train(data, root / "mlm", max_steps=4, objective="mlm", **TINY)
    train(data, root / "clm", max_steps=4, **TINY)
    return root


@pytest.fixture(scope="module")
def sentences_dir(corpora) -> Path:
    return corpora / "multilingual" / "sentences"


def _lid_task(tmp_path: Path, sentences: Path, max_steps: int = 6) -> Path:
    return _task_yaml(tmp_path, f"""
name: scandi-langid
source: {{format: text-files, path: {sentences}, classes: [da, nb, sv], max_per_class: 40}}
split: {{validation: 0.25, test: 0.25, seed: 0}}
finetune: {{max_steps: {max_steps}, batch_size: 8, max_len: 48, checkpoint_every: 3, eval_batch_size: 16}}
""")


def test_finetune_cli_writes_reports_and_resumes(small_runs, sentences_dir, tmp_path, capsys):
    from flows.cli import main
    from model.metrics import read_metrics

    out = tmp_path / "ft"
    args = ["finetune", str(small_runs / "mlm"), "--task", str(_lid_task(tmp_path, sentences_dir)), "--out", str(out),
            "--from-scratch", "--seed", "5", "--no-progress"]
    assert main(args) == 0
    ev = json.loads((out / "eval.json").read_text())
    assert ev["objective"] == "mlm" and ev["labels"] == ["da", "nb", "sv"] and ev["seeds"]["finetune"] == 5
    assert ev["pretrained"]["pooling"] == "mean" and ev["pretrained"]["steps"] == 6
    assert ev["accuracy_gain"] == pytest.approx(ev["accuracy"] - ev["scratch_accuracy"])
    assert np.array(ev["pretrained"]["test"]["confusion_matrix"]).sum() == ev["splits"]["test"]["examples"] == 30
    for d in (out, out / "scratch"):
        assert (d / "confusion_test.png").stat().st_size > 1000
        assert json.loads((d / "confusion_test.json").read_text())["labels"] == ["da", "nb", "sv"]
        assert len(read_metrics(d / "metrics.jsonl")) == 6
    report = (out / "report.md").read_text()
    assert "What pretraining bought" in report and "from scratch" in report

    # Same command again: resumes from the final checkpoint, trains nothing, same figures.
    before = (out / "metrics.jsonl").read_text()
    assert main(args) == 0
    again = json.loads((out / "eval.json").read_text())
    assert again["accuracy"] == ev["accuracy"] and (out / "metrics.jsonl").read_text() == before


def test_finetune_resume_after_interruption_is_exact(small_runs, sentences_dir, tmp_path):
    from model.finetune import finetune
    from model.metrics import read_metrics

    task = _lid_task(tmp_path, sentences_dir, max_steps=6)
    out = tmp_path / "ft"
    first = finetune(small_runs / "mlm", task, out, progress=False)
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl")]
    # As if killed between the checkpoints at steps 3 and 6: the rerun resumes from step 3.
    (out / "checkpoints" / "step-00000006.pt").unlink()
    again = finetune(small_runs / "mlm", task, out, progress=False)
    assert [r["loss"] for r in read_metrics(out / "metrics.jsonl")] == losses
    assert again["pretrained"]["test"]["confusion_matrix"] == first["pretrained"]["test"]["confusion_matrix"]


def test_finetune_a_decoder_uses_the_last_token(small_runs, sentences_dir, tmp_path):
    from model.finetune import finetune

    r = finetune(small_runs / "clm", _lid_task(tmp_path, sentences_dir), tmp_path / "ft", progress=False)
    assert r["objective"] == "clm" and r["pretrained"]["pooling"] == "last"
    assert 0 <= r["accuracy"] <= 1


def test_finetune_bad_input_fails_before_training(small_runs, sentences_dir, tmp_path):
    from model.checkpoint import CheckpointError
    from model.finetune import finetune

    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": "x"}) + "\n" for _ in range(5)), encoding="utf-8")
    bad = _task_yaml(tmp_path, "name: t\nsource: {format: jsonl, path: d.jsonl}\n", "bad.yaml")
    with pytest.raises(TaskError, match="no label column"):
        finetune(small_runs / "mlm", bad, tmp_path / "ft")
    assert not (tmp_path / "ft").exists()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        finetune(tmp_path / "nowhere", _lid_task(tmp_path, sentences_dir), tmp_path / "ft")
