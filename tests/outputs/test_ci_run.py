"""``.ci/run`` under ``CI=true`` fails when no Chromium can be had, so the report rendering
tests never skip silently in CI; elsewhere it warns and runs the suite."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _fake_path(tmp_path: Path) -> Path:
    """A PATH with the shell tools .ci/run needs, an ``apt-get`` that fails, a ``make``
    that only says it ran, and no browser."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} not on PATH")
        (bin_dir / tool).symlink_to(found)
    for name, body in (("apt-get", "exit 1"), ("make", "echo make-ran")):
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("ci", [True, False])
def test_ci_run_requires_chromium_under_ci(tmp_path: Path, ci: bool) -> None:
    bin_dir = _fake_path(tmp_path)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)} | ({"CI": "true"} if ci else {})
    done = subprocess.run(
        [str(bin_dir / "bash"), str(REPO / ".ci" / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if ci:
        assert done.returncode == 1
        assert "CI=true and Chromium could not be installed" in done.stderr
        assert "make-ran" not in done.stdout
    else:
        assert done.returncode == 0, done.stderr
        assert "make-ran" in done.stdout and "will be skipped" in done.stderr
