"""The Flower engine's processes: a SuperLink, SuperExec, flwr-simulation and Ray
per run. Whatever ends the run (success, SIGKILL, SIGTERM), nothing it started
survives, checked by pid (and start time, so a reused pid is not mistaken for a
survivor); ``flwr run .`` works without rewriting the tracked pyproject.toml.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from marketplace import Market, audit_ledger
from simulation.engine.superlink import free_port
from simulation.engine.watchdog import Supervised, descendants
from simulation.scenario.load import load_scenario
from tests.procs import Identity, cmdline, record, wait_gone, with_environment

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"

pytestmark = pytest.mark.slow

# Small and long: two clients, cheap rounds, far more rounds than a test waits for.
ENDLESS = [
    "--set",
    "clients.count=2",
    "--set",
    "rounds=500",
    "--set",
    "privacy={mode: none}",
    "--set",
    "model.name=logreg",
]


class Run:
    """``fedmarket run`` as a child process; records every process below it."""

    def __init__(self, args: list[str]) -> None:
        # Every process of the run inherits this marker, even one started after the
        # last look at the tree (a SuperLink whose watchdog was just appearing).
        self.marker = f"{os.getpid()}-{time.monotonic_ns()}"
        env = dict(os.environ, PYTHONPATH=str(ROOT), FM_TEST_RUN=self.marker)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulation.cli.main", "run", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        self.seen: set[Identity] = set()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.decode(errors="replace"))

    def watch(self) -> list[str]:
        """Command lines of the live processes below the driver, recording them."""
        return record(descendants(self.proc.pid), self.seen)

    def wait_for(self, what: Callable[[], bool], timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            self.watch()
            assert self.proc.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, "".join(self.lines[-30:])
            time.sleep(0.1)

    def output(self) -> str:
        return "".join(self.lines)


def assert_nothing_survives(run: Run, timeout: float = 60.0) -> None:
    assert run.seen, "the run started no processes?"
    left = wait_gone(run.seen, timeout, poll=0.2)
    assert not left, left
    deadline = time.monotonic() + timeout
    while (stray := with_environment("FM_TEST_RUN", run.marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not stray, [cmdline(pid) for pid in stray]


def started(run: Run, name: str) -> Callable[[], bool]:
    return lambda: any(name in cmd for cmd in run.watch())


def round_done(run: Run, n: int) -> Callable[[], bool]:
    return lambda: any(f"round {n}/" in line for line in run.lines)


@pytest.mark.parametrize(
    "moment",
    ["superlink-up", "ray-workers-up", "mid-round"],
)
def test_sigkill_at_any_moment_leaves_no_process(tmp_path: Path, moment: str) -> None:
    run = Run([str(QUICKSTART), "--out", str(tmp_path / "run"), *ENDLESS])
    try:
        if moment == "superlink-up":
            run.wait_for(started(run, "flower-superlink"))
        elif moment == "ray-workers-up":
            run.wait_for(started(run, "ray::"))
        else:
            run.wait_for(round_done(run, 2))
        run.watch()
        run.proc.kill()
        run.proc.wait(30)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert_nothing_survives(run)
    if moment == "mid-round":  # the partial ledger verifies (its last block may be open)
        audit_ledger(tmp_path / "run")


def test_sigterm_stops_cleanly_seals_the_block_and_names_the_partial_ledger(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    run = Run([str(QUICKSTART), "--out", str(out), *ENDLESS])
    try:
        run.wait_for(round_done(run, 2))
        run.watch()
        run.proc.send_signal(signal.SIGTERM)
        code = run.proc.wait(120)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert code == 128 + signal.SIGTERM, run.output()
    assert f"the partial ledger is {out / 'ledger.db'}" in run.output()
    assert "Traceback" not in run.output()
    assert_nothing_survives(run)
    audit_ledger(out)
    with Market.open(out) as m:
        entries = list(m.entries())
    assert entries[-1].kind == "checkpoint"  # the open block was sealed


def test_flwr_run_dot_works_and_leaves_pyproject_untouched(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The README's ``flwr run .``: Flower's managed local SuperLink (state in a
    temporary FLWR_HOME, free ports), results in ``out``; the SuperLink it leaves
    running is stopped, with all it started, by the watchdog around the command."""
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    ray_tmp = tempfile.mkdtemp(prefix="fm-ray-", dir="/tmp")
    request.addfinalizer(lambda: shutil.rmtree(ray_tmp, ignore_errors=True))
    home = tmp_path / "flwr-home"
    out = tmp_path / "flwr-app"
    scenario = tmp_path / "small.yaml"  # the federation's size is the scenario's clients.count
    small = load_scenario(QUICKSTART, ["clients.count=2", "rounds=2", "privacy={mode: none}"])
    scenario.write_text(yaml.safe_dump(small.resolved()))
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        FLWR_HOME=str(home),
        FLWR_LOCAL_SUPERLINK_HTTP_API_PORT=str(free_port()),
        FLWR_LOCAL_CONTROL_API_PORT=str(free_port()),
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        RAY_TMPDIR=ray_tmp,  # short: Ray's socket paths must fit in 107 bytes
    )
    flwr = str(Path(sys.executable).parent / "flwr")
    argv = [
        flwr,
        "run",
        ".",
        "--stream",
        "--federation-config",
        "num-supernodes=2",
        "--run-config",
        f"out='{out}' scenario='{scenario}'",
    ]
    # flwr run --stream returns when the run ends; the watchdog then ends the
    # detached SuperLink it started (a subreaper adopts it).
    sup = Supervised.start(argv, env=env, log=tmp_path / "flwr.log", name="flwr run", cwd=ROOT)
    seen: set[Identity] = set()
    commands: set[str] = set()
    deadline = time.monotonic() + 900
    while sup.watchdog.poll() is None and time.monotonic() < deadline:
        commands.update(record(sup.tree(), seen))
        if (out / "manifest.json").exists():
            break
        time.sleep(0.2)
    sup.close()
    log = (tmp_path / "flwr.log").read_text(errors="replace")
    assert (out / "manifest.json").exists(), log[-3000:]
    assert audit_ledger(out).head_hash
    assert (ROOT / "pyproject.toml").read_bytes() == pyproject
    assert any("flower-superlink" in c for c in commands), commands
    left = wait_gone(seen, 60.0, poll=0.2)
    assert not left, left
