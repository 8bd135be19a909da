"""Acquisition throughput: our sources against the raw reader alone, measured in the same run.

    .venv/bin/python bench/acquire.py [--repeat 5] [--copies 8] [--bench-python ../benchenv-acquire/bin/python]

Rows (median of --repeat runs; ratio = ours / raw reader, in throughput, so < 1 is our overhead):
  - jsonl.gz read      `jsonl` source vs gzip.open + json.loads per line   (MB/s of decompressed JSONL)
  - Parquet read       `parquet` source vs pyarrow iter_batches             (MB/s of text)
  - WARC to text       `warc` source vs fastwarc + resiliparse in a bare loop (docs/s)
  - HTTP download      our Downloader (sha256, manifest, atomic rename) vs requests.get to a file,
                       over the loopback server of the tests                (MB/s)
Inputs are the real files of ../shared/corpora/web, concatenated --copies times.

The HTML extractor choice (resiliparse vs trafilatura) is measured by `--bench-python`, a
separate venv that has trafilatura (not a project dependency):
    python3 -m venv ../benchenv-acquire
    ../benchenv-acquire/bin/pip install trafilatura lxml_html_clean resiliparse
Both extractors then run in that one process on the same HTML pages (every HTML response of
the WARC files); we report pages/s, pages with text, characters kept, and the share of kept
characters that sit in lines repeated on 3+ pages of the same host (template boilerplate:
lower is better), plus word overlap with Common Crawl's own WET text for the page that has one.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
WEB = REPO.parent / "shared" / "corpora" / "web"
JSONL_GZ = WEB / "dolma_CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
WARCS = [WEB / "cc-main-2020-34_resiliparse_warcfile.warc.gz", WEB / "cc-main-2024-22_whirlwind.warc.gz",
         WEB / "dolma_wget_sample-0000.warc.gz", WEB / "dolma_wget_sample-0001.warc.gz"]
WET = WEB / "cc-main-2024-22_whirlwind.warc.wet.gz"


def timed(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


PAIRS: list[tuple[list[float], list[float]]] = []  # (our seconds, raw seconds) per paired() call, in order


def paired(ours, raw, repeat: int):
    """Alternate ours/raw runs (the machine is shared: load drifts), after one untimed warm-up
    of each. Returns median seconds of each, median of the per-pair ratios raw/ours (= our
    throughput relative to the raw reader), and the outputs."""
    out_ours, out_raw = ours(), raw()
    t_ours, t_raw = [], []
    for i in range(repeat):
        for side in ("ours", "raw") if i % 2 == 0 else ("raw", "ours"):  # neither side always second
            t = time.perf_counter()
            if side == "ours":
                out_ours = ours()
                t_ours.append(time.perf_counter() - t)
            else:
                out_raw = raw()
                t_raw.append(time.perf_counter() - t)
    PAIRS.append((t_ours, t_raw))
    ratio = statistics.median(r / o for o, r in zip(t_ours, t_raw))
    return statistics.median(t_ours), statistics.median(t_raw), ratio, out_ours, out_raw


# -- inputs --------------------------------------------------------------------------

def build_inputs(tmp: Path, copies: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = gzip.decompress(JSONL_GZ.read_bytes())
    jsonl_gz = tmp / "docs.jsonl.gz"
    with open(jsonl_gz, "wb") as f:
        for _ in range(copies):  # concatenated gzip members are one valid gzip stream
            f.write(JSONL_GZ.read_bytes())
    rows = [json.loads(l) for l in raw.split(b"\n") if l.strip()]
    table = pa.Table.from_pylist([{"id": f"{r['id']}", "text": r["text"], "url": r.get("metadata", {}).get("url")}
                                  for r in rows])
    parquet = tmp / "docs.parquet"
    pq.write_table(pa.concat_tables([table] * copies), parquet, compression="zstd")
    warcs = []
    for i in range(copies):
        for w in WARCS:
            dst = tmp / f"{i}-{w.name}"
            shutil.copy(w, dst)
            warcs.append(dst)
    return {"jsonl_gz": jsonl_gz, "jsonl_bytes": len(raw) * copies, "parquet": parquet,
            "parquet_text_bytes": sum(len(t.encode()) for t in table.column("text").to_pylist()) * copies,
            "warcs": warcs}


# -- the rows ------------------------------------------------------------------------

def bench_jsonl(inp, repeat):
    from pipeline.sources.files import FileSourceConfig, JsonlSource

    def ours():
        src = JsonlSource(FileSourceConfig(name="b", type="jsonl", paths=[str(inp["jsonl_gz"])]), REPO, REPO)
        return sum(b.docs.num_rows for b in src.read())

    def raw():
        n = 0
        with gzip.open(inp["jsonl_gz"], "rb") as f:
            for line in f:
                if line.strip():
                    rec = json.loads(line)
                    n += isinstance(rec.get("text"), str)
        return n

    t_ours, t_raw, ratio, n1, n2 = paired(ours, raw, repeat)
    assert n1 == n2, (n1, n2)
    mb = inp["jsonl_bytes"] / 1e6
    return ("jsonl.gz read", f"{n1:,} docs, {mb:.1f} MB JSONL", mb / t_ours, mb / t_raw, ratio, "MB/s",
            "gzip.open + json.loads per line")


def bench_parquet(inp, repeat):
    import pyarrow.parquet as pq
    from pipeline.sources.files import FileSourceConfig, ParquetSource

    def ours():
        src = ParquetSource(FileSourceConfig(name="b", type="parquet", paths=[str(inp["parquet"])]), REPO, REPO)
        return sum(b.docs.num_rows for b in src.read())

    def raw():
        return sum(b.num_rows for b in pq.ParquetFile(inp["parquet"]).iter_batches(batch_size=2000))

    t_ours, t_raw, ratio, n1, n2 = paired(ours, raw, repeat)
    assert n1 == n2
    mb = inp["parquet_text_bytes"] / 1e6
    return ("Parquet read", f"{n1:,} docs, {mb:.1f} MB text", mb / t_ours, mb / t_raw, ratio, "MB/s",
            "pyarrow ParquetFile.iter_batches")


def bench_warc(inp, repeat):
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    from pipeline.sources.warc import WarcConfig, WarcSource

    def ours():
        src = WarcSource(WarcConfig(name="b", type="warc", paths=[str(p) for p in inp["warcs"]]), REPO, REPO)
        return sum(b.docs.num_rows for b in src.read())

    def raw():  # the same library calls without batches, metadata, ids or checks
        n = 0
        for p in inp["warcs"]:
            for rec in ArchiveIterator(str(p), record_types=WarcRecordType.response, parse_http=True,
                                       auto_decode="all", fsspec_args=False):
                if rec.http_headers.status_code != 200 or not (rec.http_content_type or "").startswith("text/html"):
                    continue
                body = rec.reader.read()
                text = extract_plain_text(bytes_to_str(body, rec.http_charset or detect_encoding(body)),
                                          preserve_formatting=True, main_content=True, alt_texts=False)
                n += bool(text.strip())
        return n

    # hashing the inputs for provenance is part of our cost: keep it in
    t_ours, t_raw, ratio, n1, n2 = paired(ours, raw, repeat)
    return ("WARC to text", f"{n1:,} pages ({n2:,} raw), {len(inp['warcs'])} files", n1 / t_ours, n2 / t_raw,
            ratio, "docs/s", "fastwarc + resiliparse bare loop")


def bench_download(inp, repeat, tmp: Path):
    import requests

    sys.path.insert(0, str(REPO / "tests"))
    from httpserver import FileServer

    from pipeline.download import Downloader

    big = tmp / "served" / "big.jsonl.gz"
    big.parent.mkdir(exist_ok=True)
    with open(big, "wb") as f:
        for _ in range(4):
            f.write(inp["jsonl_gz"].read_bytes())
    size = big.stat().st_size
    with FileServer({"/s": big.parent}) as srv:
        url = srv.url("/s/big.jsonl.gz")
        runs = iter(range(10 ** 6))

        def ours():
            e = Downloader(tmp / f"raw{next(runs)}", allow_private_networks=True).fetch(url)  # a loopback server
            return e["size"]

        def raw():
            dst = tmp / f"plain{next(runs)}"
            with requests.get(url, stream=True) as r, open(dst, "wb") as f:
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)
            return dst.stat().st_size

        t_ours, t_raw, ratio, n1, n2 = paired(ours, raw, repeat)
    assert n1 == n2 == size
    mb = size / 1e6
    return ("HTTP download (loopback)", f"{mb:.1f} MB file", mb / t_ours, mb / t_raw, ratio, "MB/s",
            "requests.get streamed to a file")


# -- HTML extractor comparison (runs in the bench venv) -------------------------------------

def collect_pages(out: Path):
    """Every HTML 200 response of the web WARCs, as JSON lines {url, html}."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for p in WARCS:
            for rec in ArchiveIterator(str(p), record_types=WarcRecordType.response, parse_http=True,
                                       auto_decode="all", fsspec_args=False):
                if rec.http_headers.status_code != 200 or not (rec.http_content_type or "").startswith("text/html"):
                    continue
                body = rec.reader.read()
                url = rec.headers.get("WARC-Target-URI").strip("<>")
                f.write(json.dumps({"url": url, "html": bytes_to_str(body, rec.http_charset or detect_encoding(body))}) + "\n")
                n += 1
    return n


def extract_worker(pages_path: str, repeat: int):
    """In the bench venv: time each extractor on the same pages; print JSON results."""
    from resiliparse.extract.html2text import extract_plain_text

    pages = [json.loads(l) for l in open(pages_path, encoding="utf-8")]
    extractors = {
        "resiliparse main_content": lambda h: extract_plain_text(h, preserve_formatting=True, main_content=True, alt_texts=False),
        "resiliparse full page": lambda h: extract_plain_text(h, preserve_formatting=True, main_content=False, alt_texts=False),
    }
    try:
        import trafilatura

        extractors["trafilatura (default)"] = lambda h: trafilatura.extract(h) or ""
        extractors["trafilatura favor_recall"] = lambda h: trafilatura.extract(h, favor_recall=True) or ""
    except ImportError as e:  # say so rather than print a table without it
        print(f"trafilatura unavailable in {sys.executable}: {e}", file=sys.stderr)
    out = {}
    for name, fn in extractors.items():
        times, texts = [], None
        for _ in range(repeat):
            t = time.perf_counter()
            texts = [fn(p["html"]) for p in pages]
            times.append(time.perf_counter() - t)
        out[name] = {"seconds": statistics.median(times), "texts": texts}
    print(json.dumps({"urls": [p["url"] for p in pages], "results": out}))


def extraction_quality(urls, texts, wet_text: str, wet_url: str) -> dict:
    host_lines = defaultdict(Counter)
    for u, t in zip(urls, texts):
        for line in set(l.strip() for l in t.splitlines() if len(l.strip()) >= 10):
            host_lines[urlsplit(u).netloc][line] += 1
    kept = sum(len(t) for t in texts)
    boiler = 0
    for u, t in zip(urls, texts):
        common = host_lines[urlsplit(u).netloc]
        boiler += sum(len(l.strip()) for l in t.splitlines() if common.get(l.strip(), 0) >= 3)
    import re

    words = lambda s: set(re.findall(r"\w{4,}", s.lower()))
    wet_overlap = None
    if wet_url in urls:
        ours = words(texts[urls.index(wet_url)])
        theirs = words(wet_text)
        wet_overlap = (len(ours & theirs) / len(theirs) if theirs else 0.0, len(ours & theirs) / len(ours) if ours else 0.0)
    return {"nonempty": sum(bool(t.strip()) for t in texts), "chars": kept, "boiler": boiler / kept if kept else 0.0,
            "wet": wet_overlap}


def bench_extractors(tmp: Path, bench_python: str, repeat: int):
    pages = tmp / "pages.jsonl"
    n = collect_pages(pages)
    proc = subprocess.run([bench_python, __file__, "--extract-worker", str(pages), "--repeat", str(repeat)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"extractor comparison skipped: {bench_python} failed:\n{proc.stderr[-2000:]}")
        return
    if proc.stderr.strip():
        print(proc.stderr.strip()[-2000:])
    data = json.loads(proc.stdout)
    import gzip as _gz

    wet_body = _gz.decompress(WET.read_bytes()).decode()
    wet_text = wet_body.split("\r\n\r\n", 2)[-1]  # after the warcinfo and conversion headers
    wet_url = "https://an.wikipedia.org/wiki/Escopete"
    print(f"\nHTML extraction on the same {n} HTML pages (median of {repeat}; python: {bench_python})\n")
    print("| Extractor | pages/s | ratio vs resiliparse main | pages with text | chars kept | boilerplate share (lines on 3+ pages of a host) | WET word recall / precision (an.wikipedia page) |")
    print("|---|---|---|---|---|---|---|")
    base = data["results"]["resiliparse main_content"]["seconds"]
    for name, r in data["results"].items():
        q = extraction_quality(data["urls"], r["texts"], wet_text, wet_url)
        wet = f"{q['wet'][0]:.2f} / {q['wet'][1]:.2f}" if q["wet"] else "n/a"
        print(f"| {name} | {n / r['seconds']:,.0f} | {base / r['seconds']:.3f} | {q['nonempty']}/{n} | {q['chars']:,} | "
              f"{q['boiler']:.3f} | {wet} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--copies", type=int, default=8, help="concatenate each input this many times")
    ap.add_argument("--bench-python", default=os.environ.get("ACQUIRE_BENCH_PYTHON", str(REPO.parent / "benchenv-acquire" / "bin" / "python")),
                    help="python of a venv with trafilatura, for the extractor comparison ('' to skip)")
    ap.add_argument("--extract-worker", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help="also write the per-run pairs here (the claims bench/all.py reads)")
    args = ap.parse_args()
    if args.extract_worker:
        extract_worker(args.extract_worker, args.repeat)
        return
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="bench-acquire-") as d:
        tmp = Path(d)
        inp = build_inputs(tmp, args.copies)
        rows = [bench_jsonl(inp, args.repeat), bench_parquet(inp, args.repeat), bench_warc(inp, args.repeat),
                bench_download(inp, args.repeat, tmp)]
        print(f"\nAcquisition throughput (median of {args.repeat} runs, inputs x{args.copies}; "
              f"{os.cpu_count()} CPUs)\n")
        print("| What | Data | Ours | Raw reader | Ratio ours/raw (median of pairs) | Unit | Raw reader is |")
        print("|---|---|---|---|---|---|---|")
        for what, data, ours, raw, ratio, unit, baseline in rows:
            print(f"| {what} | {data} | {ours:,.1f} | {raw:,.1f} | {ratio:.2f} | {unit} | {baseline} |")
        if args.json_out:
            claims = [{"claim": f"{what} ({data})", "baseline": baseline, "unit": "s", "better": "lower",
                       "ours": t_ours, "base": t_raw}
                      for (what, data, *_, baseline), (t_ours, t_raw) in zip(rows, PAIRS)]
            Path(args.json_out).write_text(json.dumps({"claims": claims}, indent=1))
        if args.bench_python:
            if Path(args.bench_python).exists():
                bench_extractors(tmp, args.bench_python, args.repeat)
            else:
                print(f"\nextractor comparison skipped: {args.bench_python} not found (see the docstring to create it)")


if __name__ == "__main__":
    main()
