"""Run a command's work in a child process group that never outlives the command.

`opencorpus run` starts a temporary Prefect API server and a pool of worker processes. A
Ctrl-C reaches all of them at once (they share the terminal's process group), and they
used to hang half-stopped for minutes; a `kill -9` of the command left them running. So
the command supervises: the work runs in a child in a session of its own (with every
process it starts), and

* the first Ctrl-C (or SIGTERM) stops the whole session: SIGTERM, then SIGKILL after
  `GRACE_S` seconds; a second Ctrl-C kills it at once. Outputs are written atomically
  and the rerun removes the temporary files of a killed run, so nothing half-written is
  ever trusted; the rerun resumes from the finished units.
* if the supervisor dies (even by SIGKILL), the child notices within `POLL_S` seconds that
  its parent is gone and kills its own session.
* when the child ends, whatever it left running in its session is killed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

SUPERVISED = "OPENCORPUS_SUPERVISED"
GRACE_S = 3.0
POLL_S = 0.5


def supervise(argv: list[str]) -> int:
    """Run `python -m flows.cli ARGV` in its own session; return its exit status (130 when interrupted)."""
    env = dict(os.environ, **{SUPERVISED: str(os.getpid())})
    child = subprocess.Popen([sys.executable, "-m", "flows.cli", *argv], env=env, start_new_session=True)
    interrupts = []

    def on_signal(signum, frame):
        interrupts.append(signum)
        if len(interrupts) == 1:
            print("\ninterrupting: stopping the run (Ctrl-C again to kill it at once)", file=sys.stderr)
            _signal_session(child.pid, signal.SIGTERM)
            threading.Timer(GRACE_S, _signal_session, (child.pid, signal.SIGKILL)).start()
        else:
            _signal_session(child.pid, signal.SIGKILL)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = child.wait()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        _signal_session(child.pid, signal.SIGKILL)  # whatever the child left behind
    if interrupts:
        print("interrupted; run the same command again to resume from the finished units", file=sys.stderr)
        return 130
    return status if status >= 0 else 128 - status


def _signal_session(session: int, sig: int):
    try:
        os.killpg(session, sig)  # the child leads its session, so its pid is the group id
    except (ProcessLookupError, PermissionError):
        pass


def watch_parent():
    """In the supervised child: kill this session when the supervisor is gone."""
    parent = int(os.environ.get(SUPERVISED, "0"))

    def watch():
        while True:
            time.sleep(POLL_S)
            if os.getppid() != parent:
                os.killpg(0, signal.SIGKILL)

    if parent:
        threading.Thread(target=watch, name="opencorpus-parent-watch", daemon=True).start()


def is_supervised() -> bool:
    return bool(os.environ.get(SUPERVISED))
