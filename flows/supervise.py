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


def supervise(argv: list[str], run_child=None) -> int:
    """Run the command's work in a child in its own session; return its exit status (130 when
    interrupted). The child is this process forked, running `run_child()` (what it has imported
    is imported there too: ~0.5 s of a run's start), or, where forking is not safe (a thread is
    running, as after checking a bucket) or no `run_child` is given, `python -m flows.cli ARGV`."""
    env = dict(os.environ, **{SUPERVISED: str(os.getpid())})
    if run_child is not None and hasattr(os, "fork") and threading.active_count() == 1:
        child = _fork(run_child, env)
    else:
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


class _ForkedChild:
    """The forked child, waited for like a Popen."""

    def __init__(self, pid: int):
        self.pid = pid

    def wait(self) -> int:
        while True:
            try:
                _, status = os.waitpid(self.pid, 0)
                return os.waitstatus_to_exitcode(status)
            except InterruptedError:  # a signal (Ctrl-C) arrived: its handler ran; keep waiting
                continue


def _fork(run_child, env: dict) -> _ForkedChild:
    import atexit

    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return _ForkedChild(pid)
    status = 1
    try:  # the child: never returns into the supervisor's code
        os.setsid()
        os.environ.clear()
        os.environ.update(env)
        status = run_child()
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - run_child reports its own errors; this is the last resort
        import traceback

        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()  # Prefect's log and event flushes, the server's stop
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status if isinstance(status, int) else 1)


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
