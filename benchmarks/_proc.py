"""The processes of a run, read from ``/proc``: what the benchmarks sum RSS and CPU over.

A run's processes (Ray's head and workers, the SuperLink, its children) are not all
children of one Python ``multiprocessing`` parent, so the benchmarks walk the
parent links of every live process instead (:func:`simulation.engine.watchdog.descendants`,
the walk the watchdog stops a run's processes by)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from simulation.engine.watchdog import descendants


def _stat(pid: int | str) -> list[str]:
    """``/proc/PID/stat``'s fields after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def tree(root: int) -> list[int]:
    """``root`` and every live process below it (the watchdog's own ``/proc`` walk)."""
    return [root, *descendants(root)]


def rss(pid: int) -> int:
    """Resident bytes of ``pid`` (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of ``pid`` (``None`` once it is gone)."""
    try:
        fields = _stat(pid)
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cmdline(pid: int) -> str:
    """``pid``'s command line ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def export_ref(repo: Path, ref: str, dest: Path, *paths: str) -> Path:
    """Git ``ref``'s tree of ``repo`` (only ``paths`` when given) extracted into ``dest``:
    the code a benchmark's ``--ref`` runs side by side with this tree's."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", os.fspath(repo), "archive", ref, *paths], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", os.fspath(dest)], input=archive, check=True)
    return dest
