"""Tokenize stage throughput against the bare `tokenizers` encoder, measured in the same run.

    .venv/bin/python bench/tokenize_speed.py [--repeat 3] [--corpus corpus.jsonl | --shards DIR] [--vocab 8192]

Input: the anchors' benchmark corpus (7,441 documents, 27.6 MB of English and multilingual
text; built with ../shared/anchors/make_bench_corpus.py into a temporary folder unless
--corpus names its corpus.jsonl), written untimed as CLEAN_SCHEMA Parquet shards of 1,000
documents, or --shards: a folder of existing CLEAN_SCHEMA shards (e.g. DIR/dedup).
A byte-level BPE (--vocab) is trained once by the stage's own train_tokenizer (timed, reported).

Rows (median of --repeat runs, in an interleaved order so load drifts hit every row alike):
  bare encode_batch        Tokenizer.encode_batch(all texts) on texts already in memory:
                           the named baseline (the anchors measured it at ~8 MB/s on 2 cores)
  bare encode_batch_fast   the same without offsets (the call the stage uses)
  stage, workers=1         tokenize_corpus end to end: read Parquet, encode, split, write
                           train/val shards + index.json (tokenizers' threads use every core)
  stage, workers=2         the same with 2 encoder processes
Throughput is UTF-8 text bytes and text tokens (end-of-text tokens excluded) per wall second;
ratio = row / bare encode_batch (and / encode_batch_fast). CPU seconds (this process and its
children) are shown too: on a shared machine they are steadier than wall time.

Memory: --rss runs the stage once more in a fresh process per --workers value and reports
its peak RSS (encoder processes included), to show that memory follows the batch and row
group sizes, not the corpus: compare --scale 1 with --scale 5 (a 5x larger corpus).

Disk: bytes of the train+val shards per token (end-of-text included) against a raw uint16
array (2 bytes/token, nanoGPT's .bin) and that array compressed with zstd level 3.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# This file is named like the stdlib module `tokenize`; keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ANCHORS = REPO.parent / "shared" / "anchors"


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def build_shards(args, tmp: Path) -> list[Path]:
    import pyarrow as pa

    from pipeline.io import list_shards, write_parquet
    from pipeline.schema import CLEAN_SCHEMA, conform

    if args.shards:
        return list_shards(args.shards)
    corpus = Path(args.corpus) if args.corpus else None
    if corpus is None:
        print("building the benchmark corpus with make_bench_corpus.py ...", file=sys.stderr)
        subprocess.run([sys.executable, str(ANCHORS / "make_bench_corpus.py"), "--out", str(tmp / "corpus"),
                        "--scale", str(args.scale)], check=True, stdout=subprocess.DEVNULL)
        corpus = tmp / "corpus" / "corpus.jsonl"
    rows = [json.loads(line) for line in open(corpus, encoding="utf-8")]
    paths = []
    for k in range(0, len(rows), 1000):
        chunk = rows[k : k + 1000]
        sources = [r["source"] for r in chunk]
        table = pa.table(
            {
                "id": [r["id"] for r in chunk],
                "text": [r["text"] for r in chunk],
                "source": [s.split("/")[0].split("_")[0] for s in sources],
                # lingua_sentences files are named by language; the rest is English but the poetry.
                "language": [s.split("_")[1] if s.startswith("lingua_") else "zh" if s.startswith("chinese") else "en"
                             for s in sources],
            }
        )
        paths.append(write_parquet(conform(table, CLEAN_SCHEMA), tmp / "dedup" / f"part-{k // 1000:05d}.parquet"))
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--corpus", help="corpus.jsonl of make_bench_corpus.py (default: build it)")
    ap.add_argument("--shards", help="folder of CLEAN_SCHEMA part-*.parquet shards instead of --corpus")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="stage rows to run")
    ap.add_argument("--keep", help="keep the work folder here instead of a temporary one")
    ap.add_argument("--scale", type=int, default=1, help="replicas of the benchmark corpus (make_bench_corpus --scale)")
    ap.add_argument("--train-sample-mb", type=float, default=100, help="train_sample_bytes of the tokenizer, in MB")
    ap.add_argument("--rss", action="store_true", help="only measure the stage's peak RSS in a fresh process")
    ap.add_argument("--json-out", help="also write the per-repeat pairs here (the claims bench/all.py reads)")
    args = ap.parse_args()

    import numpy as np
    import pyarrow.parquet as pq
    import tokenizers
    import zstandard

    from pipeline.tokenize import TokenizeConfig, tokenize_corpus, train_tokenizer

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-tokenize-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        shards = build_shards(args, tmp)
        config = TokenizeConfig(vocab_size=args.vocab, train_sample_bytes=int(args.train_sample_mb * 1e6))
        t = time.perf_counter()
        tok = train_tokenizer(shards, tmp / "tokenizer.json", config)
        train_s = time.perf_counter() - t

        if args.rss:
            return peak_rss(shards, tmp, config, args.workers)

        texts = [t for p in shards for t in pq.read_table(p, columns=["text"])["text"].to_pylist()]
        text_bytes = sum(len(t.encode("utf-8")) for t in texts)
        text_tokens = sum(len(e.ids) for e in tok.encode_batch_fast(texts, add_special_tokens=False))

        def bare(method):
            def run():
                getattr(tok, method)(texts, add_special_tokens=False)
            return run

        def stage(workers):
            def run():
                out = tmp / f"tokens-w{workers}"
                return tokenize_corpus(shards, tmp / "tokenizer.json", out, config, workers=workers)
            return run

        rows = {"bare encode_batch": bare("encode_batch"), "bare encode_batch_fast": bare("encode_batch_fast")}
        rows.update({f"stage, workers={w}": stage(w) for w in args.workers})
        wall = {k: [] for k in rows}
        cpu = {k: [] for k in rows}
        stats = None
        for r in range(args.repeat):
            order = list(rows) if r % 2 == 0 else list(reversed(rows))
            for name in order:
                c, t = cpu_seconds(), time.perf_counter()
                out = rows[name]()
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(cpu_seconds() - c)
                if out is not None:
                    stats = out
                    assert out.tokens_train + out.tokens_val - out.docs_out == text_tokens, "token count mismatch"
            print(f"repeat {r + 1}/{args.repeat}: " + ", ".join(f"{k} {wall[k][-1]:.2f}s" for k in rows), file=sys.stderr)

        base = statistics.median(wall["bare encode_batch"])
        fast = statistics.median(wall["bare encode_batch_fast"])
        print(f"\ntokenizers {tokenizers.__version__}, {os.cpu_count()} CPUs, RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'unset')}, "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"corpus: {len(texts):,} documents, {text_bytes / 1e6:.2f} MB of text, {text_tokens:,} text tokens "
              f"({text_bytes / text_tokens:.3f} bytes/token), vocab {tok.get_vocab_size()}; "
              f"train_tokenizer {train_s:.2f} s (sample {config.train_sample_bytes / 1e6:.0f} MB cap)\n")
        print("| Row | median wall s (runs) | MB/s | tokens/s | ratio vs encode_batch | ratio vs encode_batch_fast | CPU s (median) |")
        print("|---|---|---|---|---|---|---|")
        for name in rows:
            med = statistics.median(wall[name])
            runs = ", ".join(f"{x:.2f}" for x in wall[name])
            print(f"| {name} | {med:.2f} ({runs}) | {text_bytes / 1e6 / med:.2f} | {text_tokens / med / 1e6:.2f} M | "
                  f"{base / med:.2f}x | {fast / med:.2f}x | {statistics.median(cpu[name]):.2f} |")

        if args.json_out:
            claims = [{"claim": f"tokenize stage, workers={w}, vs bare encode_batch", "baseline": "tokenizers encode_batch",
                       "unit": "s", "better": "lower", "ours": wall[f"stage, workers={w}"], "base": wall["bare encode_batch"]}
                      for w in args.workers]
            Path(args.json_out).write_text(json.dumps({"claims": claims, "docs": len(texts), "text_bytes": text_bytes,
                                                       "tokens": text_tokens}, indent=1))

        out = tmp / f"tokens-w{args.workers[0]}"
        index = json.loads((out / "index.json").read_text())
        all_tokens = index["totals"]["train"]["tokens"] + index["totals"]["val"]["tokens"]
        on_disk = sum((out / e["file"]).stat().st_size for e in index["shards"])
        ids = np.concatenate(
            [np.concatenate(pq.read_table(out / e["file"], columns=["input_ids"])["input_ids"].to_numpy(zero_copy_only=False))
             for e in index["shards"]]
        ).astype(np.uint16)
        zstd_raw = len(zstandard.ZstdCompressor(level=3).compress(ids.tobytes()))
        print("\n| Storage | bytes | bytes/token | vs raw uint16 |")
        print("|---|---|---|---|")
        for name, size in (("raw uint16 array (.bin)", 2 * all_tokens), ("raw uint16 + zstd -3", zstd_raw),
                           ("our Parquet shards (id, input_ids, n_tokens; zstd)", on_disk)):
            print(f"| {name} | {size:,} | {size / all_tokens:.3f} | {size / (2 * all_tokens):.2f}x |")
        print(f"\n{all_tokens:,} tokens incl. end-of-text; {len(index['shards'])} shards; "
              f"stats: docs_train {stats.docs_train}, docs_val {stats.docs_val}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


# ru_maxrss survives exec on Linux (a child starts with its forking parent's peak), so the
# stage process samples its own RSS from /proc instead.
RSS_CHILD = """
import json, resource, sys, threading, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from pipeline.tokenize import TokenizeConfig, tokenize_corpus
PEAK = [0]
def sample():
    while True:
        PEAK[0] = max(PEAK[0], int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize())
        time.sleep(0.05)
if __name__ == "__main__":
    threading.Thread(target=sample, daemon=True).start()
    t = time.perf_counter()
    stats = tokenize_corpus([Path(p) for p in {shards!r}], Path({tok!r}), Path({out!r}), TokenizeConfig.model_validate_json({cfg!r}), workers={workers})
    print(json.dumps({{"seconds": time.perf_counter() - t, "bytes_in": stats.bytes_in, "tokens": stats.tokens_train + stats.tokens_val,
                      "self_mb": PEAK[0] / 2**20,
                      "children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""


def peak_rss(shards, tmp: Path, config, workers_list) -> None:
    print("| workers | text MB | tokens | wall s | peak RSS of the stage process (sampled) | largest encoder process (ru_maxrss) |")
    print("|---|---|---|---|---|---|")
    for workers in workers_list:
        code = RSS_CHILD.format(repo=str(REPO), shards=[str(p) for p in shards], tok=str(tmp / "tokenizer.json"),
                                out=str(tmp / f"rss-w{workers}"), cfg=config.model_dump_json(), workers=workers)
        script = tmp / "rss_child.py"
        script.write_text(code)
        res = json.loads(subprocess.run([sys.executable, str(script)], check=True, capture_output=True, text=True).stdout)
        kids = f"{res['children_mb']:.0f} MB" if res["children_mb"] else "-"
        print(f"| {workers} | {res['bytes_in'] / 1e6:.1f} | {res['tokens']:,} | {res['seconds']:.1f} | {res['self_mb']:.0f} MB | {kids} |")


if __name__ == "__main__":
    main()
