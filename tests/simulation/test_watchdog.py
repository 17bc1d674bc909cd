"""The watchdog ends everything its command started, including processes in
sessions of their own, when the driver closes it or dies (SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from simulation.engine.watchdog import Supervised, descendants
from tests.procs import Identity, cmdline, identity, wait_gone, with_environment

ROOT = Path(__file__).resolve().parents[2]
# A child, a grandchild in a new session (as a SuperExec is), and a grandchild
# that ignores SIGTERM (killed after the grace period).
TREE = "sleep 300 & setsid sleep 301 & (trap '' TERM; sleep 302) & wait"


def identities(pids: list[int]) -> set[Identity]:
    return {i for i in map(identity, pids) if i is not None}


def wait_for_tree(sup: Supervised, size: int) -> set[Identity]:
    deadline = time.monotonic() + 30
    while len(sup.tree()) < size and time.monotonic() < deadline:
        time.sleep(0.05)
    return identities(sup.tree())


def test_close_ends_the_whole_tree(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    sup = Supervised.start(["sh", "-c", TREE], env=env, log=tmp_path / "log", name="tree")
    pids = wait_for_tree(sup, 5)  # watchdog, sh, three sleeps
    assert len(pids) >= 5 and sup.running()
    started = time.monotonic()
    sup.close()
    assert not wait_gone(pids, 1.0)
    assert time.monotonic() - started < 15  # grace period, then SIGKILL


def test_a_killed_driver_leaves_nothing_behind(tmp_path: Path) -> None:
    driver = f"""
import os, sys, time
from pathlib import Path
from simulation.engine.watchdog import Supervised
log = Path({str(tmp_path / "log")!r})
sup = Supervised.start(["sh", "-c", {TREE!r}], env=dict(os.environ), log=log, name="tree")
print(sup.watchdog.pid, flush=True)
time.sleep(300)
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    watchdog = int(proc.stdout.readline())

    deadline = time.monotonic() + 30
    while len(descendants(watchdog)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = identities([watchdog, *descendants(watchdog)])
    assert len(pids) >= 5
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = wait_gone(pids, 15.0)
    assert not left, left


def test_a_driver_gone_before_it_reads_the_pid_leaves_nothing_behind() -> None:
    """The driver can die between starting the watchdog and reading the command's pid
    (a SIGKILL right after the SuperLink's watchdog appeared once left a SuperLink
    running): writing the pid then fails with a broken pipe, and the watchdog must
    still end the command it just started rather than die of the exception."""
    marker = f"watchdog-broken-pipe-{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, PYTHONPATH=str(ROOT), FM_TEST_MARKER=marker)
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "simulation.engine.watchdog", "sleep", "300"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert watchdog.stdout is not None and watchdog.stdin is not None
    watchdog.stdout.close()  # long before the interpreter starts: the pid has no reader
    try:
        watchdog.wait(30)
    finally:
        watchdog.stdin.close()
    deadline = time.monotonic() + 15
    while (left := with_environment("FM_TEST_MARKER", marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, [cmdline(pid) for pid in left]
