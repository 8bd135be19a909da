#!/usr/bin/env python3
"""Clean-stage benchmarks: speed against datatrove, keep/drop agreement with datatrove, language ID.

    .venv/bin/python bench/clean.py                 # speed: our full chain vs datatrove's chain, same shards, same cores
    .venv/bin/python bench/clean.py --agreement     # per-document keep/drop agreement per rule set (slow: datatrove ~20 docs/s)
    .venv/bin/python bench/clean.py --langid        # py3langid vs lingua: accuracy and speed on ../shared/corpora/multilingual

The corpus is the one ../shared/anchors/make_bench_corpus.py builds from ../shared/corpora
(7,441 documents, 28 MB; built into --work if --corpus is not given).

datatrove runs in its own virtual environment, never in the project's (it is a baseline,
not a dependency). Create it once (offline works against the package registry):

    python3 -m venv ../benchenv-clean
    ../benchenv-clean/bin/pip install "datatrove[processing]==0.10.1" spacy==3.8.18 orjson

and point --dt-python (or $DATATROVE_PYTHON) at its python.

Speed: both sides read the same N JSONL/Parquet shards with W worker processes. Ours maps
`pipeline.clean.clean_shard` over the shards with a process pool (each worker loads the
language model itself; that start-up is inside the timing). datatrove runs
`../shared/anchors/run_datatrove_filters.py chain` (GopherRepetition -> GopherQuality -> C4 ->
FineWeb, defaults) with tasks=N, workers=W; its executor wall time is used. Our chain does
more work than datatrove's: text repair, language identification, the same four rule sets
(C4 and FineWeb switched on, thresholds as datatrove's), and PII replacement.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
ANCHORS = SHARED / "anchors"
DEFAULT_DT_PYTHON = os.environ.get("DATATROVE_PYTHON", str(REPO.parent / "benchenv-clean" / "bin" / "python"))


# ----------------------------------------------------------------------------- corpus


def ensure_corpus(args) -> Path:
    if args.corpus:
        return Path(args.corpus)
    out = Path(args.work) / "corpus"
    corpus = out / "corpus.jsonl"
    if not corpus.exists():
        print(f"building the benchmark corpus into {out} ...", flush=True)
        subprocess.run([sys.executable, str(ANCHORS / "make_bench_corpus.py"), "--out", str(out)], check=True)
    return corpus


def read_corpus(path: Path, limit: int | None = None) -> list[dict]:
    recs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            recs.append(json.loads(line))
            if limit and len(recs) >= limit:
                break
    return recs


def write_shards(recs: list[dict], folder: Path, n_shards: int) -> tuple[list[Path], list[Path]]:
    """The same documents as DOC_SCHEMA Parquet shards (ours) and JSONL shards (datatrove), round-robin."""
    import pyarrow.parquet as pq

    from pipeline.schema import DOC_SCHEMA

    import pyarrow as pa

    pq_dir, js_dir = folder / "documents", folder / "jsonl"
    pq_dir.mkdir(parents=True, exist_ok=True)
    js_dir.mkdir(parents=True, exist_ok=True)
    pq_paths, js_paths = [], []
    for s in range(n_shards):
        part = recs[s::n_shards]
        table = pa.Table.from_pydict(
            {"id": [r["id"] for r in part], "text": [r["text"] for r in part], "source": [r.get("source", "bench") for r in part],
             "license": [None] * len(part), "kind": ["prose"] * len(part), "url": [None] * len(part),
             "path": [None] * len(part), "meta": [None] * len(part)},
            schema=DOC_SCHEMA,
        )
        p = pq_dir / f"part-{s:05d}.parquet"
        pq.write_table(table, p)
        pq_paths.append(p)
        j = js_dir / f"part-{s:05d}.jsonl"
        with open(j, "w", encoding="utf-8") as f:
            for r in part:
                f.write(json.dumps({"id": r["id"], "text": r["text"]}, ensure_ascii=False) + "\n")
        js_paths.append(j)
    return pq_paths, js_paths


# ----------------------------------------------------------------------------- speed


def bench_config():
    from pipeline.clean import CleanConfig

    # Our full chain with the four rule sets datatrove runs, at datatrove's thresholds.
    return CleanConfig(c4={"enabled": True}, fineweb={"enabled": True})


def _clean_one(job):
    from pipeline.clean import clean_shard

    src, out, rej = job
    return clean_shard(src, out, rej, bench_config())


def run_ours(pq_paths: list[Path], work: Path, workers: int) -> tuple[float, dict]:
    from pipeline.records import CleanStats

    jobs = [(p, work / "clean" / p.name, work / "rejected" / f"clean-{p.name}") for p in pq_paths]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        stats = list(pool.map(_clean_one, jobs))
    return time.perf_counter() - t0, CleanStats.merged(stats)


def run_datatrove(dt_python: str, js_dir: Path, work: Path, tasks: int, workers: int) -> tuple[float, dict]:
    cmd = [dt_python, str(ANCHORS / "run_datatrove_filters.py"), "chain", "--input", str(js_dir), "--work", str(work),
           "--tasks", str(tasks), "--workers", str(workers)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"datatrove run failed ({' '.join(cmd)}):\n{res.stderr[-3000:]}")
    line = [x for x in res.stdout.splitlines() if x.startswith("{")][-1]
    out = json.loads(line)
    return out["executor_wall_s"], out


def speed(args):
    corpus = ensure_corpus(args)
    recs = read_corpus(corpus, args.docs)
    n_docs = len(recs)
    mb = sum(len(r["text"].encode("utf-8")) for r in recs) / 1e6
    work = Path(args.work) / "speed"
    pq_paths, js_paths = write_shards(recs, work, args.shards)
    have_dt = Path(args.dt_python).exists()
    if not have_dt:
        print(f"NOTE: {args.dt_python} not found: datatrove is skipped (see this script's docstring to create it)")
    ours, theirs, kept = [], [], None
    for rep in range(args.repeats):
        # alternate the order so that neither side always runs on a warmer machine
        order = ("ours", "dt") if rep % 2 == 0 else ("dt", "ours")
        for side in order:
            if side == "ours":
                t, st = run_ours(pq_paths, work / f"ours-{rep}", args.workers)
                ours.append(t)
                kept = st
            elif have_dt:
                t, _ = run_datatrove(args.dt_python, js_paths[0].parent, work / f"dt-{rep}", args.shards, args.workers)
                theirs.append(t)
        print(f"repeat {rep + 1}: ours {ours[-1]:.2f} s" + (f", datatrove {theirs[-1]:.2f} s" if theirs else ""), flush=True)
    mo = statistics.median(ours)
    print()
    print(f"corpus: {n_docs:,} documents, {mb:.1f} MB text, {args.shards} shards, {args.workers} workers, {args.repeats} repeats (median)")
    print("| chain | wall s (median) | docs/s | MB/s | ratio |")
    print("|---|---|---|---|---|")
    if theirs:
        mt = statistics.median(theirs)
        print(f"| datatrove 0.10.1: GopherRepetition, GopherQuality, C4Quality, FineWebQuality | {mt:.2f} | {n_docs / mt:,.0f} | {mb / mt:.2f} | 1.00 |")
    line = f"| opencorpus clean: repair, language ID, same 4 rule sets, PII | {mo:.2f} | {n_docs / mo:,.0f} | {mb / mo:.2f} |"
    print(line + (f" {statistics.median(theirs) / mo:.2f} |" if theirs else " - |"))
    if theirs:
        paired = [t / o for t, o in zip(theirs, ours)]
        print(f"per-repeat ratio (datatrove wall / ours, same repeat): {', '.join(f'{r:.2f}' for r in paired)}; "
              f"median {statistics.median(paired):.2f}")
    if args.json_out and theirs:
        Path(args.json_out).write_text(json.dumps({"claims": [{
            "claim": f"clean chain, {n_docs:,} docs, {args.workers} workers, vs datatrove's four filters",
            "baseline": "datatrove 0.10.1 (4 filters chained)", "unit": "s", "better": "lower",
            "ours": ours, "base": theirs}]}, indent=1))
    print(f"ours kept {kept.docs_out:,} of {kept.docs_in:,} (default script-aware words and language-aware stop words)")


# ----------------------------------------------------------------------------- agreement


def compat_config():
    """Our rule sets configured exactly as datatrove's defaults: its tokenizer on all text, stop words for every language."""
    from pipeline.clean import CleanConfig

    return CleanConfig(script_aware_words=False,
                       gopher_quality={"stop_words_languages": None, "alpha_ratio_ignores_punctuation": False},
                       c4={"enabled": True, "end_punctuation": [".", "?", "!", '"', "'"]}, fineweb={"enabled": True})


def our_decisions(recs: list[dict]) -> dict[str, dict]:
    from pipeline.clean.rules import C4Quality, Doc, FineWebQuality, GopherQuality, GopherRepetition

    c = compat_config()
    sets = {"gopher_repetition": GopherRepetition(c.gopher_repetition), "gopher_quality": GopherQuality(c.gopher_quality),
            "c4": C4Quality(c.c4), "fineweb": FineWebQuality(c.fineweb)}
    out = {}
    for r in recs:
        row = {}
        for name, rs in sets.items():
            rej = rs.check(Doc(r["text"], script_aware=False))
            row[name] = None if rej is None else f"{rej.filter}: {rej.reason}"
        doc = Doc(r["text"], script_aware=False)
        row["chain"] = None
        for rs in sets.values():
            rej = rs.check(doc)
            if rej is not None:
                row["chain"] = f"{rej.filter}: {rej.reason}"
                break
        out[r["id"]] = row
    return out


def agreement(args):
    corpus = ensure_corpus(args)
    recs = read_corpus(corpus, args.docs)
    work = Path(args.work) / "agreement"
    work.mkdir(parents=True, exist_ok=True)
    src = work / "input.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps({"id": r["id"], "text": r["text"]}, ensure_ascii=False) + "\n")
    dt_out = work / "datatrove_decisions.jsonl"
    print(f"datatrove decisions for {len(recs):,} documents (one process; about 20 docs/s) ...", flush=True)
    t0 = time.perf_counter()
    subprocess.run([args.dt_python, str(REPO / "bench" / "clean_datatrove_decisions.py"), str(src), str(dt_out)], check=True)
    print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
    theirs = {}
    with open(dt_out, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            theirs[row["id"]] = row
    ours = our_decisions(recs)
    names = ["gopher_repetition", "gopher_quality", "c4", "fineweb", "chain"]
    print()
    print(f"{len(recs):,} documents of {corpus}")
    print("| rule set | same decision | agreement | datatrove drops | we drop | both drop | only datatrove drops | only we drop |")
    print("|---|---|---|---|---|---|---|---|")
    disagreements = {}
    for name in names:
        same = dt_drop = we_drop = both = only_dt = only_we = 0
        rows = []
        for r in recs:
            a, b = theirs[r["id"]][name], ours[r["id"]][name]
            dt_drop += a is not None
            we_drop += b is not None
            if (a is None) == (b is None):
                same += 1
                both += a is not None
            else:
                only_dt += a is not None
                only_we += b is not None
                rows.append({"id": r["id"], "datatrove": a, "ours": b, "text": r["text"][:300]})
        disagreements[name] = rows
        print(f"| {name} | {same:,} / {len(recs):,} | {same / len(recs):.4f} | {dt_drop:,} | {we_drop:,} | {both:,} | {only_dt} | {only_we} |")
    path = work / "disagreements.json"
    path.write_text(json.dumps(disagreements, ensure_ascii=False, indent=1))
    print(f"\ndisagreements (id, both decisions, text head): {path}")


# ----------------------------------------------------------------------------- language ID


def langid(args):
    folder = SHARED / "corpora" / "multilingual" / "lingua_sentences"
    from lingua import Language, LanguageDetectorBuilder

    from pipeline.clean.language import _identifier

    py3 = _identifier()
    py3_langs = set(py3.labels)
    lingua_langs = {lang.iso_code_639_1.name.lower(): lang for lang in Language.all()}
    files = sorted(folder.glob("*.txt"))
    langs = [f.stem for f in files if f.stem in py3_langs and f.stem in lingua_langs]
    samples: list[tuple[str, str, str]] = []  # (true language, unit, text)
    for lang in langs:
        lines = [x for x in (folder / f"{lang}.txt").read_text(encoding="utf-8").splitlines() if x.strip()]
        for s in lines[: args.sentences]:
            samples.append((lang, "sentence", s))
        for i in range(0, min(len(lines), 5 * args.paragraphs), 5):
            samples.append((lang, "5 sentences", " ".join(lines[i : i + 5])))
    detector = LanguageDetectorBuilder.from_all_languages().build()
    detector_low = LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()
    _ = detector.detect_language_of("warm up the models"), detector_low.detect_language_of("warm up")

    def run_py3(text):
        return py3.classify(text)[0]

    def run_lingua(det):
        def f(text):
            lang = det.detect_language_of(text)
            return lang.iso_code_639_1.name.lower() if lang is not None else None
        return f

    candidates = [("py3langid 0.4 (97 languages)", run_py3), ("lingua 2.x high accuracy (75 languages)", run_lingua(detector)),
                  ("lingua 2.x low accuracy mode", run_lingua(detector_low))]
    print(f"{len(langs)} languages both support; {args.sentences} sentences and {args.paragraphs} five-sentence paragraphs per language")
    print("| detector | accuracy, sentences | accuracy, 5 sentences | texts/s (1 core) | worst languages (sentence accuracy) |")
    print("|---|---|---|---|---|")
    for name, fn in candidates:
        correct = {"sentence": 0, "5 sentences": 0}
        total = {"sentence": 0, "5 sentences": 0}
        per_lang: dict[str, list[int]] = {}
        t0 = time.perf_counter()
        preds = [fn(text) for _, _, text in samples]
        dt = time.perf_counter() - t0
        for (lang, unit, _), p in zip(samples, preds):
            total[unit] += 1
            ok = p == lang or (lang == "nb" and p == "no") or (lang == "no" and p == "nb")
            correct[unit] += ok
            if unit == "sentence":
                per_lang.setdefault(lang, [0, 0])
                per_lang[lang][0] += ok
                per_lang[lang][1] += 1
        worst = sorted(per_lang.items(), key=lambda kv: kv[1][0] / kv[1][1])[:4]
        worst_s = ", ".join(f"{k} {v[0] / v[1]:.2f}" for k, v in worst)
        print(f"| {name} | {correct['sentence'] / total['sentence']:.4f} | {correct['5 sentences'] / total['5 sentences']:.4f} "
              f"| {len(samples) / dt:,.0f} | {worst_s} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agreement", action="store_true", help="keep/drop agreement with datatrove per rule set")
    ap.add_argument("--langid", action="store_true", help="compare py3langid and lingua")
    ap.add_argument("--corpus", help="corpus.jsonl (default: built with ../shared/anchors/make_bench_corpus.py)")
    ap.add_argument("--work", default=str(REPO / "bench" / "results" / "clean"), help="scratch folder")
    ap.add_argument("--dt-python", default=DEFAULT_DT_PYTHON, help="python of the datatrove venv ($DATATROVE_PYTHON)")
    ap.add_argument("--docs", type=int, default=None, help="use only the first N documents")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json-out", help="speed: also write the per-repeat pairs here (the claims bench/all.py reads)")
    ap.add_argument("--sentences", type=int, default=200, help="--langid: sentences per language")
    ap.add_argument("--paragraphs", type=int, default=40, help="--langid: five-sentence paragraphs per language")
    args = ap.parse_args()
    if args.langid:
        langid(args)
    elif args.agreement:
        agreement(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
