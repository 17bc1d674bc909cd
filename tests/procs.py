"""Processes seen through ``/proc``, for the tests that start real ones (Ray heads,
Flower SuperLinks and SuperNodes, killed runs) and must show, by PID, that every
one of them stopped.

A zombie (exited, not yet reaped) counts as stopped. A process is told from a
later one that reuses its PID by its start time (:func:`identity`), so a check
that waits for a set of processes to go never waits on an unrelated newcomer.
Liveness and start times are the watchdog's own readers
(:mod:`simulation.engine.watchdog`), so tests and the code that stops processes
read ``/proc`` the same way.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from pathlib import Path

from simulation.engine.watchdog import pid_alive, start_time

__all__ = [
    "Identity",
    "alive",
    "cmdline",
    "group_pids",
    "identity",
    "record",
    "survivors",
    "wait_gone",
    "with_environment",
]

Identity = tuple[int, str]
"""``(pid, start time)``: one process, never a later one that reuses the pid."""


def alive(pid: int) -> bool:
    """Still running (a zombie is not)."""
    return pid_alive(pid)


def identity(pid: int) -> Identity | None:
    """``(pid, start time)`` of a live or zombie ``pid``; ``None`` when it is gone."""
    started = start_time(pid)
    return None if started is None else (pid, started)


def cmdline(pid: int) -> str:
    """The command line of ``pid`` (empty when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def record(pids: Iterable[int], seen: set[Identity]) -> list[str]:
    """Add the live ``pids`` to ``seen``; their command lines."""
    out = []
    for pid in pids:
        ident = identity(pid)
        if ident is not None:
            seen.add(ident)
            out.append(cmdline(pid))
    return out


def survivors(seen: Iterable[Identity]) -> list[str]:
    """``"pid: command line"`` of each process in ``seen`` that still runs."""
    return [
        f"{pid}: {cmdline(pid)[:120]}"
        for pid, started in seen
        if pid_alive(pid) and identity(pid) == (pid, started)
    ]


def wait_gone(seen: Iterable[Identity], timeout: float, poll: float = 0.05) -> list[str]:
    """Wait up to ``timeout`` seconds for every process in ``seen`` to stop; the
    survivors then (empty when all stopped)."""
    seen = list(seen)
    deadline = time.monotonic() + timeout
    while (left := survivors(seen)) and time.monotonic() < deadline:
        time.sleep(poll)
    return left


def group_pids(pgid: int) -> set[int]:
    """Live processes whose process group is ``pgid``."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.add(int(stat.parent.name))
    return pids


def with_environment(name: str, value: str) -> list[int]:
    """Processes whose environment holds ``name=value`` (a marker every descendant
    of a test's process inherits, even one that left its process group)."""
    needle = f"{name}={value}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if needle in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
    return found
