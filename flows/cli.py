"""`opencorpus` command line: build corpora, train and evaluate models, write data cards.

    opencorpus --version
    opencorpus run RECIPE.yaml|FOLDER|URL [--output DIR|URL] [--force] [--workers N] [--dask ADDRESS|local:N] [--progress]
    opencorpus deploy RECIPE.yaml --cron "0 3 * * *"   (serve a scheduled deployment; see `make serve`)
    opencorpus progress DIR [--follow]
    opencorpus train --data DIR --out RUN_DIR [--preset NAME] [--max-steps N] [trainer flags...]
    opencorpus train --recipe RECIPE.yaml            (data/<name> -> runs/<name>, options from the recipe's train:)
    opencorpus eval RUN_DIR [--data DIR]
    opencorpus export RUN_DIR --hf OUT_DIR
    opencorpus finetune RUN_DIR --task TASK.yaml --out FT_DIR [--from-scratch] [--seed N]
    opencorpus card DIR [--html [PATH]] [--write]   |   opencorpus card --diff A B
    opencorpus quality train --positive FILES... --negative FILES... --out MODEL.npz [--field text]
    opencorpus quality train --task TASK.yaml --positive-label LABEL --out MODEL.npz
    opencorpus ablate ABLATION.yaml [--workers N] [--plan] [--report]
    opencorpus server status|stop                   (the Prefect server kept between runs)

A failure ends in one line on stderr naming what failed (exit 2 for bad input or usage,
1 otherwise, 130 on Ctrl-C); add --debug anywhere for the traceback.

Prefect (run, deploy) keeps its state in $PREFECT_HOME when set, else in
$OPENCORPUS_CACHE/prefect (default ~/.cache/opencorpus/prefect), not in ~/.prefect; a
profile in ~/.prefect/profiles.toml (a server's or Prefect Cloud's API URL) still applies.
Without a configured API, the first `run` starts a Prefect server for that home and later
commands use it; it stops itself after $OPENCORPUS_SERVER_IDLE_S seconds (default 600) unused
(0: a server per run, stopped when it ends). `opencorpus server status|stop`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def prefect_home() -> Path:
    """Where Prefect keeps its state for a command (its SQLite database of runs, results):
    $PREFECT_HOME when set, else $OPENCORPUS_CACHE/prefect, not Prefect's own ~/.prefect."""
    from flows.storage import cache_dir

    return Path(os.environ.get("PREFECT_HOME") or cache_dir() / "prefect")


def _quiet_prefect_defaults():
    """Prefect settings of our commands; through the environment, before Prefect is imported."""
    if not os.environ.get("PREFECT_HOME"):
        # One folder per user, kept: the database migrates once, not on every run (a fresh one
        # takes seconds), and nothing lands in ~/.prefect that `make` would not have written.
        home = prefect_home()
        home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(home)
        profiles = Path.home() / ".prefect" / "profiles.toml"
        if profiles.is_file() and not os.environ.get("PREFECT_PROFILES_PATH"):
            # A user's profile (a server's or Prefect Cloud's API URL) still applies.
            os.environ["PREFECT_PROFILES_PATH"] = str(profiles)
    # No network here and nothing to report to: keep Prefect's telemetry off by default.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Prefect's temporary API server may need more than its default 20 s on a busy machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def check_train_section(recipe, origin) -> None:
    """The recipe's `train:` section checked like every other section (by model.config, which
    pipeline/ does not import): a RecipeError naming the recipe and the setting."""
    if not recipe.train:
        return
    from model.config import make_config
    from pipeline.recipe import RecipeError

    defaults = dict(recipe.train)
    try:  # the recipe's section is checked on its own, so its errors name the recipe
        make_config(defaults.get("preset", "cpu-tiny"), **{k: v for k, v in defaults.items() if k != "preset"})
    except (ValueError, TypeError) as e:
        raise RecipeError(f"{origin}: train: {e}") from None


def cmd_server(args) -> int:
    _quiet_prefect_defaults()
    from flows import server

    if args.action == "stop":
        pid = server.stop_server()
        print(f"stopped the Prefect server (pid {pid})" if pid else server.status())
    else:
        print(server.status())
    return 0


def cmd_run(args) -> int:
    _quiet_prefect_defaults()
    from flows.supervise import is_supervised, supervise

    if is_supervised():
        return _run_supervised(args)
    from pipeline.recipe import ALLOW_PRIVATE_ENV, load_recipe

    if args.allow_private_networks:  # through the environment: the flow loads the recipe again, in a child
        os.environ[ALLOW_PRIVATE_ENV] = "1"

    recipe = load_recipe(args.recipe)  # a bad recipe or output folder fails here, before a Prefect server starts
    check_train_section(recipe, args.recipe)
    # Nothing here imports Prefect (seconds): this process only checks and supervises.
    from flows.state import check_output
    from flows.storage import OutputLocation, default_output, split_url

    target = args.output or str(default_output(recipe))
    protocol, path = split_url(target)
    if protocol is None:
        check_output(Path(path), args.force)
    else:  # before the Prefect server starts and before ingest: a missing bucket fails here, in one line
        OutputLocation.of(target, args.work_dir).check_writable()
    # The work runs in a child session that Ctrl-C and kill -9 never leave behind.
    return supervise(args.argv, run_child=lambda: main(args.argv))


def _run_supervised(args) -> int:
    """The supervised child: the supervisor has checked the recipe and the output, so the
    Prefect server and the pool's fork server start first, and boot while this process imports
    the flow (the flow checks both again when it starts)."""
    from flows.supervise import watch_parent

    watch_parent()
    if not args.debug:  # before the pool's fork server starts: its workers keep the environment of that moment
        os.environ["OPENCORPUS_QUIET_TRACEBACKS"] = "1"
    from flows.server import spawn_server_early, start_server_early

    spawn_server_early()
    if args.workers > 1 and not args.dask:
        from flows import head_start, pool

        pool.prestart()
        # The first units start on the pool now, while Prefect imports and its server boots.
        head_start.start(args.recipe, args.output, args.workers, args.work_dir, args.force)
    start_server_early()
    from flows.corpus import quiet_tracebacks, run_corpus
    from flows.state import warm_code_fingerprints

    if not args.debug:
        quiet_tracebacks()
    warm_code_fingerprints()  # part of every unit's key: computed while the server may still boot
    if args.progress:
        manifest = _run_with_progress(args)
    else:
        manifest = run_corpus(args.recipe, args.output, args.workers, args.cards_dir or None, args.dask, args.work_dir,
                              args.force)
    for name, s in manifest.stages.items():
        print(f"{name:>9}: {s.docs_in:>8,} in {s.docs_out:>8,} out {s.docs_rejected:>7,} rejected  {s.seconds:7.1f} s")
    return 0


def _run_with_progress(args):
    """Run the flow while a live table (flows/progress.py) follows its progress log."""
    import threading
    import time

    from flows import progress, storage
    from flows.corpus import default_output, run_corpus
    from pipeline.recipe import load_recipe

    target = args.output or str(default_output(load_recipe(args.recipe)))
    root = storage.OutputLocation.of(target, args.work_dir).local
    viewer = threading.Thread(target=progress.show, args=(root,), kwargs={"follow": True, "since": time.time()}, daemon=True)
    viewer.start()
    try:
        return run_corpus(args.recipe, args.output, args.workers, args.cards_dir or None, args.dask, args.work_dir)
    finally:
        viewer.join(timeout=5)


def cmd_deploy(args) -> int:
    _quiet_prefect_defaults()
    from flows.deploy import serve_recipe
    from pipeline.recipe import load_recipe

    check_train_section(load_recipe(args.recipe), args.recipe)  # before a deployment is served
    serve_recipe(args.recipe, args.cron, name=args.name, output=args.output, workers=args.workers,
                 cards_dir=args.cards_dir or None, dask=args.dask, work_dir=args.work_dir, timezone=args.timezone)
    return 0


def cmd_progress(args) -> int:
    from flows.progress import show

    run = show(args.dir, follow=args.follow)
    return 0 if run["status"] in ("completed", "running") else 1


def cmd_train(args, rest: list[str]) -> int:
    """`opencorpus train`: the trainer's own flags (model/config.py); with --recipe, the recipe's
    `train:` section sits under them and data/<name> -> runs/<name> are the default folders."""
    from model.train import main as train_main
    from pipeline.recipe import load_recipe

    argv, defaults = list(rest), {}
    if args.recipe:
        recipe = load_recipe(args.recipe)
        defaults = dict(recipe.train)
        if recipe.mix and "mix" not in defaults:
            from model.config import format_mix

            defaults["mix"] = format_mix(recipe.mix)
        check_train_section(recipe, args.recipe)
        if "--data" not in argv:
            argv += ["--data", f"data/{recipe.name}"]
        if "--out" not in argv:
            argv += ["--out", f"runs/{recipe.name}"]
    return train_main(argv, defaults) or 0


def cmd_eval(args) -> int:
    from model.evaluate import evaluate

    result = evaluate(args.run_dir, data_dir=args.data)
    shown = {k: result[k] for k in ("val_loss", "val_perplexity", "val_bits_per_byte", "tokens_seen") if k in result}
    print(json.dumps(shown, indent=2))
    _append_model_to_card(Path(args.run_dir))
    return 0


def _append_model_to_card(run_dir: Path):
    """Record the evaluated run in its corpus's data card, when the card module supports it."""
    from pipeline import card

    try:
        card.add_model_entry(run_dir)
    except (OSError, ValueError, KeyError) as e:
        # The evaluation itself succeeded and is on disk; only the card entry is missing.
        print(f"warning: {run_dir}: evaluated, but not added to the corpus's data card: {e}", file=sys.stderr)


def cmd_finetune(args) -> int:
    """Fine-tune a run on a classification task (model/finetune.py), then note it in the corpus card."""
    from model.finetune import run_cli

    rc = run_cli(args)
    if rc == 0:
        from pipeline import card

        if hasattr(card, "add_finetune_entry"):
            try:
                card.add_finetune_entry(args.out)
            except (ValueError, FileNotFoundError) as e:  # e.g. a corpus folder without a manifest
                print(f"note: data card not updated: {e}", file=sys.stderr)
    return rc


def cmd_export(args) -> int:
    from model.export import export_hf

    export_hf(args.run_dir, args.hf)
    print(f"exported {args.run_dir} to {args.hf}")
    return 0


def cmd_card(args) -> int:
    from pipeline import card

    if args.diff:
        print(card.diff_cards(*args.diff))
        return 0
    if not args.dir:
        print("error: give a corpus folder (opencorpus card DIR) or two (opencorpus card --diff A B)", file=sys.stderr)
        return 2
    if args.write:
        print(f"card written: {card.rewrite_card(args.dir)}")
    if not (Path(args.dir) / "README.md").is_file():
        print(f"{args.dir}: no data card (README.md); build the corpus first", file=sys.stderr)
        return 2
    card.print_summary(args.dir)
    if args.html:
        print(f"HTML card: {card.write_html(args.dir, None if args.html is True else args.html)}")
    return 0


def _task_examples(task_file: str, positive_label: str) -> dict[str, tuple[list[str], list[str]]]:
    """A fine-tuning task file's splits as (positives, negatives): label == positive_label is positive."""
    from model.tasks import load_task, load_task_data

    data = load_task_data(load_task(task_file))
    if str(positive_label) not in data.label_names:
        raise UsageError(f"{task_file}: label {positive_label!r} is not one of the task's labels {data.label_names}")
    out = {}
    for split, ex in data.splits.items():
        texts = ex.text_a if ex.text_b is None else [f"{a}\n{b}" for a, b in zip(ex.text_a, ex.text_b)]
        pos = [t for t, lab in zip(texts, ex.labels) if lab == str(positive_label)]
        neg = [t for t, lab in zip(texts, ex.labels) if lab != str(positive_label)]
        out[split] = (pos, neg)
    return out


class UsageError(ValueError):
    """A command's arguments that do not fit together."""


def cmd_quality_train(args) -> int:
    """Train a quality scorer (pipeline/clean/quality.py) and print its held-out figures."""
    import json

    from pipeline.clean.quality import chunk_words, format_report, hold_out, read_examples, train

    if args.task:
        if args.positive or args.negative:
            raise UsageError("give either --task (with --positive-label) or --positive/--negative files, not both")
        if args.positive_label is None:
            raise UsageError("--task needs --positive-label (the label of the good examples)")
        splits = _task_examples(args.task, args.positive_label)
        pos, neg = splits["train"]
        test_pos, test_neg = splits["test"]
    else:
        if not args.positive or not args.negative:
            raise UsageError("give --positive and --negative files (or --task TASK.yaml --positive-label LABEL)")
        pos = read_examples(args.positive, args.field, "--positive")
        neg = read_examples(args.negative, args.field, "--negative")
        test_pos = read_examples(args.test_positive, args.field, "--test-positive") if args.test_positive else None
        test_neg = read_examples(args.test_negative, args.field, "--test-negative") if args.test_negative else None
    held = "given held-out examples"
    if test_pos is None and test_neg is None and args.holdout > 0:  # held out whole, before any cutting
        (pos, test_pos), (neg, test_neg) = (hold_out(pos, args.holdout, args.seed), hold_out(neg, args.holdout, args.seed))
        held = f"{args.holdout:.0%} of each class's examples, seed {args.seed}, held out whole"
    if args.chunk_words:  # training examples only: held-out ones are scored as they are
        pos, neg = chunk_words(pos, args.chunk_words), chunk_words(neg, args.chunk_words)
    source = {"task": args.task, "positive_label": args.positive_label} if args.task else {
        "positive": args.positive, "negative": args.negative, "test_positive": args.test_positive,
        "test_negative": args.test_negative, "field": args.field, "chunk_words": args.chunk_words}
    model, report = train(pos, neg, bits=args.bits, steps=args.steps, lr=args.lr, l2=args.l2, holdout=args.holdout,
                          seed=args.seed, test_pos=test_pos, test_neg=test_neg, threshold=args.threshold,
                          meta={"trained_on": source, "held_out": held})
    model.save(args.out)
    print(format_report(report))
    print(f"model written: {args.out} ({Path(args.out).stat().st_size:,} bytes, trained in {report['seconds']} s)")
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def _add_scale_arguments(p: argparse.ArgumentParser):
    p.add_argument("--dask", default=None, metavar="ADDRESS|local:N",
                   help="run mapped stages on a dask.distributed cluster (scheduler address, or N local workers)")
    p.add_argument("--work-dir", default=None,
                   help="the flow's local staging folder when --output is a URL (s3://, gs://); tasks never use it: "
                        "they fetch their inputs from the store into a folder of their own (a Dask worker's local "
                        "directory, or $OPENCORPUS_TASK_SCRATCH)")


class _Version(argparse.Action):
    """--version, computed only when asked for (it runs git for the commit)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from pipeline.manifest import code_version

        print(f"opencorpus {code_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="opencorpus", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action=_Version, help="print the opencorpus version (and git commit) and exit")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="build a corpus from a recipe (Prefect flow)")
    r.add_argument("recipe", help="recipe file, a folder holding recipe.yaml, or an http(s) URL of a recipe")
    r.add_argument("--allow-private-networks", action="store_true",
                   help="fetch a recipe URL from a loopback or private address (refused by default)")
    r.add_argument("--output", "-o", default=None, help="output folder (default data/<recipe name>)")
    r.add_argument("--force", action="store_true",
                   help="use a non-empty output folder that is not an opencorpus corpus (its files are never deleted)")
    r.add_argument("--workers", "-w", type=int, default=2, help="shards processed at once")
    # No default copy: a command writes only where it is told (`make corpus` asks for data_cards/).
    r.add_argument("--cards-dir", default=None, help="also copy the data card here as <name>.md (default: no copy)")
    _add_scale_arguments(r)
    r.add_argument("--progress", action="store_true", help="show a live table of documents done per stage, rate and ETA")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("deploy", help="serve the corpus flow as a Prefect deployment with a cron schedule")
    d.add_argument("recipe")
    d.add_argument("--cron", required=True, help='cron schedule, e.g. "0 3 * * *" (every day at 03:00)')
    d.add_argument("--timezone", default=None, help="time zone of the schedule (default UTC)")
    d.add_argument("--name", default=None, help="deployment name (default: the recipe name)")
    d.add_argument("--output", "-o", default=None, help="output folder or URL (default data/<recipe name>)")
    d.add_argument("--workers", "-w", type=int, default=2, help="shards processed at once")
    d.add_argument("--cards-dir", default=None, help="also copy the data card here as <name>.md (default: no copy)")
    _add_scale_arguments(d)
    d.set_defaults(func=cmd_deploy)

    v = sub.add_parser("server", help="the Prefect API server kept between runs of this Prefect home: status or stop")
    v.add_argument("action", choices=["status", "stop"])
    v.set_defaults(func=cmd_server)

    g = sub.add_parser("progress", help="show the progress of the latest run in a corpus folder")
    g.add_argument("dir")
    g.add_argument("--follow", "-f", action="store_true", help="redraw until the run ends")
    g.set_defaults(func=cmd_progress)

    t = sub.add_parser("train", help="train the bundled model on a corpus (other flags go to the trainer; see --help there)",
                       add_help=False)
    t.add_argument("--recipe", default=None, help="take data/out folders and train: options from this recipe")
    t.set_defaults(func=cmd_train, passthrough=True)

    e = sub.add_parser("eval", help="evaluate a run on its corpus's validation tokens")
    e.add_argument("run_dir")
    e.add_argument("--data", default=None, help="corpus folder (default: the one the run trained on)")
    e.set_defaults(func=cmd_eval)

    x = sub.add_parser("export", help="export a run as a Hugging Face transformers model folder")
    x.add_argument("run_dir")
    x.add_argument("--hf", required=True, help="output folder")
    x.set_defaults(func=cmd_export)

    f = sub.add_parser("finetune", help="fine-tune a run for text classification (and compare with from-scratch)")
    from model.tasks import add_finetune_arguments  # no torch import at CLI start

    add_finetune_arguments(f)
    f.set_defaults(func=cmd_finetune)

    c = sub.add_parser("card", help="show a corpus's data card (terminal tables), write it as HTML, or compare two corpora")
    c.add_argument("dir", nargs="?")
    c.add_argument("--html", nargs="?", const=True, default=None, metavar="PATH",
                   help="also write a self-contained HTML page (default DIR/card.html)")
    c.add_argument("--write", action="store_true", help="regenerate the card from manifest.json and the Parquet files first")
    c.add_argument("--diff", nargs=2, metavar=("A", "B"), help="compare two corpus folders (Markdown on stdout)")
    c.set_defaults(func=cmd_card)

    q = sub.add_parser("quality", help="learned quality scorers for clean.quality (train one from examples)")
    qs = q.add_subparsers(dest="quality_command", required=True)
    qt = qs.add_parser("train", help="train a hashed word n-gram logistic regression scorer; prints held-out accuracy and ROC AUC")
    qt.add_argument("--positive", nargs="+", default=None, metavar="PATH",
                    help="good examples: files, globs or folders (text, JSONL, JSON, Parquet, CSV/TSV)")
    qt.add_argument("--negative", nargs="+", default=None, metavar="PATH", help="bad examples, as --positive")
    qt.add_argument("--test-positive", nargs="+", default=None, metavar="PATH", help="held-out good examples (else --holdout)")
    qt.add_argument("--test-negative", nargs="+", default=None, metavar="PATH", help="held-out bad examples")
    qt.add_argument("--field", nargs="+", default=None, help="JSONL/Parquet fields holding the text (default: every string field)")
    qt.add_argument("--task", default=None, help="a task file of `opencorpus finetune` instead (its test split is held out)")
    qt.add_argument("--positive-label", default=None, help="with --task: the label of the good examples")
    qt.add_argument("--out", required=True, help="model file to write (.npz)")
    qt.add_argument("--chunk-words", type=int, default=None,
                    help="cut training examples into pieces of this many words (held-out ones are scored whole)")
    qt.add_argument("--holdout", type=float, default=0.2, help="share of each class held out when no test files are given")
    qt.add_argument("--bits", type=int, default=18, help="hash buckets = 2**bits")
    qt.add_argument("--steps", type=int, default=300, help="full-batch Adam steps")
    qt.add_argument("--lr", type=float, default=0.05)
    qt.add_argument("--l2", type=float, default=1e-5)
    qt.add_argument("--seed", type=int, default=0)
    qt.add_argument("--threshold", type=float, default=0.5, help="threshold the kept shares are reported at")
    qt.add_argument("--report", default=None, help="also write the figures as JSON here")
    qt.set_defaults(func=cmd_quality_train)
    a = sub.add_parser("ablate", help="build variant corpora, train each over seeds, and report which change beats seed noise")
    a.add_argument("ablation", help="ablation file (see flows/ablate.py and docs/ablations.md)")
    a.add_argument("--workers", type=int, default=2, help="parallel units of the corpus builds")
    a.add_argument("--plan", action="store_true", help="print the plan and stop")
    a.add_argument("--report", action="store_true", help="write the report from the finished runs and stop")
    a.set_defaults(func=cmd_ablate)
    return p


def cmd_ablate(args) -> int:
    _quiet_prefect_defaults()
    # The ablation prints its own progress (plan, corpora, runs); the corpus flows' per-task
    # INFO lines would bury it. Their warnings and errors still show.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flows.ablate import Plan, load_ablation, run_ablation

    if args.plan or args.report:
        from flows.ablation_report import write_report

        plan = Plan(load_ablation(args.ablation), Path("."))
        print(plan.describe() if args.plan else write_report(plan))
        return 0
    from flows.server import prefect_api, start_server_early

    start_server_early()
    with prefect_api():
        print(run_ablation(args.ablation, workers=args.workers))
    return 0


# Errors that name what failed in their message: one line on stderr, no traceback (unless --debug).
USAGE_ERRORS = ("RecipeError", "RecordError", "OutputFolderError", "DataError", "CheckpointError", "TaskError",
                "UsageError", "TextFileError", "QualityModelError", "DecontaminationError", "BlockListError",
                "AblationError", "TaskFileError")


def _error_line(e: BaseException) -> tuple[str, int]:
    """(one line for the user, exit status) of an error that ended a command."""
    import errno

    names = {c.__name__ for c in type(e).__mro__}
    if "EmptyCorpusError" in names:
        return f"error: {e}", 1
    if names & set(USAGE_ERRORS) or isinstance(e, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return f"error: {e}", 2
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return f"error: no space left on the device writing {e.filename or 'an output file'}", 1
    return f"error: {type(e).__name__}: {e} (run again with --debug for the traceback)", 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    args.debug, args.argv = debug, argv + (["--debug"] if debug else [])
    if rest and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.func(args, rest) if getattr(args, "passthrough", False) else args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - every failure ends in one line naming what failed
        if debug:
            raise
        line, status = _error_line(e)
        print(line, file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
