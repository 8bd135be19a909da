"""Ablations (flows/ablate.py): errors before any work, a real small ablation through the corpus
flow and the trainer, its report, and a rerun with one more variant that only does what is new."""
from __future__ import annotations

import json

import pytest
import yaml

from fixtures_corpus import play_text
from orchestration_support import small_recipe

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "batch_size": 4, "warmup_steps": 2,
        "checkpoint_every": 1000}


def _ablation(tmp_path, corpora, variants: dict, **extra) -> tuple:
    from model.heldout import make_cloze_task, read_passages

    recipe = small_recipe(tmp_path / "recipes", corpora, name="ab-base")
    held = tmp_path / "eval" / "heldout.txt"
    held.parent.mkdir(parents=True, exist_ok=True)
    held.write_text(play_text(12_000, seed=991), encoding="utf-8")  # another play than any source: never trained on
    task = tmp_path / "eval" / "cloze.jsonl"
    task.write_text("".join(json.dumps(i) + "\n" for i in make_cloze_task(read_passages(held, 500), 12, continuation_chars=60, seed=1)))
    ab = {"name": "t", "base": str(recipe), "variants": variants, "seeds": [1, 2], "budget_tokens": 8 * 128,
          "preset": "cpu-tiny", "train": TINY, "eval": {"heldout": [str(held)], "tasks": [str(task)]}, "bootstrap": 200,
          **extra}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(ab))
    return path, recipe, held


@pytest.mark.parametrize("variants, extra, message", [
    ({"v": {"dedup": {"minhahs": {}}}}, {}, r"variants\.v: .*minhahs"),
    ({"v": {"mix": {"nosuch": 2}}}, {}, r"variants\.v: .*mix: \['nosuch'\] are not sources"),
    ({"v": {}}, {"budget_tokens": 100}, r"budget_tokens: 100 is less than one optimizer step of 128 tokens"),
    ({"base": {}}, {}, r"'base' is the base recipe's own name"),
    ({"v": {}}, {"colour": "red"}, r"colour"),
])
def test_bad_ablations_fail_before_any_work(tmp_path, corpora, monkeypatch, variants, extra, message):
    from flows.ablate import AblationError, Plan, load_ablation

    path, _, _ = _ablation(tmp_path, corpora, variants, **extra)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AblationError, match=message):
        Plan(load_ablation(path), tmp_path)
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_an_evaluation_set_that_is_a_training_input_is_refused(tmp_path, corpora):
    from flows.ablate import AblationError, Plan, load_ablation

    path, _, _ = _ablation(tmp_path, corpora, {"v": {}})
    ab = yaml.safe_load(path.read_text())
    ab["eval"]["heldout"] = [str(corpora / "classic" / "novel.txt")]  # a source of the base recipe
    path.write_text(yaml.safe_dump(ab))
    with pytest.raises(AblationError, match=r"novel\.txt is an input of variant 'base'"):
        Plan(load_ablation(path), tmp_path)


@pytest.mark.slow
def test_an_ablation_reports_differences_and_a_rerun_only_does_what_is_new(tmp_path, corpora, prefect_api, monkeypatch):
    from flows.ablate import run_ablation

    no_dedup = {"dedup": {"exact": False, "minhash": None}}
    path, _, held = _ablation(tmp_path, corpora, {"no-dedup": no_dedup})
    monkeypatch.chdir(tmp_path)
    log: list[str] = []
    report = run_ablation(path, workers=1, root=tmp_path, log=log.append)
    figures = json.loads((report.parent / "report.json").read_text())
    assert not figures["partial"] and figures["runs_done"] == 4
    loss = figures["metrics"]["heldout.txt: loss"]["variants"]
    assert set(loss) == {"base", "no-dedup"} and loss["base"]["seeds"] == [1, 2]
    nd = loss["no-dedup"]
    assert nd["diff"] == pytest.approx(sum(nd["values"]) / 2 - sum(loss["base"]["values"]) / 2)
    assert nd["diff_ci95"][0] <= nd["diff"] <= nd["diff_ci95"][1]
    assert nd["verdict"] in {"better", "worse", "within noise"}
    acc = figures["metrics"]["cloze.jsonl: acc"]["variants"]["base"]
    assert all(0 <= v <= 1 for v in acc["values"])
    text = report.read_text()
    assert "## heldout.txt: loss (lower is better)" in text and "| no-dedup |" in text and "charts/metric-0.png" in text
    assert (report.parent / "charts" / "metric-0.png").stat().st_size > 1000
    # the no-dedup corpus kept the duplicate chapters the base removed, and started from the base's units
    base_m = json.loads((tmp_path / "data/ablations/t/base/manifest.json").read_text())
    nd_m = json.loads((tmp_path / "data/ablations/t/no-dedup/manifest.json").read_text())
    assert nd_m["stages"]["dedup"]["docs_out"] > base_m["stages"]["dedup"]["docs_out"]
    assert nd_m["resume"]["ingest"]["reused"] == nd_m["resume"]["ingest"]["units"] > 0
    assert nd_m["resume"]["clean"]["reused"] == nd_m["resume"]["clean"]["units"] > 0
    # the variant's data card shows its models
    cards = json.loads((tmp_path / "data/ablations/t/no-dedup/models.json").read_text())["models"]
    assert {m["run"] for m in cards} == {"seed-1", "seed-2"} and {m["ablation"] for m in cards} == {"t"}
    assert "Trained by the ablation `t`" in (tmp_path / "data/ablations/t/no-dedup/README.md").read_text()

    # one variant more (mix only: the base corpus, another stream): nothing else is rebuilt or retrained
    ab = yaml.safe_load(path.read_text())
    ab["variants"]["wt2-x3"] = {"mix": {"wt2": 3}}
    path.write_text(yaml.safe_dump(ab))
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "ablations/t/results").rglob("*.json")}
    log.clear()
    run_ablation(path, workers=1, root=tmp_path, log=log.append)
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "ablations/t/results").rglob("*.json")}
    assert all(after[p] == t for p, t in before.items())  # finished runs reused as they were
    assert len(after) == 6
    assert not any("corpus wt2-x3" in line for line in log)  # trains on the base corpus
    trained = [line for line in log if "seed" in line and "final loss" in line]
    assert len(trained) == 2 and all("wt2-x3" in line for line in trained)
    mixed = json.loads((tmp_path / "ablations/t/results/wt2-x3/seed-1.json").read_text())["mixture"]
    assert mixed["weights"] == {"wt2": 3.0}


@pytest.mark.slow
def test_a_heldout_set_found_in_a_corpus_stops_the_ablation_before_training(tmp_path, corpora, prefect_api, monkeypatch):
    from flows.ablate import AblationError, run_ablation

    path, _, held = _ablation(tmp_path, corpora, {"v": {"mix": {"wt2": 2}}})
    wiki_line = next(line for line in (corpora / "classic" / "wiki.txt").read_text().splitlines() if len(line) > 120)
    held.write_text(held.read_text() + "\n" + wiki_line + "\n")  # one training line leaked into the held-out set
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AblationError, match="heldout.txt shares a line with the training documents of base"):
        run_ablation(path, workers=1, root=tmp_path, log=lambda *_: None)
    assert not (tmp_path / "runs").exists()
    assert json.loads((tmp_path / "ablations/t/report.json").read_text())["partial"]
