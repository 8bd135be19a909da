"""Robustness battery of issues 16 and 21: hostile inputs, hostile folders and hostile
signals, each run through the real command line, end to end.

    .venv/bin/python bench/battery.py [--only NAME[,NAME...]] [--keep] [--list]

Every case writes its own inputs (seeded, generated here; nothing is read from ../shared)
into a fresh temporary folder, runs

    .venv/bin/python -m flows.cli run RECIPE --output DIR --workers 1 --cards-dir ''

as a subprocess (its own PREFECT_HOME, telemetry off, Hugging Face offline) and checks
the outcome:

* the exit status (0 done, 1 failed, 2 bad input or usage, 130 interrupted);
* on failure, that stderr's last `error:` line names what failed (the source, the file,
  the stage) and that stderr holds no Python traceback;
* conservation: every record the case wrote ends in `documents/` or `rejected/ingest-*`
  (rows counted with pyarrow) - nothing is silently lost;
* what the case is about (the rejected reason, the manifest's counters, the user's own
  files byte for byte, processes left behind, peak memory, identical reruns).

It prints a table (case | expected | observed | verdict | seconds) and exits 1 if any
case fails. A FAIL means that a promise of the README's Decisions / Known limits (or of
issues 16 and 21) does not hold on this checkout: the observed column says what happened
instead; rerun that case alone with `--only NAME --keep` and look at its folder (printed)
and its `run-*.log` files, which hold each command's stdout and stderr.

ctrl_c, kill_9, huge_lines and killed_in_clean build a corpus of a few tens of MB and take
minutes each; the others are small and take about the start-up time of one run (Prefect's
temporary server: 10-30 s). The network and crawl cases (warc_dechunked onwards) serve their
files from the loopback server of tests/httpserver.py (faults injected, requests counted)
and write their WARC files with warcio's writer (tests/hostile_fixtures.py, shared with
tests/test_hostile_network.py); dead_server waits out the downloader's retries (about a
minute) and two_runs_one_folder holds its first run for 45 s.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
RUN_TIMEOUT_S = 900  # one command; a run that hangs is a FAIL, not a hung battery


# --------------------------------------------------------------------------- text and files


_NOUNS = ("river stone cloud garden window music paper light ocean forest morning village teacher student market "
          "letter mountain harbor bridge library kitchen engine winter summer island station painter doctor farmer "
          "story picture evening question answer journey country city road field flower animal bird house school "
          "family friend child language history science machine computer company water table chair door street "
          "night money business problem system program number group government world person month example point "
          "report office health power course result change reason research").split()
_VERBS = ("carried found opened closed watched followed built painted wrote read reached crossed visited described "
          "measured studied changed moved helped joined started finished remembered noticed explained discovered "
          "collected repaired planted cleaned shared").split()
_ADJS = ("quiet bright small large old young green cold warm heavy gentle narrow wide early late strange simple "
         "careful famous busy empty distant ancient modern local public private ordinary").split()
_ADVS = "slowly quickly carefully often rarely again later soon together quietly".split()
_PLACES = ("near the river", "across the valley", "in the old town", "under the bridge", "at the station",
           "beside the road", "inside the house")


def _sentence(rng: random.Random) -> str:
    a, n, v = (lambda: rng.choice(_ADJS)), (lambda: rng.choice(_NOUNS)), (lambda: rng.choice(_VERBS))
    s = rng.choice((
        lambda: f"the {a()} {n()} {v()} the {n()} {rng.choice(_PLACES)}",
        lambda: f"a {n()} of the {a()} {n()} was {v()} by the {n()} and {rng.choice(_ADVS)} {v()} again",
        lambda: f"when the {n()} {v()} a {a()} {n()}, the {n()} that we had {v()} was {a()}",
        lambda: f"it is {a()} to see that the {n()} has {v()} with {rng.randint(2, 90)} {n()}s {rng.choice(_PLACES)}",
        lambda: f"my {n()} and her {a()} {n()} {rng.choice(_ADVS)} {v()} this {n()} for the {n()}",
        lambda: f"there was a {a()} {n()} who {v()} our {n()} because it was {a()} and {a()}",
    ))()
    return s[0].upper() + s[1:] + "."


def english(rng: random.Random, chars: int = 1500, paragraphs: bool = True) -> str:
    """Seeded English-like prose that passes the default clean rules and has no near duplicates."""
    out, n = [], 0
    while n < chars:
        para = " ".join(_sentence(rng) for _ in range(rng.randint(3, 6)))
        out.append(para)
        n += len(para) + 2
    return ("\n\n" if paragraphs else " ").join(out)


def docs(seed: int, n: int, chars: int = 1500, ids: str | None = "d") -> list[dict]:
    """n JSONL records ({"id", "text"}, or {"text"} when ids is None)."""
    rng = random.Random(seed)
    return [({"id": f"{ids}{i}"} if ids else {}) | {"text": english(rng, chars)} for i in range(n)]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def write_recipe(folder: Path, sources: list[dict], **sections) -> Path:
    import yaml

    data = {"name": "battery", "sources": sources, "ingest": {"shard_docs": 1000},
            "tokenize": {"vocab_size": 300, "val_fraction": 0.1}} | sections
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- running the CLI


@dataclass
class Result:
    args: list[str]
    rc: int | None
    stdout: str
    stderr: str
    seconds: float

    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]

    def last_error(self) -> str:
        e = self.errors()
        return e[-1] if e else ""

    def has_traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr or "Traceback (most recent call last)" in self.stdout

    def tail(self, n: int = 3) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return " / ".join(lines[-n:])


class Case:
    """What a case function gets: its folder, and a way to run the CLI there."""

    def __init__(self, folder: Path):
        self.dir = folder
        self.prefect_home = folder / "prefect-home"
        self.runs = 0

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "OPENCORPUS_SUPERVISED"}
        return env | {"PREFECT_HOME": str(self.prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                      "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}

    def command(self, *args: str, unprivileged: bool = False) -> list[str]:
        # root reads any folder: without these two capabilities it obeys permissions like a user
        drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if unprivileged and os.geteuid() == 0 else []
        return [*drop, PYTHON, "-m", "flows.cli", *args]

    def run_args(self, recipe: Path, out: Path, *extra: str) -> list[str]:
        return ["run", str(recipe), "--output", str(out), "--workers", "1", "--cards-dir", "", *extra]

    def _log(self):
        self.runs += 1
        return open(self.dir / f"run-{self.runs}.log", "w+", encoding="utf-8", errors="replace")

    def cli(self, *args: str, timeout: float = RUN_TIMEOUT_S, unprivileged: bool = False) -> Result:
        """Run `python -m flows.cli ARGS` to its end; stdout and stderr kept (and logged in the case folder)."""
        t0 = time.perf_counter()
        with self._log() as log, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(self.command(*args, unprivileged=unprivileged), cwd=ROOT, env=self.env(), stdout=log, stderr=err,
                                    start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_run(proc.pid, self.prefect_home)
                rc = None
            err.seek(0)
            stderr = err.read()
            log.write("\n--- stderr ---\n" + stderr)
            log.seek(0)
            stdout = log.read().split("\n--- stderr ---\n")[0]
        return Result(list(args), rc, stdout, stderr, time.perf_counter() - t0)

    def start(self, *args: str) -> subprocess.Popen:
        """Start `python -m flows.cli ARGS` in a session of its own (as a terminal would), output to a log."""
        log = self._log()
        proc = subprocess.Popen(self.command(*args), cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        proc.log_path = log.name  # type: ignore[attr-defined]
        log.close()
        return proc

    def run_processes(self, *sessions: int) -> list[tuple[int, str]]:
        return run_processes(self.prefect_home, sessions)


# --------------------------------------------------------------------------- processes of a run


def _proc_stat(pid: str) -> tuple[int, int] | None:
    """(parent pid, session id) of a process, from /proc/PID/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "
    if fields[0] == "Z":  # a zombie holds nothing; its parent has not reaped it yet
        return None
    return int(fields[1]), int(fields[3])


def run_processes(prefect_home: Path, sessions=()) -> list[tuple[int, str]]:
    """(pid, command line) of every live process of a run: in one of `sessions` (the supervisor's
    and its child's), or carrying the case's PREFECT_HOME in its environment (every process
    the run starts inherits it, even one that left the session)."""
    marker = f"PREFECT_HOME={prefect_home}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        stat = _proc_stat(entry)
        if stat is None:
            continue
        mine = stat[1] in sessions
        if not mine:
            try:
                mine = marker in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
        if mine:
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            found.append((int(entry), cmd))
    return found


def child_sessions(pid: int) -> set[int]:
    """Sessions of the direct children of `pid` (the supervisor starts its work in a new one)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(entry)
            if stat and stat[0] == pid:
                out.add(stat[1])
    return out


def kill_run(pid: int, prefect_home: Path):
    """SIGKILL every process of a run this battery started (its session, its child's, its PREFECT_HOME)."""
    sessions = {pid} | child_sessions(pid)
    for s in sessions:
        try:
            os.killpg(s, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for p, _ in run_processes(prefect_home, sessions):
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def peak_rss(pid: int) -> int:
    """VmHWM (peak resident set) of a process in bytes, 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------- reading outputs


def rows(paths) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def table(paths):
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = sorted(paths)
    return pa.concat_tables([pq.read_table(p) for p in paths]) if paths else None


def documents(out: Path, skip: set[Path] = frozenset()):
    return table(p for p in (out / "documents").glob("*.parquet") if p not in skip)


def rejected(out: Path, stage: str = "ingest") -> list[dict]:
    t = table((out / "rejected").glob(f"{stage}-*.parquet"))
    return t.to_pylist() if t is not None else []


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def conservation(out: Path, written: int, skip: set[Path] = frozenset()) -> str | None:
    """None when every record written is a document or an ingest rejection; else what is off."""
    kept = rows(p for p in (out / "documents").glob("*.parquet") if p not in skip)
    dropped = rows((out / "rejected").glob("ingest-*.parquet"))
    if kept + dropped != written:
        return f"conservation: {written} records written, {kept} documents + {dropped} rejected = {kept + dropped}"
    return None


def stray_temporaries(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob(".tmp-*") if ".opencorpus" not in p.relative_to(out).parts)


class Checks:
    """Collects what did not hold; `observed` is a short summary either way."""

    def __init__(self):
        self.failures: list[str] = []
        self.facts: list[str] = []

    def fact(self, text: str):
        self.facts.append(text)

    def expect(self, ok: bool, failure: str) -> bool:
        if not ok:
            self.failures.append(failure)
        return ok

    def exit(self, r: Result, want: int | None) -> bool:
        if r.rc is None:
            return self.expect(False, f"`{' '.join(r.args[:2])}` timed out after {r.seconds:.0f} s")
        return self.expect(r.rc == want, f"exit {r.rc}, expected {want}: {r.tail()}")

    def no_traceback(self, r: Result) -> bool:
        return self.expect(not r.has_traceback(), "a Python traceback on stderr")

    def one_error(self, r: Result, *must_name: str) -> bool:
        errs = r.errors()
        ok = self.expect(len(errs) == 1, f"{len(errs)} `error:` lines on stderr, expected 1: {r.tail()}")
        line = r.last_error()
        for name in must_name:
            ok &= self.expect(name in line, f"error line does not name {name!r}: {line!r}")
        return ok and self.no_traceback(r)

    def conserved(self, out: Path, written: int, skip: set[Path] = frozenset()):
        problem = conservation(out, written, skip)
        self.expect(problem is None, problem or "")

    def outcome(self) -> tuple[bool, str]:
        return (not self.failures), "; ".join(self.failures or self.facts)


# --------------------------------------------------------------------------- the cases
# Each case builds its inputs in `c.dir`, runs the command line and returns (passed, observed).

FILLER = 30  # normal documents added to a small case, so the corpus has something to tokenize


def case_lone_surrogate(c: Case):
    records = docs(1, FILLER)
    line = json.dumps({"id": "cut", "text": english(random.Random(2)) + " a cut emoji "}).replace(
        "a cut emoji", "a cut emoji \\ud83d here")
    path = write_jsonl(c.dir / "in" / "a.jsonl", records)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
    recipe = write_recipe(c.dir, [{"name": "s", "type": "jsonl", "paths": ["in/*.jsonl"]}])
    out = c.dir / "out"
    r = c.cli(*c.run_args(recipe, out))
    k = Checks()
    if k.exit(r, 0):
        texts = {d["id"]: d["text"] for d in documents(out).select(["id", "text"]).to_pylist()}
        k.expect("cut" in texts and "emoji \ufffd here" in texts.get("cut", ""), "document 'cut' not kept with U+FFFD")
        n = manifest(out)["stages"]["ingest"]["sources"]["s"].get("surrogates_replaced")
        k.expect(n == 1, f"surrogates_replaced = {n}, expected 1")
        k.conserved(out, FILLER + 1)
        k.fact(f"exit 0, kept with U+FFFD, surrogates_replaced={n}")
    return k.outcome()


def case_deep_nesting(c: Case):
    path = write_jsonl(c.dir / "in" / "n.jsonl", docs(3, FILLER // 2))
    deep = '{"id": "deep", "text": "x", "m": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with open(path, "a", encoding="utf-8") as f:
        f.write(deep + "\n")
        for rec in docs(4, FILLER // 2, ids="e"):
            f.write(json.dumps(rec) + "\n")
    recipe = write_recipe(c.dir, [{"name": "s", "type": "jsonl", "paths": ["in/n.jsonl"]}])
    out = c.dir / "out"
    r = c.cli(*c.run_args(recipe, out))
    k = Checks()
    if k.exit(r, 0):
        rej = rejected(out)
        line = FILLER // 2 + 1
        k.expect(len(rej) == 1 and rej[0]["filter"] == "invalid_json" and f"n.jsonl:{line}" in rej[0]["reason"],
                 f"rejected: {[(x['filter'], x['reason'][:80]) for x in rej]}")
        k.expect(documents(out).num_rows == FILLER, f"{documents(out).num_rows} documents kept, expected {FILLER}")
        k.conserved(out, FILLER + 1)
        k.fact(f"exit 0, line {line} rejected invalid_json ({rej[0]['reason'][-40:]!r})" if rej else "exit 0")
    k.expect(r.seconds < 120, f"run took {r.seconds:.0f} s (limit 120)")
    return k.outcome()


def case_huge_integer(c: Case):
    path = write_jsonl(c.dir / "in" / "b.jsonl", docs(5, FILLER))
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"id": "big", "text": ' + json.dumps(english(random.Random(6))) + ', "count": ' + "7" * 5000 + "}\n")
    recipe = write_recipe(c.dir, [{"name": "s", "type": "jsonl", "paths": ["in/*.jsonl"]}])
    out = c.dir / "out"
    r = c.cli(*c.run_args(recipe, out))
    k = Checks()
    if k.exit(r, 0):
        kept = {d["id"]: d["meta"] for d in documents(out).select(["id", "meta"]).to_pylist()}
        k.expect("big" in kept, "document 'big' not kept")
        count = json.loads(kept.get("big") or "{}").get("count")
        k.expect(count == "7" * 5000, f"meta count is {str(count)[:20]!r}, expected the 5,000 digits")
        k.expect(not rejected(out), f"{len(rejected(out))} records rejected at ingest")
        k.conserved(out, FILLER + 1)
        k.fact("exit 0, kept, meta.count = its 5,000 digits")
    return k.outcome()


def case_bzh_text(c: Case):
    rng = random.Random(7)
    (c.dir / "in").mkdir()
    bzh = "BZh91AY&SY is how a bzip2 stream starts, but this is a note. " + english(rng)
    (c.dir / "in" / "notes.txt").write_text(bzh, encoding="utf-8")
    for i in range(FILLER):
        (c.dir / "in" / f"t{i:02d}.txt").write_text(english(rng), encoding="utf-8")
    recipe = write_recipe(c.dir, [{"name": "t", "type": "text", "paths": ["in/*.txt"]}])
    out = c.dir / "out"
    r = c.cli(*c.run_args(recipe, out))
    k = Checks()
    if k.exit(r, 0):
        texts = {d["id"]: d["text"] for d in documents(out).select(["id", "text"]).to_pylist()}
        k.expect(texts.get("t/notes.txt") == bzh, f"notes.txt not read as its text: {str(texts.get('t/notes.txt'))[:40]!r}")
        k.conserved(out, FILLER + 1)
        k.fact("exit 0, notes.txt read as text")
    return k.outcome()


def case_same_name_two_folders(c: Case):
    write_jsonl(c.dir / "in" / "2023" / "part-0.jsonl", docs(8, FILLER // 2, ids=None))
    write_jsonl(c.dir / "in" / "2024" / "part-0.jsonl", docs(9, FILLER // 2, ids=None))
    recipe = write_recipe(c.dir, [{"name": "y", "type": "jsonl", "paths": ["in/**/part-*.jsonl"]}])
    out = c.dir / "out"
    r = c.cli(*c.run_args(recipe, out))
    k = Checks()
    if k.exit(r, 0):
        n = documents(out).num_rows
        dup = [x for x in rejected(out) if x["filter"] == "duplicate_id"]
        k.expect(n == FILLER, f"{n} documents, expected {FILLER}")
        k.expect(not dup, f"{len(dup)} rejected as duplicate_id")
        k.conserved(out, FILLER)
        k.fact(f"exit 0, {n}/{FILLER} documents, 0 duplicate_id")
    return k.outcome()


def case_copied_file(c: Case):
    n = 2500
    write_jsonl(c.dir / "in" / "a.jsonl", docs(10, n, chars=400, ids="r"))
    shutil.copy(c.dir / "in" / "a.jsonl", c.dir / "in" / "copy-of-a.jsonl")
    recipe = write_recipe(c.dir, [{"name": "c", "type": "jsonl", "paths": ["in/*.jsonl"]}])
    out = c.dir / "out"
    r = c.cli(*c.run_args(recipe, out))
    k = Checks()
    if k.exit(r, 0):
        rej = rejected(out)
        dup = [x for x in rej if x["filter"] == "duplicate_id"]
        k.expect(len(dup) == n == len(rej), f"{len(dup)} duplicate_id of {len(rej)} rejected, expected {n}")
        firsts = [x["reason"].split("already used by", 1)[-1] for x in dup]
        bad = [f for f in firsts if "a.jsonl" not in f or "copy-of-a.jsonl" in f]
        k.expect(dup and not bad, f"reasons not naming the first file, e.g. {(bad or [''])[0][:80]!r}")
        k.expect(documents(out).num_rows == n, f"{documents(out).num_rows} documents, expected {n}")
        k.conserved(out, 2 * n)
        k.fact(f"exit 0, {len(dup)} duplicate_id naming a.jsonl")
    return k.outcome()


def case_bom(c: Case):
    (c.dir / "in").mkdir()
    body = "".join(json.dumps(d) + "\n" for d in docs(11, FILLER))
    (c.dir / "in" / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + body.encode())
    recipe = write_recipe(c.dir, [{"name": "j", "type": "jsonl", "paths": ["in/bom.jsonl"]}])
    out = c.dir / "out"
    r = c.cli(*c.run_args(recipe, out))
    k = Checks()
    if k.exit(r, 0):
        ids = documents(out).column("id").to_pylist()
        k.expect("d0" in ids, "first record (d0) not kept")
        k.expect(not rejected(out), f"rejected: {[x['reason'][:60] for x in rejected(out)]}")
        k.conserved(out, FILLER)
        k.fact("exit 0, first record kept")
    return k.outcome()


def _symlink_loops(c: Case, loops: int):
    src = c.dir / "in"
    write_jsonl(src / "a.jsonl", docs(12, FILLER // 2, ids=None))
    write_jsonl(src / "sub" / "b.jsonl", docs(13, FILLER // 2, ids=None))
    for i in range(1, loops + 1):
        os.symlink(".", src / f"loop{i}")
    os.symlink("..", src / "sub" / "up")
    recipe = write_recipe(c.dir, [{"name": "l", "type": "jsonl", "paths": ["in/**/*.jsonl"]}])
    out = c.dir / "out"
    r = c.cli(*c.run_args(recipe, out), timeout=300)
    k = Checks()
    if k.exit(r, 0):
        n, rej = documents(out).num_rows, rejected(out)
        k.expect(n == FILLER and not rej, f"{n} documents and {len(rej)} rejected, expected {FILLER} and 0")
        ingest_s = manifest(out)["stages"]["ingest"]["seconds"]
        k.expect(ingest_s < 10, f"ingest took {ingest_s:.1f} s")
        k.conserved(out, FILLER)
        warned = [line for line in r.stdout.splitlines() + r.stderr.splitlines() if "loop1" in line]
        k.fact(f"exit 0, {n} documents each read once, ingest {ingest_s:.1f} s, {len(warned)} warning line(s)")
    return k.outcome()


def case_symlink_loop(c: Case):
    return _symlink_loops(c, 1)


def case_symlink_two_loops(c: Case):
    return _symlink_loops(c, 2)


def _bad_parquet(c: Case, name: str, data: bytes):
    (c.dir / "in").mkdir()
    (c.dir / "in" / name).write_bytes(data)
    recipe = write_recipe(c.dir, [{"name": "p", "type": "parquet", "paths": [f"in/{name}"]}])
    out = c.dir / "out"
    r = c.cli(*c.run_args(recipe, out))
    k = Checks()
    if k.expect(r.rc not in (0, None), f"exit {r.rc}, expected non-zero"):
        k.one_error(r, "'p'", name)
        k.fact(f"exit {r.rc}: {r.last_error()[:110]}")
    return k.outcome()


def case_parquet_random_bytes(c: Case):
    return _bad_parquet(c, "noise.parquet", random.Random(14).randbytes(10_000))


def case_parquet_cut_footer(c: Case):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"text": [d["text"] for d in docs(15, FILLER)]}), buf)
    return _bad_parquet(c, "cut.parquet", buf.getvalue()[:-10])


def case_parquet_dictionary_text(c: Case):
    import pandas as pd

    (c.dir / "in").mkdir()
    texts = [d["text"] for d in docs(16, FILLER)]
    pd.DataFrame({"id": [f"c{i}" for i in range(FILLER)], "text": pd.Categorical(texts)}).to_parquet(
        c.dir / "in" / "cat.parquet")
    recipe = write_recipe(c.dir, [{"name": "d", "type": "parquet", "paths": ["in/cat.parquet"]}])
    out = c.dir / "out"
    r = c.cli(*c.run_args(recipe, out))
    k = Checks()
    if k.exit(r, 0):
        got = documents(out)
        k.expect(str(got.schema.field("text").type) == "string", f"text column is {got.schema.field('text').type}")
        k.expect(got.column("text").to_pylist() == texts, "texts differ from the category values")
        k.conserved(out, FILLER)
        k.fact(f"exit 0, {got.num_rows} documents read as strings")
    return k.outcome()


def case_empty_source(c: Case):
    (c.dir / "in").mkdir()
    (c.dir / "in" / "empty.jsonl").write_text("")
    recipe = write_recipe(c.dir, [{"name": "nothing", "type": "jsonl", "paths": ["in/empty.jsonl"]}])
    out = c.dir / "out"
    r = c.cli(*c.run_args(recipe, out))
    k = Checks()
    if k.exit(r, 1):
        k.one_error(r, "ingest left no document")
        k.expect((out / "manifest.json").is_file() and (out / "README.md").is_file(), "no manifest.json or README.md")
        k.fact(f"exit 1: {r.last_error()[:70]}; manifest and card written")
    return k.outcome()


def case_all_rejected_by_clean(c: Case):
    write_jsonl(c.dir / "in" / "a.jsonl", docs(17, FILLER))
    recipe = write_recipe(c.dir, [{"name": "s", "type": "jsonl", "paths": ["in/*.jsonl"]}],
                          clean={"min_chars": 100_000_000})
    out = c.dir / "out"
    r = c.cli(*c.run_args(recipe, out))
    k = Checks()
    if k.exit(r, 1):
        k.one_error(r, "clean")
        if k.expect((out / "manifest.json").is_file(), "no manifest.json"):
            clean = manifest(out)["stages"].get("clean") or {}
            k.expect(clean.get("docs_in") == FILLER and clean.get("docs_out") == 0
                     and clean.get("rejected_by_filter", {}).get("min_chars") == FILLER, f"clean funnel: {clean}")
        k.conserved(out, FILLER)
        k.fact(f"exit 1: {r.last_error()[:70]}; clean funnel in manifest")
    return k.outcome()


def case_users_folder(c: Case):
    write_jsonl(c.dir / "in" / "a.jsonl", docs(18, FILLER))
    recipe = write_recipe(c.dir, [{"name": "x", "type": "jsonl", "paths": ["in/*.jsonl"]}])
    out = c.dir / "mine"
    (out / "documents").mkdir(parents=True)
    notes, lookalike = out / "notes.txt", out / "documents" / "part-x-00000.parquet"
    notes.write_text("my notes\n")
    lookalike.write_bytes(random.Random(19).randbytes(4096))
    before = {p: sha256(p) for p in (notes, lookalike)}
    k = Checks()
    r = c.cli(*c.run_args(recipe, out))
    if k.exit(r, 2):
        k.one_error(r, "--force")
        k.expect(not (out / ".opencorpus").exists(), "the refused run created .opencorpus/")
    # --force: a file of the user's where the run writes its own is refused, never overwritten
    r = c.cli(*c.run_args(recipe, out, "--force"))
    if k.exit(r, 2):
        k.one_error(r, f"documents/{lookalike.name}")
        k.expect(all(sha256(p) == h for p, h in before.items()), "a user file changed on the refused --force run")
    moved = out / lookalike.name  # out of the run's way: beside its folders
    lookalike.rename(moved)
    before = {notes: before[notes], moved: before[lookalike]}
    r = c.cli(*c.run_args(recipe, out, "--force"))
    if k.exit(r, 0):
        changed = [p.name for p, h in before.items() if not p.is_file() or sha256(p) != h]
        k.expect(not changed, f"user files changed or gone: {changed}")
        k.conserved(out, FILLER)
        k.fact(f"exit 2 without --force; with it: exit 2 naming documents/{lookalike.name} (in the run's way), "
               f"exit 0 once moved; notes.txt and the moved file unchanged")
    return k.outcome()


def case_output_is_a_file(c: Case):
    write_jsonl(c.dir / "in" / "a.jsonl", docs(20, 3))
    recipe = write_recipe(c.dir, [{"name": "s", "type": "jsonl", "paths": ["in/*.jsonl"]}])
    target = c.dir / "a-file"
    target.write_text("mine\n")
    r = c.cli(*c.run_args(recipe, target))
    k = Checks()
    if k.exit(r, 2):
        k.one_error(r, str(target))
        k.expect(target.read_text() == "mine\n", "the file was changed")
        k.fact(f"exit 2: {r.last_error()[:90]}")
    return k.outcome()


def case_eval_missing_run(c: Case):
    r = c.cli("eval", str(c.dir / "no-such-run"))
    k = Checks()
    if k.exit(r, 2):
        k.one_error(r, "no-such-run")
        k.fact(f"exit 2: {r.last_error()[:90]}")
    return k.outcome()


# ---- the long cases: a corpus of tens of MB, signals, memory, identical reruns


def big_corpus(c: Case, n: int, shard_docs: int, seed: int = 21) -> tuple[Path, int]:
    """A recipe over n generated ~2 KB documents (one JSONL file)."""
    rng = random.Random(seed)
    path = c.dir / "in" / "big.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"b{i}", "text": english(rng, 2000)}) + "\n")
    return write_recipe(c.dir, [{"name": "big", "type": "jsonl", "paths": ["in/big.jsonl"]}],
                        ingest={"shard_docs": shard_docs}, tokenize={"vocab_size": 300, "val_fraction": 0.05}), n


def _left_behind(c: Case, proc: subprocess.Popen, sessions: set[int], within: float) -> list[tuple[int, str]]:
    left: list[tuple[int, str]] = []

    def gone() -> bool:
        nonlocal left
        left = c.run_processes(*sessions)
        return not left

    wait_for(gone, within, every=0.2)
    return left


def _start_big_run(c: Case, k: Checks):
    """(recipe, documents, output folder, process) of a run on a big corpus, once its
    progress log exists; None (the run killed) if it never gets there."""
    recipe, n = big_corpus(c, 20_000, 2000)
    out = c.dir / "out"
    proc = c.start(*c.run_args(recipe, out))
    progress = out / ".opencorpus" / "progress.jsonl"
    if not k.expect(wait_for(progress.exists, 300), "no progress.jsonl within 300 s"):
        kill_run(proc.pid, c.prefect_home)
        return None
    return recipe, n, out, proc


def case_ctrl_c(c: Case):
    k = Checks()
    started = _start_big_run(c, k)
    if started is None:
        return k.outcome()
    recipe, n, out, proc = started
    sessions = {proc.pid} | child_sessions(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    t0 = time.perf_counter()
    try:
        rc = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        rc = None
    stopped = time.perf_counter() - t0
    left = _left_behind(c, proc, sessions, 2)
    k.expect(rc == 130, f"exit {rc} after SIGINT, expected 130")
    k.expect(stopped < 10, f"stopped after {stopped:.1f} s (limit 10)")
    k.expect(not left, f"{len(left)} processes left: {[cmd[:60] for _, cmd in left]}")
    kill_run(proc.pid, c.prefect_home)
    r = c.cli(*c.run_args(recipe, out))
    if k.exit(r, 0):
        stray = stray_temporaries(out)
        k.expect(not stray, f"temporary files after the rerun: {stray}")
        k.conserved(out, n)
        k.fact(f"SIGINT -> exit {rc} in {stopped:.1f} s, 0 processes left; rerun exit 0 in {r.seconds:.0f} s, "
               "no .tmp- files")
    return k.outcome()


def case_kill_9(c: Case):
    k = Checks()
    started = _start_big_run(c, k)
    if started is None:
        return k.outcome()
    recipe, n, out, proc = started
    time.sleep(2)  # the pool worker and the server are busy now
    sessions = {proc.pid} | child_sessions(proc.pid)
    before = c.run_processes(*sessions)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.perf_counter()
    left = _left_behind(c, proc, sessions, 5)
    gone_in = time.perf_counter() - t0
    k.expect(not left, f"{len(left)} of {len(before)} processes still running 5 s after kill -9: "
                       f"{[cmd[:60] for _, cmd in left]}")
    kill_run(proc.pid, c.prefect_home)
    servers = sum("uvicorn" in cmd or "prefect" in cmd and "server" in cmd for _, cmd in before)
    k.fact(f"{len(before)} processes before kill -9 ({servers} Prefect server), all gone in {gone_in:.1f} s")
    return k.outcome()


def case_huge_lines(c: Case):
    rng = random.Random(22)
    chunk = english(rng, 1 << 20, paragraphs=False)
    huge = (chunk + " ") * 50  # ~50 MB, no newline
    (c.dir / "in").mkdir()
    normal = docs(23, 300, chars=1200)
    path = write_jsonl(c.dir / "in" / "j.jsonl", normal[:150])
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "huge-jsonl", "text": huge}) + "\n")
        for rec in normal[150:]:
            f.write(json.dumps(rec) + "\n")
    (c.dir / "txt").mkdir()
    (c.dir / "txt" / "huge.txt").write_text(huge, encoding="utf-8")
    for i in range(100):
        (c.dir / "txt" / f"n{i:03d}.txt").write_text(english(rng, 1200), encoding="utf-8")
    del huge, chunk
    recipe = write_recipe(c.dir, [{"name": "j", "type": "jsonl", "paths": ["in/j.jsonl"]},
                                  {"name": "t", "type": "text", "paths": ["txt/*.txt"]}])
    out = c.dir / "out"
    k = Checks()
    rc, peak, peak_who, log = _run_watching_memory(c, recipe, out)
    k.expect(rc == 0, f"exit {rc}, expected 0: {' / '.join(log.strip().splitlines()[-2:])}")
    if rc == 0:
        rej = {x["id"]: x["filter"] for x in rejected(out, "clean")}
        k.expect(rej.get("huge-jsonl") == "max_chars" and rej.get("t/huge.txt") == "max_chars",
                 f"huge documents rejected as {rej.get('huge-jsonl')} / {rej.get('t/huge.txt')}")
        k.conserved(out, 300 + 1 + 100 + 1)
    k.expect(peak < 1.5e9, f"peak RSS {peak / 1e6:,.0f} MB (limit 1,500 MB) in {peak_who}")
    k.fact(f"exit {rc}, both rejected max_chars, peak RSS {peak / 1e6:,.0f} MB ({peak_who})")
    return k.outcome()


def _run_watching_memory(c: Case, recipe: Path, out: Path) -> tuple[int, int, str, str]:
    """(exit status, peak RSS of the run's largest process, which one, its log) of a run."""
    t0 = time.perf_counter()
    proc = c.start(*c.run_args(recipe, out))
    peak, peak_who, sessions = 0, "?", {proc.pid}
    while proc.poll() is None and time.perf_counter() - t0 < RUN_TIMEOUT_S:
        sessions |= child_sessions(proc.pid)
        for pid, cmd in c.run_processes(*sessions):
            hwm = peak_rss(pid)
            if hwm > peak:
                peak, peak_who = hwm, _who(pid, cmd, proc.pid)
        time.sleep(0.2)
    if proc.poll() is None:
        kill_run(proc.pid, c.prefect_home)
    rc = proc.wait()
    return rc, peak, peak_who, Path(proc.log_path).read_text(errors="replace")


def _who(pid: int, cmd: str, supervisor: int) -> str:
    if pid == supervisor:
        return "the supervisor"
    if "flows.cli" in cmd:
        return "the run's work process"
    return "the Prefect server" if "uvicorn" in cmd or "prefect" in cmd else (cmd.split() or ["?"])[0].rsplit("/", 1)[-1]


_HASHED = ("documents", "clean", "dedup", "tokens", "rejected", "clusters")


def parquet_hashes(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): sha256(p) for d in _HASHED for p in sorted((out / d).rglob("*.parquet"))}


def case_killed_in_clean(c: Case):
    recipe, n = big_corpus(c, 6_000, 500)
    out = c.dir / "out"
    k = Checks()
    proc = c.start(*c.run_args(recipe, out))
    clean = out / "clean"

    def writing() -> bool:
        return clean.is_dir() and any(p.name.startswith(".tmp-") for p in clean.iterdir())

    def two_shards() -> bool:
        return clean.is_dir() and sum(1 for p in clean.glob("part-*.parquet")) >= 2

    caught = wait_for(lambda: writing() or two_shards() or proc.poll() is not None, 600, every=0.01)
    how = "a .tmp- file in clean/" if writing() else f"{len(list(clean.glob('part-*')))} clean shards"
    running = proc.poll() is None
    kill_run(proc.pid, c.prefect_home)
    proc.wait()
    if not k.expect(caught and running, "the run ended before it could be killed in clean"):
        return k.outcome()
    r = c.cli(*c.run_args(recipe, out))
    if not k.exit(r, 0):
        return k.outcome()
    stray = stray_temporaries(out)
    k.expect(not stray, f"temporary files after the rerun: {stray}")
    k.conserved(out, n)
    fresh = c.dir / "fresh"
    r2 = c.cli(*c.run_args(recipe, fresh))
    if k.exit(r2, 0):
        a, b = parquet_hashes(out), parquet_hashes(fresh)
        differ = sorted(f for f in set(a) | set(b) if a.get(f) != b.get(f))
        k.expect(not differ, f"{len(differ)} Parquet files differ from a fresh run: {differ[:4]}")
        k.fact(f"killed at {how}; rerun exit 0, no .tmp-; {len(a)} Parquet files identical to a fresh run")
    return k.outcome()


# ---- network sources and crawls (issue 16): a loopback server, WARC files from warcio's writer


def _fixtures():
    """tests/ helpers shared with tests/test_hostile_network.py: the loopback file server
    (fault injection, request log) and the WARC and gzip-bomb writers."""
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    import hostile_fixtures
    import httpserver

    return httpserver, hostile_fixtures


def _filler(c: Case) -> dict:
    """A local source of FILLER documents, so a small case's corpus has something to tokenize."""
    write_jsonl(c.dir / "fill" / "f.jsonl", docs(40, FILLER, ids="f"))
    return {"name": "fill", "type": "jsonl", "paths": ["fill/f.jsonl"]}


def _serve(c: Case):
    httpserver, _ = _fixtures()
    (c.dir / "served").mkdir(exist_ok=True)
    return httpserver.FileServer({"/d": c.dir / "served"})


def _http_run(c: Case, srv, path: str, private: bool = True) -> tuple[Result, Path]:
    """A run whose one source downloads `path` from `srv` (a loopback address: opted in unless not `private`)."""
    spec = {"name": "h", "type": "http", "urls": [srv.url(path)]}
    recipe = write_recipe(c.dir, [spec], **({"allow_private_networks": True} if private else {}))
    out = c.dir / "out"
    return c.cli(*c.run_args(recipe, out)), out


def _source_fails(c: Case, srv, path: str, *must_name: str, requests: int | None = None,
                  private: bool = True) -> tuple[bool, str]:
    r, _ = _http_run(c, srv, path, private)
    k = Checks()
    if k.exit(r, 1):
        k.one_error(r, *must_name)
        hits = len(srv.hits(path))
        if requests is not None:
            k.expect(hits == requests, f"{hits} requests for {path}, expected {requests}")
        k.fact(f"exit 1 in {r.seconds:.0f} s, {hits} request(s): {r.last_error()[:110]}")
    return k.outcome()


def _warc_run(c: Case, name: str) -> tuple[Result, Path, list[dict], list[str]]:
    """A run over in/NAME (a WARC file) and the filler: its result, folder, the WARC's
    ingest rejections and the URLs of its documents."""
    recipe = write_recipe(c.dir, [{"name": "w", "type": "warc", "paths": [f"in/{name}"], "main_content": False},
                                  _filler(c)])
    out = c.dir / "out"
    r = c.cli(*c.run_args(recipe, out))
    if r.rc != 0:
        return r, out, [], []
    rej = [x for x in rejected(out) if x["id"].startswith("w/")]
    return r, out, rej, sorted(u for u in documents(out).column("url").to_pylist() if u)


def case_warc_dechunked(c: Case):
    _, fx = _fixtures()
    (c.dir / "in").mkdir()
    ids = fx.write_warc(c.dir / "in" / "crawl.warc.gz", "per-record")
    r, out, rej, urls = _warc_run(c, "crawl.warc.gz")
    k = Checks()
    if k.exit(r, 0):
        k.expect(urls == ["http://a.test/chunked", "http://a.test/dechunked", "http://a.test/gzip", "http://a.test/last"],
                 f"WARC documents: {urls}")
        k.expect(len(rej) == 1 and rej[0]["filter"] == "unreadable_record" and ids["http://a.test/broken"] in rej[0]["reason"],
                 f"rejected: {[(x['filter'], x['reason'][:80]) for x in rej]}")
        k.conserved(out, FILLER + 5)  # 4 pages + the broken one; revisit and PDF are not documents
        k.fact(f"exit 0, {len(urls)} pages (chunked header over a de-chunked body read), 1 unreadable_record with its id")
    return k.outcome()


def case_warc_corrupt_header(c: Case):
    _, fx = _fixtures()
    records, ids = fx.warc_records(6)
    records[3] = records[3].replace(b"Content-Length: ", b"Content-Length: x", 1)
    (c.dir / "in").mkdir()
    (c.dir / "in" / "cut.warc").write_bytes(b"".join(records))
    r, out, rej, urls = _warc_run(c, "cut.warc")
    k = Checks()
    if k.exit(r, 0):
        k.expect(len(urls) == 5, f"{len(urls)} of the 5 good records read: {urls}")
        k.expect(len(rej) == 1 and ids[3] in rej[0]["reason"] and "WARC/1." in rej[0]["reason"],
                 f"rejected: {[x['reason'][:100] for x in rej]}")
        k.conserved(out, FILLER + 6)
        k.fact(f"exit 0, record 4 of 6 unreadable_record ({ids[3][:22]}...>), the 5 others read")
    return k.outcome()


def case_cut_no_length(c: Case):
    data = b"".join(json.dumps(d).encode() + b"\n" for d in docs(41, 300, chars=600))
    (c.dir / "served").mkdir()
    (c.dir / "served" / "d.jsonl").write_bytes(data)
    with _serve(c) as srv:
        srv.fault("/d/d.jsonl", no_length=True, drop_at=len(data) * 3 // 10, times=1)
        r, out = _http_run(c, srv, "/d/d.jsonl")
        hits = srv.hits("/d/d.jsonl")
    k = Checks()
    if k.exit(r, 0):
        k.conserved(out, 300)
        k.fact(f"exit 0, all 300 documents; cut after {len(data) * 3 // 10:,} of {len(data):,} bytes, "
               f"{len(hits)} requests ({', '.join(str(h.get('range')) for h in hits)})")
    return k.outcome()


def case_html_for_jsonl(c: Case):
    _, fx = _fixtures()
    (c.dir / "served").mkdir()
    (c.dir / "served" / "d.jsonl").write_text(fx.HTML.format("Not found") + "\n")
    with _serve(c) as srv:
        srv.fault("/d/d.jsonl", content_type="text/html; charset=utf-8")
        return _source_fails(c, srv, "/d/d.jsonl", srv.url("/d/d.jsonl"), "text/html")


def case_html_for_parquet(c: Case):
    _, fx = _fixtures()
    (c.dir / "served").mkdir()
    (c.dir / "served" / "d.parquet").write_text(fx.HTML.format("Not found") + "\n")
    with _serve(c) as srv:
        return _source_fails(c, srv, "/d/d.parquet", srv.url("/d/d.parquet"))


def case_redirect_loop(c: Case):
    with _serve(c) as srv:
        srv.fault("/d/a.jsonl", redirect="/d/b.jsonl")
        srv.fault("/d/b.jsonl", redirect=srv.url("/d/a.jsonl"))
        return _source_fails(c, srv, "/d/a.jsonl", srv.url("/d/a.jsonl"), "redirect loop", requests=1)


def case_404_one_request(c: Case):
    with _serve(c) as srv:
        return _source_fails(c, srv, "/d/missing.jsonl", srv.url("/d/missing.jsonl"), "404", requests=1)


def case_dead_server(c: Case):
    import socket

    with socket.socket() as s:  # a port that nobody listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/d.jsonl"
    recipe = write_recipe(c.dir, [{"name": "h", "type": "http", "urls": [url]}], allow_private_networks=True)
    r = c.cli(*c.run_args(recipe, c.dir / "out"))
    k = Checks()
    if k.exit(r, 1):
        k.one_error(r, url)
        k.expect(r.seconds < 180, f"the run took {r.seconds:.0f} s (limit 180)")
        k.fact(f"exit 1 after {r.seconds:.0f} s (the downloader's bounded retries only): {r.last_error()[:90]}")
    return k.outcome()


def case_gzip_bomb(c: Case):
    _, fx = _fixtures()
    (c.dir / "in").mkdir()
    fx.gzip_bomb(c.dir / "in" / "bomb.jsonl.gz", b'{"id": "ok", "text": "a short line first"}\n', 1 << 30, level=9)
    size = (c.dir / "in" / "bomb.jsonl.gz").stat().st_size
    recipe = write_recipe(c.dir, [{"name": "b", "type": "jsonl", "paths": ["in/bomb.jsonl.gz"]}, _filler(c)])
    out = c.dir / "out"
    k = Checks()
    rc, peak, who, log = _run_watching_memory(c, recipe, out)
    if k.expect(rc == 0, f"exit {rc}, expected 0: {' / '.join(log.strip().splitlines()[-2:])}"):
        rej = {x["id"]: x for x in rejected(out)}
        bomb = rej.get("b/bomb.jsonl.gz:2", {})
        k.expect(bomb.get("filter") == "oversize_record" and "1,073,741,824 bytes" in bomb.get("reason", ""),
                 f"the 1 GiB line rejected as {bomb.get('filter')}: {bomb.get('reason', '')[:80]}")
        k.conserved(out, FILLER + 2)
    k.expect(peak < 1e9, f"peak RSS {peak / 1e6:,.0f} MB (limit 1,000 MB) in {who}")
    k.fact(f"exit {rc}; {size / 1e6:.1f} MB gzip inflating to a 1 GiB line: oversize_record; "
           f"peak RSS {peak / 1e6:,.0f} MB ({who})")
    return k.outcome()


def case_yaml_alias_bomb(c: Case):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]  # 10**9 values
    write_jsonl(c.dir / "in" / "a.jsonl", docs(42, 3))
    recipe = c.dir / "recipe.yaml"
    recipe.write_text("name: b\nsources: [{name: s, type: jsonl, paths: [in/a.jsonl]}]\ntrain:\n"
                      + "".join(f"  {line}\n" for line in levels))
    r = c.cli(*c.run_args(recipe, c.dir / "out"), timeout=120)
    k = Checks()
    if k.exit(r, 2):
        k.one_error(r, "recipe.yaml", "aliases")
        k.fact(f"exit 2 in {r.seconds:.1f} s: {r.last_error()[:100]}")
    return k.outcome()


def case_private_url(c: Case):
    (c.dir / "served").mkdir()
    (c.dir / "served" / "secret.jsonl").write_text('{"text": "a secret of the metadata endpoint"}\n')
    with _serve(c) as srv:
        return _source_fails(c, srv, "/d/secret.jsonl", "127.0.0.1", "allow_private_networks", requests=0,
                             private=False)


def case_unlistable_subfolder(c: Case):
    write_jsonl(c.dir / "in" / "a.jsonl", docs(43, FILLER))
    locked = c.dir / "in" / "locked"
    write_jsonl(locked / "b.jsonl", docs(44, 5, ids="l"))
    recipe = write_recipe(c.dir, [{"name": "u", "type": "jsonl", "paths": ["in/**/*.jsonl"]}])
    locked.chmod(0)
    try:
        r = c.cli(*c.run_args(recipe, c.dir / "out"), unprivileged=True)
    finally:
        locked.chmod(0o755)
    k = Checks()
    if k.exit(r, 1):
        k.one_error(r, "source 'u'", "locked", "Permission denied")
        k.expect(not (c.dir / "out" / "manifest.json").exists(), "a manifest was written")
        k.fact(f"exit 1, no manifest: {r.last_error()[:110]}")
    return k.outcome()


def case_rejected_excerpt(c: Case):
    path = write_jsonl(c.dir / "in" / "a.jsonl", docs(45, FILLER))
    with open(path, "a") as f:
        f.write("this line of an arbitrary file is not JSON " * 200 + "\n")
    recipe = write_recipe(c.dir, [{"name": "s", "type": "jsonl", "paths": ["in/a.jsonl"]}])
    out = c.dir / "out"
    r = c.cli(*c.run_args(recipe, out))
    k = Checks()
    if k.exit(r, 0):
        rej = rejected(out)
        n = len(rej[0]["text"]) if rej else None
        k.expect(len(rej) == 1 and rej[0]["filter"] == "invalid_json" and n == 500,
                 f"rejected: {[(x['filter'], len(x['text'] or '')) for x in rej]}")
        k.conserved(out, FILLER + 1)
        k.fact(f"exit 0, the 8,800-character line rejected invalid_json with a {n}-character excerpt")
    return k.outcome()


_NONSENSE = [({"clean": {"gopher_quality": {"max_doc_words": -1}}}, "max_doc_words"),
             ({"clean": {"max_symbol_ratio": 1.5}}, "max_symbol_ratio"),
             ({"tokenize": {"vocab_size": 2 ** 33}}, "vocab_size"),
             ({"name": ".."}, "'..'")]


def case_nonsensical_settings(c: Case):
    write_jsonl(c.dir / "in" / "a.jsonl", docs(46, 3))
    k = Checks()
    seen = []
    for patch, name in _NONSENSE:
        recipe = write_recipe(c.dir, [{"name": "s", "type": "jsonl", "paths": ["in/a.jsonl"]}], **patch)
        r = c.cli(*c.run_args(recipe, c.dir / "out"), timeout=120)
        if k.exit(r, 2) and k.one_error(r, name):
            seen.append(name)
    k.expect(not (c.dir / "out").exists(), "a refused recipe created the output folder")
    k.fact(f"exit 2 with one line naming each of {', '.join(seen)}")
    return k.outcome()


def case_paths_url_scheme(c: Case):
    recipe = write_recipe(c.dir, [{"name": "s", "type": "jsonl", "paths": ["gopher://example.org/x.jsonl"]}])
    r = c.cli(*c.run_args(recipe, c.dir / "out"), timeout=120)
    k = Checks()
    if k.exit(r, 2):
        k.one_error(r, "gopher")
        started = [p.name for p in c.prefect_home.glob("*")] if c.prefect_home.exists() else []
        k.expect(not started and not (c.dir / "out").exists(), f"something started: PREFECT_HOME holds {started}")
        k.fact(f"exit 2 in {r.seconds:.1f} s, no Prefect server, no output folder: {r.last_error()[:90]}")
    return k.outcome()


def case_two_runs_one_folder(c: Case):
    write_jsonl(c.dir / "served" / "d.jsonl", docs(47, FILLER))
    k = Checks()
    with _serve(c) as srv:
        srv.delay = 45  # the first run holds the folder while its download waits
        recipe = write_recipe(c.dir, [{"name": "h", "type": "http", "urls": [srv.url("/d/d.jsonl")]}],
                              allow_private_networks=True)
        out = c.dir / "out"
        first = c.start(*c.run_args(recipe, out))
        if not k.expect(wait_for((out / ".opencorpus" / "lock").exists, 120), "the first run never took the lock"):
            kill_run(first.pid, c.prefect_home)
            return k.outcome()
        r = c.cli(*c.run_args(recipe, out), timeout=120)
        holding = first.poll() is None
        ours = {pid for pid, _ in c.run_processes(first.pid, *child_sessions(first.pid))}  # the holder is its work process
        try:
            rc = first.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_run(first.pid, c.prefect_home)
            rc = None
    if k.exit(r, 2) and k.one_error(r, f" on {os.uname().nodename}"):
        named = re.search(r"pid (\d+)", r.last_error())
        k.expect(named and int(named.group(1)) in ours, f"the pid named is not one of the first run's {sorted(ours)}")
    k.expect(holding, "the first run ended before the second one did: nothing was tested")
    k.expect(rc == 0, f"the first run ended with {rc}: {Path(first.log_path).read_text(errors='replace')[-200:]}")
    if rc == 0:
        k.conserved(out, FILLER)
    k.fact(f"second run: exit {r.rc} in {r.seconds:.0f} s: {r.last_error()[:100]}; the first: exit {rc}, all documents")
    return k.outcome()


@dataclass
class Spec:
    name: str
    expected: str
    fn: Callable[[Case], tuple[bool, str]]


CASES = [
    Spec("lone_surrogate", "exit 0, kept with U+FFFD, surrogates_replaced=1", case_lone_surrogate),
    Spec("deep_nesting", "exit 0, that line invalid_json, rest kept, < 120 s", case_deep_nesting),
    Spec("huge_integer", "exit 0, document kept", case_huge_integer),
    Spec("bzh_text", "exit 0, .txt starting BZh read as text", case_bzh_text),
    Spec("same_name_two_folders", "exit 0, all documents, no duplicate_id", case_same_name_two_folders),
    Spec("copied_file", "exit 0, 2,500 duplicate_id naming the first file", case_copied_file),
    Spec("bom", "exit 0, first record kept", case_bom),
    Spec("symlink_loop", "exit 0 in seconds, each record once", case_symlink_loop),
    Spec("symlink_two_loops", "exit 0 in seconds, each record once", case_symlink_two_loops),
    Spec("parquet_random_bytes", "exit !=0, one error naming source+file", case_parquet_random_bytes),
    Spec("parquet_cut_footer", "exit !=0, one error naming source+file", case_parquet_cut_footer),
    Spec("parquet_dictionary_text", "exit 0, text read as strings", case_parquet_dictionary_text),
    Spec("empty_source", "exit 1, 'ingest left no document', manifest+card", case_empty_source),
    Spec("all_rejected_by_clean", "exit 1, error names clean, clean funnel", case_all_rejected_by_clean),
    Spec("users_folder", "exit 2; --force: refused while a user file stands where the run writes, else exit 0; user files unchanged", case_users_folder),
    Spec("output_is_a_file", "exit 2, one error line", case_output_is_a_file),
    Spec("eval_missing_run", "exit 2, one error line", case_eval_missing_run),
    Spec("ctrl_c", "130 within 10 s, nothing left; rerun ok, no .tmp-", case_ctrl_c),
    Spec("kill_9", "no process of the run left within 5 s", case_kill_9),
    Spec("huge_lines", "exit 0, 2 x max_chars, peak RSS < 1.5 GB", case_huge_lines),
    Spec("killed_in_clean", "rerun ok, no .tmp-, identical to a fresh run", case_killed_in_clean),
    Spec("warc_dechunked", "exit 0, chunked-header/de-chunked bodies read, 1 unreadable_record with its id", case_warc_dechunked),
    Spec("warc_corrupt_header", "exit 0, that record unreadable_record with its id, the rest read", case_warc_corrupt_header),
    Spec("cut_no_length", "exit 0, all documents (the cut noticed, the rest fetched)", case_cut_no_length),
    Spec("html_for_jsonl", "exit 1, one error naming the URL and text/html", case_html_for_jsonl),
    Spec("html_for_parquet", "exit 1, one error naming the URL", case_html_for_parquet),
    Spec("redirect_loop", "exit 1, one error naming the URL, 1 request", case_redirect_loop),
    Spec("404_one_request", "exit 1, one error naming the URL, 1 request", case_404_one_request),
    Spec("dead_server", "exit 1 naming the URL within 180 s", case_dead_server),
    Spec("gzip_bomb", "exit 0, 1 GiB line oversize_record, peak RSS < 1 GB", case_gzip_bomb),
    Spec("yaml_alias_bomb", "exit 2 in seconds, one error naming the recipe", case_yaml_alias_bomb),
    Spec("private_url", "exit 1 naming 127.0.0.1 and allow_private_networks, 0 requests", case_private_url),
    Spec("unlistable_subfolder", "exit 1 naming the folder, no manifest", case_unlistable_subfolder),
    Spec("rejected_excerpt", "exit 0, malformed line kept as a 500-character excerpt", case_rejected_excerpt),
    Spec("nonsensical_settings", "exit 2 naming each setting, nothing created", case_nonsensical_settings),
    Spec("paths_url_scheme", "exit 2 naming the scheme, no Prefect server started", case_paths_url_scheme),
    Spec("two_runs_one_folder", "second: exit 2 naming the holder's pid and host; first: exit 0", case_two_runs_one_folder),
]


# --------------------------------------------------------------------------- main


def run_case(spec: Spec, base: Path, keep: bool) -> tuple[bool, str, float]:
    folder = base / spec.name
    folder.mkdir(parents=True)
    case = Case(folder)
    t0 = time.perf_counter()
    try:
        ok, observed = spec.fn(case)
    except Exception as e:  # noqa: BLE001 - a case that cannot even check is a FAIL with its reason
        ok, observed = False, f"battery error: {type(e).__name__}: {e}"
    seconds = time.perf_counter() - t0
    observed = observed.replace(str(base), "$TMP")
    if ok and not keep:
        shutil.rmtree(folder, ignore_errors=True)
    return ok, observed, seconds


def print_table(results: list[tuple[Spec, bool, str, float]]):
    rows_ = [("case", "expected", "observed", "verdict", "seconds")]
    rows_ += [(s.name, s.expected, obs, "PASS" if ok else "FAIL", f"{sec:.1f}") for s, ok, obs, sec in results]
    print("| " + " | ".join(rows_[0]) + " |")
    print("|" + "---|" * len(rows_[0]))
    for r in rows_[1:]:
        print("| " + " | ".join(cell.replace("|", "/") for cell in r) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=None, help="comma-separated case names (see --list)")
    p.add_argument("--keep", action="store_true", help="keep every case's folder (failed ones are always kept)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    args = p.parse_args(argv)
    if args.list:
        for s in CASES:
            print(f"{s.name:<26} {s.expected}")
        return 0
    chosen = CASES
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {s.name for s in CASES}
        if unknown:
            p.error(f"unknown case(s): {', '.join(sorted(unknown))} (see --list)")
        chosen = [s for s in CASES if s.name in names]
    base = Path(tempfile.mkdtemp(prefix="opencorpus-battery-"))
    started = datetime.now()
    print(f"opencorpus battery, {started:%Y-%m-%d %H:%M}, {len(chosen)} case(s) in {base}", flush=True)
    results = []
    for spec in chosen:
        ok, observed, seconds = run_case(spec, base, args.keep)
        print(f"  {'PASS' if ok else 'FAIL'} {spec.name} ({seconds:.1f} s): {observed}", flush=True)
        results.append((spec, ok, observed, seconds))
    print()
    print_table(results)
    failed = [s.name for s, ok, _, _ in results if not ok]
    total = (datetime.now() - started).total_seconds()
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed in {total / 60:.1f} min", end="")
    if failed or args.keep:
        print(f"; case folders (with run-*.log) kept in {base}")
    else:
        print()
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
