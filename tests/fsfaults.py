"""File-system faults for tests: a small or read-only tmpfs, an immutable directory.

Each helper skips the calling test when this machine cannot make the fault (not
root, no ``mount`` or ``chattr``), so the suite runs anywhere; CI as root runs them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _run(*cmd: str) -> bool:
    if shutil.which(cmd[0]) is None:
        return False
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    """A fresh tmpfs of ``size`` mounted at ``path`` (root only)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not _run(
        "mount", "-t", "tmpfs", "-o", f"size={size}", "none", str(path)
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        _run("umount", "-l", str(path))


def remount_read_only(path: Path) -> None:
    """Make the tmpfs at ``path`` read-only."""
    if not _run("mount", "-o", "remount,ro", str(path)):
        pytest.skip("cannot remount read-only here")


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """``chattr +i`` on ``path`` for the block: even root cannot create files in it."""
    if os.geteuid() != 0 or not _run("chattr", "+i", str(path)):
        pytest.skip("cannot set the immutable attribute here (needs root and chattr)")
    try:
        yield path
    finally:
        _run("chattr", "-i", str(path))
