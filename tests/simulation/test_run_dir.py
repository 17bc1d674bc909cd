"""A run owns its --out: one live run per directory, and every I/O failure is one
line naming the path and the cause, exit 3, with a partial ledger that verifies."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marketplace import Market, audit_ledger
from simulation.cli.main import app
from simulation.engine.runner import owned_out_dir, run_scenario
from simulation.errors import RunError
from simulation.scenario.load import load_scenario
from tests.fsfaults import immutable, remount_read_only, tmpfs

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
SMALL = ["clients.count=4", "rounds=3", "training.epochs=1", "privacy={mode: none}"]
runner = CliRunner()


def small():  # type: ignore[no-untyped-def]
    return load_scenario(QUICKSTART, SMALL)


def cli_run(out: Path, *extra: str) -> tuple[int, str]:
    """``fedmarket run`` in process; its exit code and its one ``run failed`` line."""
    sets = [a for s in SMALL for a in ("--set", s)]
    args = ["run", str(QUICKSTART), "--out", str(out), "--engine", "inprocess", *sets, *extra]
    result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    failed = [line for line in result.output.splitlines() if line.startswith("run failed")]
    assert len(failed) == (result.exit_code != 0), result.output
    return result.exit_code, failed[0] if failed else ""


def test_a_live_run_refuses_a_second_run_and_force(tmp_path: Path) -> None:
    out = tmp_path / "run"
    refusals: list[str] = []

    def meanwhile(record: object) -> None:
        for force in (False, True):
            with pytest.raises(RunError) as exc:
                run_scenario(small(), out, engine="inprocess", force=force)
            refusals.append(str(exc.value))

    outcome = run_scenario(small(), out, engine="inprocess", on_round=meanwhile)
    assert len(refusals) == 6  # 3 rounds, each refused twice
    assert all(
        r == f"{out} is in use by another run (pid {os.getpid()}); wait for it or "
        "choose another --out"
        for r in refusals
    )
    assert audit_ledger(out).head_hash == outcome.result.head_hash  # nothing was deleted
    assert outcome.manifest["ledger_head"] == outcome.result.head_hash


def test_cli_exit_3_when_another_process_holds_the_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with owned_out_dir(out):  # another run's lock (flock is per open file description)
        for extra in ((), ("--force",)):
            code, line = cli_run(out, *extra)
            assert code == 3
            assert (
                line == f"run failed: {out} is in use by another run (pid {os.getpid()}); "
                "wait for it or choose another --out"
            )
    assert not (out / "ledger.db").exists()
    code, _ = cli_run(out)  # released: the directory is free again
    assert code == 0
    assert audit_ledger(out).entries > 10


def test_the_runner_imports_where_fcntl_is_absent() -> None:
    blocked = "import sys; sys.modules['fcntl'] = None; import simulation.engine.runner"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", blocked], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


def test_without_fcntl_a_run_is_refused_naming_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl raises ImportError
    out = tmp_path / "out"
    refused = r"\.fedmarket\.lock: cannot lock .* no POSIX file locks"
    with pytest.raises(RunError, match=refused), owned_out_dir(out):
        pass
    assert not out.exists()


def test_out_that_is_a_file_or_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert cli_run(tmp_path / "f") == (3, f"run failed: {tmp_path / 'f'} is not a directory")
    code, line = cli_run(tmp_path / "f" / "run")
    assert code == 3 and line.startswith(f"run failed: {tmp_path / 'f' / 'run'}")
    assert "not a directory" in line


def test_read_only_file_system(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro") as ro:
        remount_read_only(ro)
        code, line = cli_run(ro / "run")
    assert code == 3
    assert line == f"run failed: {ro / 'run'}: Read-only file system"


def test_immutable_directory(tmp_path: Path) -> None:
    (tmp_path / "imm").mkdir()
    with immutable(tmp_path / "imm"):
        code, line = cli_run(tmp_path / "imm" / "run")
    assert code == 3
    assert line == f"run failed: {tmp_path / 'imm' / 'run'}: Operation not permitted"


def test_permission_denied(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores permission bits (see the immutable and read-only tests)")
    (tmp_path / "locked").mkdir(mode=0o555)
    code, line = cli_run(tmp_path / "locked" / "run")
    assert code == 3
    assert line == f"run failed: {tmp_path / 'locked' / 'run'}: Permission denied"


def _partial_ledger_verifies(out: Path) -> int:
    report = audit_ledger(out)
    with Market.open(out) as market:
        assert market.head_hash == report.head_hash
    return report.entries


def test_disk_full_mid_run(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", size="192k") as disk:  # the run needs ~250k
        code, line = cli_run(disk / "run")
        assert code == 3
        assert line in (
            f"run failed: {disk / 'run' / 'ledger.db'}: database or disk is full",
            f"run failed: {disk / 'run'}: No space left on device",
        ) or (line.startswith(f"run failed: {disk / 'run'}/") and "No space left" in line), line
        assert _partial_ledger_verifies(disk / "run") > 5


def _file_size_limit() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (120_000, 120_000))


@pytest.mark.slow
def test_file_size_limit_mid_run(tmp_path: Path) -> None:
    """The disk-full case where no tmpfs can be mounted: writes fail past 120 kB (an
    empty ledger takes ~90 kB with its WAL; these 10 rounds ~200 kB)."""
    out = tmp_path / "run"
    sets = [a for s in [*SMALL, "rounds=10"] for a in ("--set", s)]
    cli = [sys.executable, "-m", "simulation.cli.main", "run", str(QUICKSTART)]
    proc = subprocess.run(
        [*cli, "--out", str(out), "--engine", "inprocess", *sets],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_file_size_limit,
    )
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 3, proc.stderr
    failed = [line for line in proc.stderr.splitlines() if line.startswith("run failed")]
    assert len(failed) == 1 and failed[0].startswith(f"run failed: {out}"), proc.stderr
    assert _partial_ledger_verifies(out) > 5
