"""`opencorpus ablate ABLATION.yaml`: does this data change make a better model, by more than seed noise?

An ablation file names a base recipe, variants (overrides of its sections), seeds, one training
budget in tokens, a model preset and evaluation sets:

    name: dedup-at-small-scale
    base: ../default.yaml              # a corpus recipe, relative to this file
    variants:                          # each: sections of the recipe, deep-merged over the base's
      no-dedup: {dedup: {exact: false, minhash: null}}
      wiki-x2: {mix: {wiki: 2}}        # mix only: the base corpus, another training stream
    seeds: [1, 2, 3]
    budget_tokens: 300000              # every run trains on this many tokens (a small corpus repeats)
    preset: cpu-tiny
    train: {n_layer: 2}                # TrainConfig overrides for every run
    eval:
      heldout: [path/to/text.txt]      # text no variant trains on (checked): loss, bits per byte
      tasks: [path/to/task.jsonl]      # multiple choice, lm-eval style: acc, acc above chance

What happens, in order (every step is skipped when its result is already on disk, so a rerun
with one more variant only builds and trains what is new, and a stopped ablation resumes):
1. checks, before any work: fields, variant overrides (validated as recipes), budget >= one
   optimizer step, evaluation files readable and not an input file of the base's sources;
2. the plan: corpora to build or reuse, runs, tokens and an estimated time;
3. corpora through the corpus flow (`run_corpus`, Prefect): the base into data/ablations/<name>/base,
   then each variant whose corpus differs into data/ablations/<name>/<variant>, started from hard
   links of the base's files so that every unit the variant shares with it (same key) is reused.
   Variants keep the base's tokenizer (`tokenize.tokenizer`) unless they override `tokenize`, so
   losses per token compare. A variant that overrides only `mix` or `train` trains on the base corpus;
4. the held-out sets checked against every corpus's documents (a shared line is an error);
5. one training run per (variant, seed) in runs/ablations/<name>/<variant>/seed-<s>, resumable;
6. evaluation of each run, item by item, into ablations/<name>/results/<variant>/seed-<s>.json,
   and the run added to its corpus's data card;
7. the report (flows/ablation_report.py): ablations/<name>/report.md, report.json, charts. It is
   also written when the ablation stops early, from the runs finished so far.
"""
from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.io import sha256_file, write_json
from pipeline.recipe import RecipeError, format_errors, parse_recipe

BASE = "base"
TRAIN_ONLY = {"mix", "train", "description"}  # overrides that leave the corpus as it is
PLAN_TOKENS_PER_S = 3000  # cpu-tiny on this 2-core machine under load, when no run has measured it


class AblationError(ValueError):
    """An ablation that cannot start; the message names the file and the field."""


class EvalSets(BaseModel):
    model_config = ConfigDict(extra="forbid")
    heldout: list[str] = Field(default_factory=list)
    tasks: list[str] = Field(default_factory=list)
    max_items: int | None = Field(500, gt=0, description="items scored per set (a seeded sample; None: all)")


class Ablation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    base: str
    variants: dict[str, dict[str, Any]] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1)
    budget_tokens: int = Field(gt=0)
    preset: str = "cpu-tiny"
    train: dict[str, Any] = Field(default_factory=dict)
    eval: EvalSets
    passage_chars: int = Field(1000, gt=0)
    bootstrap: int = Field(1000, ge=100)

    folder: Path = Field(default=Path("."), exclude=True)  # the ablation file's folder
    file: str = Field(default="", exclude=True)  # the ablation file as given on the command line


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "mix" else copy.deepcopy(v)
    return out


class Plan:
    """Everything an ablation will do, computed from the files alone."""

    def __init__(self, ab: Ablation, root: Path):
        from model.config import make_config

        self.ab, self.root = ab, Path(root).resolve()  # recipes written elsewhere name these folders
        self.base_path = (ab.folder / ab.base).resolve()
        try:
            self.base_yaml = yaml.safe_load(self.base_path.read_text(encoding="utf-8"))
        except OSError as e:
            raise AblationError(f"base: {self.base_path} cannot be read: {e}") from None
        self.base_recipe = parse_recipe(self.base_yaml, self.base_path.parent, str(self.base_path))
        self.out = self.root / "ablations" / ab.name
        self.data = self.root / "data" / "ablations" / ab.name
        self.runs = self.root / "runs" / "ablations" / ab.name
        try:
            self.cfg = make_config(ab.preset, **ab.train)
        except (ValueError, TypeError) as e:
            raise AblationError(f"train: {e}") from None
        self.steps = ab.budget_tokens // self.cfg.tokens_per_step
        if self.steps < 1:
            raise AblationError(f"budget_tokens: {ab.budget_tokens:,} is less than one optimizer step of "
                                f"{self.cfg.tokens_per_step:,} tokens ({ab.preset}: batch_size x block_size x grad_accum)")
        if BASE in ab.variants:
            raise AblationError(f"variants: {BASE!r} is the base recipe's own name; name the variant otherwise")
        self.variants = {BASE: {}, **ab.variants}
        self.recipes = {v: self._variant_recipe(v, o) for v, o in self.variants.items()}
        self.heldout = [(ab.folder / p).resolve() for p in ab.eval.heldout]
        self.tasks = [(ab.folder / p).resolve() for p in ab.eval.tasks]
        if not self.heldout and not self.tasks:
            raise AblationError("eval: give at least one held-out text file or task file")
        for p in self.heldout + self.tasks:
            if not p.is_file():
                raise AblationError(f"eval: {p} does not exist")
        self._check_eval_files_are_not_inputs()

    def _variant_recipe(self, variant: str, over: dict) -> dict:
        """The variant's recipe as a dict with absolute paths (a RecipeError names the field)."""
        data = deep_merge(self.base_yaml, over)
        data["name"] = f"{self.ab.name}-{variant}"
        try:
            recipe = parse_recipe(data, self.base_path.parent, f"variants.{variant}")
        except RecipeError as e:
            raise AblationError(str(e)) from None
        dumped = recipe.model_dump(mode="json")
        if variant != BASE and "tokenize" not in over and not self.train_only(variant):
            dumped.setdefault("tokenize", {})["tokenizer"] = str(self.corpus_dir(BASE) / "tokenizer.json")
        return dumped

    def train_only(self, variant: str) -> bool:
        return set(self.variants[variant]) <= TRAIN_ONLY

    def corpus_dir(self, variant: str) -> Path:
        return self.data / (BASE if variant == BASE or self.train_only(variant) else variant)

    def run_dir(self, variant: str, seed: int) -> Path:
        return self.runs / variant / f"seed-{seed}"

    def result_path(self, variant: str, seed: int) -> Path:
        return self.out / "results" / variant / f"seed-{seed}.json"

    def mix(self, variant: str) -> str | None:
        from model.config import format_mix

        return format_mix(self.recipes[variant].get("mix") or {})

    def _check_eval_files_are_not_inputs(self):
        inputs = {}
        for v, recipe in self.recipes.items():
            for s in recipe.get("sources", []):
                for pattern in s.get("paths") or []:
                    for p in Path("/").glob(pattern.lstrip("/")) if "://" not in pattern else []:
                        if p.is_file():
                            inputs.setdefault(sha256_file(p), (v, p))
        for e in self.heldout + self.tasks:
            hit = inputs.get(sha256_file(e))
            if hit:
                raise AblationError(f"eval: {e} is an input of variant {hit[0]!r} ({hit[1]}): the model would train on it")

    def describe(self) -> str:
        lines = [f"ablation {self.ab.name}: {len(self.variants)} variants x {len(self.ab.seeds)} seeds, "
                 f"{self.steps} steps x {self.cfg.tokens_per_step:,} tokens = {self.steps * self.cfg.tokens_per_step:,} tokens per run"]
        todo_runs = 0
        for v in self.variants:
            corpus = self.corpus_dir(v)
            if (corpus / "manifest.json").is_file():
                state = f"corpus {corpus} (built; reused if its recipe is unchanged)"
            elif self.train_only(v) and v != BASE:
                state = "corpus of the base (only the training stream differs)"
            else:
                state = f"corpus to build in {corpus}" + ("" if v == BASE else " (units shared with the base reused)")
            done = [s for s in self.ab.seeds if self.result_path(v, s).is_file()]
            todo_runs += len(self.ab.seeds) - len(done)
            lines.append(f"  {v}: {state}; runs done {len(done)}/{len(self.ab.seeds)}"
                         + (f"; mix {self.mix(v)}" if self.mix(v) else ""))
        tok_s = _measured_tokens_per_s(self.runs) or PLAN_TOKENS_PER_S
        secs = todo_runs * self.steps * self.cfg.tokens_per_step / tok_s
        lines.append(f"  to train: {todo_runs} runs, about {secs / 60:.0f} min at {tok_s:,.0f} tokens/s "
                     f"({'measured by earlier runs' if tok_s != PLAN_TOKENS_PER_S else 'assumed'}), plus corpus builds and evaluation")
        return "\n".join(lines)


def say(message: str) -> None:
    """Progress on stdout, flushed: worker processes forked later must not inherit (and print again) a buffer."""
    print(message, flush=True)


def _measured_tokens_per_s(runs: Path) -> float | None:
    speeds = []
    for p in runs.glob("*/seed-*/run.json"):
        try:
            speeds.append(float(json.loads(p.read_text())["median_tokens_per_s"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(speeds)[len(speeds) // 2] if speeds else None


def load_ablation(path: str | Path) -> Ablation:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        ab = Ablation.model_validate(data)
    except OSError as e:
        raise AblationError(f"{path}: {e}") from None
    except ValidationError as e:
        raise AblationError(f"{path}: {format_errors(e)}") from None
    ab.folder, ab.file = path.resolve().parent, str(path)
    return ab


# ---------------------------------------------------------------------------- the steps


def build_corpora(plan: Plan, workers: int, log=say) -> None:
    from flows.corpus import run_corpus

    for v in plan.variants:
        if v != BASE and plan.train_only(v):
            continue
        folder = plan.corpus_dir(v)
        recipe_path = plan.out / "recipes" / f"{v}.yaml"
        recipe_path.parent.mkdir(parents=True, exist_ok=True)
        recipe_path.write_text(yaml.safe_dump(plan.recipes[v], sort_keys=False), encoding="utf-8")
        if v != BASE and not folder.exists():
            _link_tree(plan.corpus_dir(BASE), folder)  # units with the base's keys are then reused
        t0 = time.perf_counter()
        log(f"[{plan.ab.name}] corpus {v}: building in {folder}")
        m = run_corpus(str(recipe_path), str(folder), workers=workers, cards_dir=None)
        reused = {k: f"{r.reused}/{r.units}" for k, r in m.resume.items() if r.reused}
        log(f"[{plan.ab.name}] corpus {v}: {m.stages.tokenize.tokens_train:,} training tokens "
            f"({time.perf_counter() - t0:.0f} s; units reused: {reused or 'none'})")


def _link_tree(src: Path, dst: Path) -> None:
    """dst as hard links of src's files (outputs are replaced by renames, never written in place)."""
    for p in sorted(src.rglob("*")):
        if p.is_file() and p.name not in ("lock", "progress.jsonl") and not p.name.startswith(".tmp-"):
            target = dst / p.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(p, target)


def check_heldout_overlap(plan: Plan, min_chars: int = 80) -> dict[str, int]:
    """Lines of the held-out sets (of `min_chars` or more, compared lowercased with whitespace
    collapsed) found in a corpus's documents: an AblationError naming the first; otherwise the
    number of lines checked per set."""
    import pyarrow.parquet as pq

    from pipeline.io import list_shards

    def norm(t: str) -> str:
        return " ".join(t.lower().split())

    wanted: dict[str, str] = {}
    for e in plan.heldout:
        for line in e.read_text(encoding="utf-8", errors="replace").splitlines():
            if len(line.strip()) >= min_chars:
                wanted.setdefault(norm(line), e.name)
    checked = {e.name: sum(1 for n in wanted.values() if n == e.name) for e in plan.heldout}
    for folder in sorted({plan.corpus_dir(v) for v in plan.variants}):
        for shard in list_shards(folder / "dedup"):
            for text in pq.read_table(shard, columns=["text"]).column("text").to_pylist():
                for line in (text or "").splitlines():
                    hit = wanted.get(norm(line)) if len(line.strip()) >= min_chars else None
                    if hit:
                        raise AblationError(f"eval: held-out set {hit} shares a line with the training documents of "
                                            f"{folder.name} ({shard.name}): {line.strip()[:80]!r}")
    return checked


def train_and_evaluate(plan: Plan, variant: str, seed: int, log=say) -> dict:
    from model.evaluate import evaluate, load_run_model
    from model.heldout import choice_scores, passage_scores, read_passages, read_task
    from model.train import train
    from pipeline.card import add_model_entry

    out = plan.result_path(variant, seed)
    if out.is_file():
        return json.loads(out.read_text())
    run, data = plan.run_dir(variant, seed), plan.corpus_dir(variant)
    t0 = time.perf_counter()
    overrides = {**plan.ab.train, "seed": seed, "progress": False}
    if plan.mix(variant):
        overrides["mix"] = plan.mix(variant)
    summary = train(data, run, preset=plan.ab.preset, max_steps=plan.steps, **overrides)
    evaluate(run, data)  # the corpus's own validation split, for its data card
    add_model_entry(run, data_cards_dir=plan.out / "cards", ablation=plan.ab.name)
    model, _, info = load_run_model(run)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(data) / "tokenizer.json"))
    block = model.config.block_size
    result = {"variant": variant, "seed": seed, "run": str(run), "corpus": str(data), "steps": summary["steps"],
              "tokens_seen": summary["tokens_seen"], "train_seconds": round(time.perf_counter() - t0, 1),
              "mixture": info.mixture, "heldout": {}, "tasks": {}}
    for e in plan.heldout:
        result["heldout"][e.name] = passage_scores(model, tok, _sample(read_passages(e, plan.ab.passage_chars), plan), block)
    for e in plan.tasks:
        result["tasks"][e.name] = choice_scores(model, tok, _sample(read_task(e), plan), block)
    write_json(result, out)
    log(f"[{plan.ab.name}] {variant} seed {seed}: final loss {summary['final_loss']:.3f} "
        f"({result['train_seconds']:.0f} s)")
    return result


def _sample(items: list, plan: Plan) -> list:
    """The same `eval.max_items` items for every run (seeded by the ablation's name), in file order."""
    import random

    n = plan.ab.eval.max_items
    if n is None or len(items) <= n:
        return items
    keep = sorted(random.Random(plan.ab.name).sample(range(len(items)), n))
    return [items[i] for i in keep]


def run_ablation(path: str | Path, workers: int = 2, root: str | Path = ".", log=say) -> Path:
    """Run (or resume) an ablation; returns the report's path. The report is written even when a
    step fails or the run is interrupted, from the runs finished so far."""
    from flows.ablation_report import write_report
    from model.heldout import read_task

    ab = load_ablation(path)
    plan = Plan(ab, Path(root))
    for t in plan.tasks:
        read_task(t)  # a malformed task file fails now, not after training
    log(plan.describe())
    try:
        build_corpora(plan, workers, log)
        checked = check_heldout_overlap(plan)
        log(f"[{ab.name}] held-out lines checked against every corpus: {checked}, none found in training documents")
        total, k = len(plan.variants) * len(ab.seeds), 0
        for seed in ab.seeds:  # seed-major: a stopped ablation has every variant at the same seeds
            for v in plan.variants:
                k += 1
                log(f"[{ab.name}] run {k}/{total}: {v}, seed {seed}")
                train_and_evaluate(plan, v, seed, log)
    finally:
        report = write_report(plan)
        log(f"[{ab.name}] report: {report}")
    return report
