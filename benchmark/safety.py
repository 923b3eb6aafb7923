"""Concurrent and killed runs (issue 27): job locks, and workers that die with their parent.

Job locks: a run claims its job with ``<run dir>/lock``, created with ``O_CREAT | O_EXCL`` and holding
the owner's pid, host and start time; it is removed when the job ends. A lock whose owner is gone
(same host, pid no longer alive, or alive with another start time: a reused pid) is stale and is
broken, under an ``flock`` so two runs never break the same lock twice. A lock held by a live owner,
or by another host, means another run is computing that job: this run leaves it to that run.

Workers: every process a pool spawns asks the kernel to kill it when its parent dies
(``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux) and, everywhere, watches its parent pid from a daemon
thread, so a SIGKILLed ``benchmark --workers N`` leaves no worker running and no result written after
it is gone (the multiprocessing resource tracker exits when the last of them closes its pipe).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK = "lock"


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux ``/proc``), to tell a reused pid from its owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def owner_record() -> dict:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "start": _start_time(pid), "since": time.time()}


def read_owner(path: Path) -> dict | None:
    """The lock's owner record, None if there is no lock; a lock that cannot be parsed is ``{}``."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def is_stale(owner: dict, grace: float = 10.0, path: Path | None = None) -> bool:
    """Whether a lock's owner is gone. A lock this host cannot read (being written, or garbage) is
    stale once older than ``grace`` seconds; one from another host is never stale."""
    if not owner:
        try:
            return path is not None and time.time() - path.stat().st_mtime > grace
        except OSError:
            return False
    if owner.get("host") != socket.gethostname():
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    if not _alive(pid):
        return True
    start = owner.get("start")
    return start is not None and _start_time(pid) not in (None, start)


class JobLock:
    """``lock = JobLock(run_dir); if lock.acquire(): ... finally lock.release()``; ``lock.owner`` names
    the holder when acquire() fails."""

    def __init__(self, run_dir: str | os.PathLike):
        self.dir = Path(run_dir)
        self.path = self.dir / LOCK
        self.owner: dict | None = None
        self.held = False

    def acquire(self) -> bool:
        self.dir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = read_owner(self.path)
                if owner is None:
                    continue  # released meanwhile: try again
                if not is_stale(owner, path=self.path):
                    self.owner = owner
                    return False
                self._break(owner)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(owner_record(), f)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            return True
        self.owner = read_owner(self.path) or {}
        return False

    def _break(self, seen: dict) -> None:
        """Remove a stale lock, if it is still the one seen (serialised with other breakers)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not Unix: best effort
            fcntl = None
        guard = os.open(self.dir / (LOCK + ".break"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(guard, fcntl.LOCK_EX)
            if read_owner(self.path) == seen:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(guard)

    def release(self) -> None:
        if self.held:
            if (read_owner(self.path) or {}).get("pid") == os.getpid():  # never remove another's lock
                self.path.unlink(missing_ok=True)
            self.held = False

    def describe(self) -> str:
        o = self.owner or {}
        return f"pid {o.get('pid', '?')} on {o.get('host', '?')}"


# ---------------------------------------------------------------------------------------------------
# workers die with their parent
# ---------------------------------------------------------------------------------------------------

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, poll: float = 0.2) -> None:
    """In a worker: be killed when the process ``parent_pid`` dies (a pool initializer)."""
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the watchdog below still works
            pass
    if os.getppid() != parent_pid:  # the parent died before the prctl took effect
        os._exit(1)

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(poll)

    threading.Thread(target=watch, name="circuit-bench-parent-watch", daemon=True).start()


_WATCHDOG = r"""
import os, signal, sys, threading, time
driver = int(sys.argv[1])
seen = set()
def children():
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = set(), [driver]
    while todo:
        for k in kids.get(todo.pop(), ()):
            if k != os.getpid() and k not in out:
                out.add(k)
                todo.append(k)
    return out
done = threading.Event()
def watch_pipe():
    clean = sys.stdin.read() == "done"  # EOF without "done": the driver died
    done.set()
    if not clean:
        for pid in seen | children():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        os._exit(3)
threading.Thread(target=watch_pipe, daemon=True).start()
while not done.is_set():
    seen |= children()
    time.sleep(0.5)
"""


class ProcessTreeWatchdog:
    """Kills what this process started (all its descendants, as last seen) if this process dies without
    saying goodbye (SIGKILL): for services such as a local Ray instance, whose agents would otherwise
    outlive the driver. Linux only (reads ``/proc``); elsewhere it does nothing. Use as a context
    manager: a clean exit of the block tells the watchdog to stand down."""

    def __init__(self) -> None:
        self._proc = None

    def __enter__(self) -> "ProcessTreeWatchdog":
        import subprocess
        import sys

        if sys.platform.startswith("linux") and os.path.isdir("/proc"):
            self._proc = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid())],
                                          stdin=subprocess.PIPE, text=True, start_new_session=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            try:
                self._proc.stdin.write("done")
                self._proc.stdin.close()
                self._proc.wait(timeout=10)
            except (OSError, ValueError):
                pass
