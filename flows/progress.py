"""Progress of a corpus run: an event log the flow appends to, and a terminal view of it.

The flow process (the only writer) appends one JSON line per event to
`DIR/.opencorpus/progress.jsonl`: a run starts, a stage starts (with its total documents
when known and how many were reused from an earlier run), a unit (source, shard, or the
whole stage) finishes, a stage ends, the run ends. `opencorpus progress DIR` reads it, from
the same terminal (`opencorpus run --progress`) or another one while a long or scheduled
run goes on, and shows per stage: documents done, rate, elapsed time and ETA.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from flows.state import STATE_DIR

STAGE_NAMES = ("ingest", "clean", "dedup", "tokenizer", "tokenize")


def progress_path(root: str | Path) -> Path:
    return Path(root) / STATE_DIR / "progress.jsonl"


class ProgressLog:
    """Append-only event log; each line is flushed so a reader sees it at once."""

    def __init__(self, root: str | Path):
        self.path = progress_path(root)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def event(self, kind: str, **fields):
        line = json.dumps({"t": round(time.time(), 3), "event": kind, **fields}, default=str)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def run_start(self, recipe: str, stages=STAGE_NAMES):
        self.event("run_start", recipe=recipe, stages=list(stages))

    def stage_start(self, stage: str, units: int, total_docs: int | None, cached_units: int = 0, cached_docs: int = 0):
        self.event("stage_start", stage=stage, units=units, total_docs=total_docs, cached_units=cached_units,
                   cached_docs=cached_docs)

    def unit_done(self, stage: str, unit: str, docs: int):
        self.event("unit_done", stage=stage, unit=unit, docs=docs)

    def stage_end(self, stage: str, docs_out: int | None = None):
        self.event("stage_end", stage=stage, docs_out=docs_out)

    def run_end(self, status: str):
        self.event("run_end", status=status)


@dataclass
class StageProgress:
    stage: str
    status: str = "pending"  # pending | running | done
    units: int = 0
    units_done: int = 0
    cached_units: int = 0
    total_docs: int | None = None
    docs_done: int = 0
    cached_docs: int = 0
    started: float | None = None
    ended: float | None = None

    def elapsed(self, now: float) -> float:
        if self.started is None:
            return 0.0
        return (self.ended or now) - self.started

    def rate(self, now: float) -> float | None:
        """Documents per second processed in this run (reused ones excluded)."""
        worked = self.docs_done - self.cached_docs
        t = self.elapsed(now)
        return worked / t if worked > 0 and t > 0 else None

    def eta(self, now: float) -> float | None:
        if self.status == "done":
            return 0.0
        rate = self.rate(now)
        if self.total_docs is None or not rate:
            return None
        return max(self.total_docs - self.docs_done, 0) / rate


def read_events(path: str | Path) -> list[dict]:
    """Events of the latest run in the log (a torn last line is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "run_start":
            events = []
        events.append(e)
    return events


def summarize(events: list[dict]) -> tuple[list[StageProgress], dict]:
    """Per-stage progress and run info (recipe, status, start time) from a run's events."""
    run = {"status": "running" if events else "unknown", "started": None, "recipe": None}
    order = list(STAGE_NAMES)
    stages: dict[str, StageProgress] = {}
    for e in events:
        kind = e["event"]
        if kind == "run_start":
            run.update(started=e["t"], recipe=e.get("recipe"))
            order = e.get("stages") or order
        elif kind == "run_end":
            run.update(status=e.get("status", "done"), ended=e["t"])
        elif kind in ("stage_start", "unit_done", "stage_end"):
            s = stages.setdefault(e["stage"], StageProgress(e["stage"]))
            if kind == "stage_start":
                s.status, s.started, s.units = "running", e["t"], e["units"]
                s.total_docs, s.cached_units = e.get("total_docs"), e.get("cached_units", 0)
                s.cached_docs = s.docs_done = e.get("cached_docs", 0)
                s.units_done = s.cached_units
            elif kind == "unit_done":
                s.units_done += 1
                s.docs_done += e.get("docs") or 0
            else:
                s.status, s.ended = "done", e["t"]
                if s.total_docs is None:
                    s.total_docs = s.docs_done
    rows = [stages.get(name, StageProgress(name)) for name in order]
    rows += [s for name, s in stages.items() if name not in order]
    return rows, run


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def render(rows: list[StageProgress], run: dict, now: float | None = None):
    """A rich Table of the stages (fits 80 columns)."""
    from rich import box
    from rich.table import Table

    now = now or time.time()
    title = f"corpus {run.get('recipe') or ''}: {run.get('status')}"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("stage", "units", "documents", "%", "reused", "docs/s", "elapsed", "ETA"):
        table.add_column(col, justify="left" if col == "stage" else "right", no_wrap=True)
    for s in rows:
        if s.status == "pending":
            table.add_row(s.stage, "", "", "", "", "", "", "")
            continue
        total = f"{s.total_docs:,}" if s.total_docs is not None else "?"
        pct = f"{100 * s.docs_done / s.total_docs:.0f}" if s.total_docs else ("100" if s.status == "done" else "")
        rate = s.rate(now)
        table.add_row(
            s.stage, f"{s.units_done}/{s.units}", f"{s.docs_done:,} / {total}", pct,
            f"{s.cached_docs:,}" if s.cached_docs else "", f"{rate:,.0f}" if rate else "",
            _duration(s.elapsed(now)), _duration(s.eta(now)) if s.status == "running" else "done",
        )
    return table


def show(root: str | Path, follow: bool = False, interval: float = 1.0, console=None, since: float | None = None) -> dict:
    """Print the progress of the latest run in `root`; with `follow`, redraw until it ends.
    `since`: ignore runs that started before this time (wait for the one being launched)."""
    from rich.console import Console
    from rich.live import Live

    console = console or Console()
    path = progress_path(root)

    def current():
        events = read_events(path)
        if since is not None and (not events or events[0]["t"] < since - 1):
            events = []
        return summarize(events)

    rows, run = current()
    if not follow:
        console.print(render(rows, run))
        return run
    with Live(render(rows, run), console=console, refresh_per_second=4) as live:
        while True:
            rows, run = current()
            live.update(render(rows, run))
            if run["status"] not in ("running", "unknown"):
                return run
            time.sleep(interval)
