"""Child processes that cannot outlive the run that started them.

A SuperLink starts a SuperExec in a session of its own, which starts
``flwr-simulation``, which starts Ray (GCS, raylet, agents, workers). Killing
any one of them leaves the rest running: Ray's ``DashboardAgent`` and
``RuntimeEnvAgent`` survived a SIGKILL of the driver in about half of the
trials. So every such command runs under a small watchdog process:

* the watchdog is a Linux *child subreaper* (``PR_SET_CHILD_SUBREAPER``):
  whatever its command starts and then orphans, in any session, becomes its
  child, so the whole tree stays reachable from one pid;
* it ends that tree (SIGTERM, then SIGKILL after a grace period) as soon as
  its standard input reaches end of file, which happens when the driver closes
  the pipe or dies for any reason (SIGKILL included: the kernel closes the
  pipe), when it gets SIGTERM/SIGINT/SIGHUP, or when its command exits;
* ``PR_SET_PDEATHSIG`` sends it SIGTERM when the driver dies, as a second
  path to the same end.

``Supervised.start`` runs a command this way from the driver;
``python -m simulation.engine.watchdog CMD...`` is the watchdog itself (from a
shell it ends the tree when ``CMD`` exits: ``flwr run`` leaves a detached
SuperLink behind, this does not). Only
the standard library is imported here: it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

__all__ = ["Supervised", "descendants", "pid_alive", "start_time"]

log = logging.getLogger("fedmarket.watchdog")

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE_SECONDS = 5.0


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces or parentheses.
    fields = stat.rpartition(")")[2].split()
    return int(fields[1]) if len(fields) > 1 else None


def start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot): tells it from a later reuse."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (children first), from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent_of(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    out: list[int] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def pid_alive(pid: int) -> bool:
    """Does ``pid`` name a process that has not exited (zombies count as exited)?"""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@dataclass
class Supervised:
    """A command running under a watchdog; ``close()`` ends it and all it started."""

    watchdog: subprocess.Popen[bytes]
    pid: int  # the command's own pid
    name: str
    started: dict[int, str | None] = field(default_factory=dict)  # the tree when closing

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log: Path,
        name: str,
        cwd: Path | None = None,
    ) -> Supervised:
        """Start ``argv`` (output to ``log``) under a new watchdog in its own session."""
        with open(log, "ab") as out:
            watchdog = subprocess.Popen(
                # Run as a script: it needs nothing but the standard library.
                [sys.executable, str(Path(__file__).resolve()), *argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=out,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,  # a terminal's Ctrl-C reaches the driver only
            )
        assert watchdog.stdout is not None
        line = watchdog.stdout.readline()
        if not line.strip().isdigit():
            watchdog.wait()
            raise OSError(f"{name} did not start (see {log})")
        return cls(watchdog, int(line), name)

    def running(self) -> bool:
        """Is the command still running?"""
        return self.watchdog.poll() is None and pid_alive(self.pid)

    def tree(self) -> list[int]:
        """The watchdog and every process below it, now."""
        return [self.watchdog.pid, *descendants(self.watchdog.pid)]

    def begin_close(self) -> None:
        """Tell the watchdog to end the tree (``close`` waits for it)."""
        if not self.started:
            self.started = {pid: start_time(pid) for pid in self.tree()}
        if self.watchdog.stdin is not None and not self.watchdog.stdin.closed:
            with contextlib.suppress(OSError):
                self.watchdog.stdin.close()

    def close(self, timeout: float = GRACE_SECONDS + 10.0) -> None:
        """End the command and everything it started; wait for the watchdog, then
        check by pid (and start time) that none of them is left."""
        self.begin_close()
        started = self.started
        try:
            self.watchdog.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in reversed(self.tree()):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            self.watchdog.wait()
        if self.watchdog.stdout is not None:
            self.watchdog.stdout.close()
        left = [p for p, t in started.items() if pid_alive(p) and start_time(p) == t]
        for pid in left:
            log.warning("%s: process %d outlived its watchdog; killing it", self.name, pid)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------- the watchdog side


def _reap() -> int | None:
    """Collect every exited child (adopted orphans included), without scanning
    ``/proc``; the exit code of the command if it was among them."""
    code = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return code
        if pid == 0:
            return code
        if pid == _command_pid:
            code = os.waitstatus_to_exitcode(status)


_command_pid = -1


def _end_tree(grace: float) -> None:
    """SIGTERM every descendant, wait up to ``grace`` seconds, SIGKILL the rest."""
    me = os.getpid()
    for pid in descendants(me):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap()
        if not [p for p in descendants(me) if pid_alive(p)]:
            break
        time.sleep(0.05)
    for _ in range(20):  # a process may fork while it is being killed
        left = [p for p in descendants(me) if pid_alive(p)]
        if not left:
            break
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    _reap()


def _is_pipe(stream: object) -> bool:
    fileno = getattr(stream, "fileno", None)
    return fileno is not None and stat.S_ISFIFO(os.fstat(fileno()).st_mode)


def _watch(argv: list[str]) -> int:
    parent = os.getppid()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    stop = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if os.getppid() != parent:  # the driver died before PDEATHSIG was armed
        return 1
    # Standard input and output are pipes only from a driver (``Supervised``):
    # from a shell (``python -m simulation.engine.watchdog flwr run ...``) the
    # command shares the terminal, and its own exit ends the tree.
    driven = _is_pipe(sys.stdin) and _is_pipe(sys.stdout)
    global _command_pid
    child = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL if driven else None, stdout=sys.stderr if driven else None
    )
    _command_pid = child.pid
    try:  # from here on, however the watchdog leaves, the tree goes with it
        if driven and not _tell_driver(child.pid):
            return 1
        watched = [sys.stdin] if driven else []
        code: int | None = None
        while not stop and code is None:
            readable, _, _ = select.select(watched, [], [], 0.2)
            if readable and not os.read(sys.stdin.fileno(), 4096):
                break  # the driver closed the pipe, or died
            if os.getppid() != parent:
                break
            code = _reap()
        return code or 0
    finally:
        _end_tree(GRACE_SECONDS)


def _tell_driver(pid: int) -> bool:
    """Write the command's pid for the driver; ``False`` when the driver is gone (it
    died after starting the watchdog and before reading: the pipe is broken)."""
    try:
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null (as Python's
        # own docs advise for SIGPIPE) so that flush cannot fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return False
    return True


if __name__ == "__main__":
    sys.exit(_watch(sys.argv[1:]))
