"""``compare --ray-address``: a study run as tasks on a real (local) Ray head gives the
local sweep's table and ledger heads, resumes, and leaves no Ray process behind."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from marketplace.errors import KeyringError
from simulation.scenario.sweep import resolve_study
from simulation.study.compare import run_study
from simulation.study.ray_sweep import KeyringSource, unpack
from tests.compare.conftest import QUICKSTART, TINY_SET, write_sweep
from tests.compare.test_study import _app
from tests.keyring import KEYRING, KEYRING_FILE
from tests.procs import alive, group_pids, with_environment

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")
STUDY_SET = [*TINY_SET, "rewards.mechanism=equal,data_size", "seed=1,2"]
#: Timed on the machine that ran it, so never compared between runs.
WALL_TIMES = ["wall_seconds"]
#: Set in the head's environment, so every process it starts can be found by PID.
MARKER = "FEDMARKET_TEST_RAY_HEAD"
SET_ARGS = [arg for s in STUDY_SET for arg in ("--set", s)]


# ---------------------------------------------------------------- no cluster needed


def test_flower_engine_with_ray_address_is_refused(tmp_path: Path) -> None:
    runner = CliRunner()
    args = [
        "compare",
        str(QUICKSTART),
        "--out",
        str(tmp_path / "s"),
        *SET_ARGS,
    ]
    flower = runner.invoke(_app(), [*args, "--ray-address", "127.0.0.1:1", "--engine", "flower"])
    assert flower.exit_code == 2, flower.output
    assert "'flower' cannot run on a Ray cluster" in flower.output
    assert "--engine inprocess" in flower.output
    sweep = write_sweep(tmp_path / "s.yaml", "base: BASE\nengine: flower\n")
    from_file = runner.invoke(
        _app(), ["compare", str(sweep), "--out", str(tmp_path / "s"), "--ray-address", "h:1"]
    )
    assert from_file.exit_code == 2 and f"{sweep}: engine -> 'flower'" in from_file.output
    default = write_sweep(tmp_path / "d.yaml", "base: BASE\n")
    by_default = runner.invoke(
        _app(), ["compare", str(default), "--out", str(tmp_path / "s"), "--ray-address", "h:1"]
    )
    assert by_default.exit_code == 2
    assert f"{default}: engine -> 'flower' (the default) cannot run" in by_default.output
    lone = runner.invoke(_app(), [*args, "--ship-keyring"])
    assert lone.exit_code == 2 and "only with --ray-address" in lone.output
    workers = runner.invoke(_app(), [*args, "--ray-address", "h:1", "--workers", "2"])
    assert workers.exit_code == 2 and "--workers: not with --ray-address" in workers.output
    assert not (tmp_path / "s").exists()  # refused before anything ran


def test_unreachable_cluster_is_one_line_exit_3(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["compare", str(QUICKSTART), "--out", str(tmp_path / "s"), "--set", "rounds=1"]
    result = CliRunner().invoke(_app(), [*args, "--ray-address", f"127.0.0.1:{port}"])
    assert result.exit_code == 3, result.output
    assert f"--ray-address 127.0.0.1:{port}: cannot connect to a Ray cluster" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_archive_round_trip_and_unsafe_members(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "manifest.json").write_text("{}")
    (src / "sub" / "x.bin").write_bytes(b"\x00\x01")
    from simulation.study.ray_sweep import _pack

    target = tmp_path / "runs" / "r1"
    target.mkdir(parents=True)
    (target / "stale.txt").write_text("from a partial run")
    unpack(_pack(src), target)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == [
        "manifest.json",
        "sub",
        "sub/x.bin",
    ]
    assert (target / "sub" / "x.bin").read_bytes() == b"\x00\x01"
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(tarfile.OutsideDestinationError):
        unpack(evil.getvalue(), tmp_path / "runs" / "r2")
    assert not (tmp_path / "runs" / "escaped.txt").exists()


def test_keyring_source_never_shows_the_secret(tmp_path: Path) -> None:
    shipped = KeyringSource.of(KEYRING, ship=True)
    assert shipped.open().id == KEYRING.id
    secret_hex = KEYRING_FILE.read_text().split()[-1]
    assert secret_hex not in repr(shipped) and "shipped=True" in repr(shipped)
    with pytest.raises(KeyringError, match="in-memory"):
        KeyringSource.of(KEYRING, ship=False)
    missing = KeyringSource(path=str(tmp_path / "none"))
    with pytest.raises(KeyringError, match="no keyring file"):
        missing.open()


# ---------------------------------------------------------------- a real local head


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    with contextlib.ExitStack() as stack:
        for s in sockets:
            stack.enter_context(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def _head_command(temp: Path) -> tuple[list[str], int]:
    gcs, node, objects, client, agent_grpc, agent_http, metrics, env_agent = _free_ports(8)
    cmd = [
        str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
        "--include-dashboard", "false", "--disable-usage-stats", "--num-cpus", "2",
        "--temp-dir", str(temp), "--port", str(gcs), "--node-manager-port", str(node),
        "--object-manager-port", str(objects), "--ray-client-server-port", str(client),
        "--dashboard-agent-grpc-port", str(agent_grpc),
        "--dashboard-agent-listen-port", str(agent_http),
        "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(env_agent),
    ]  # fmt: skip
    return cmd, gcs


def _kill_group(head: subprocess.Popen[bytes], pids: set[int]) -> None:
    """SIGKILL the head's process group, then wait (30 s at most) until every PID seen
    in it is gone; the group id is the head's PID (``start_new_session``)."""
    pids |= group_pids(head.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    head.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids | group_pids(head.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)


def _started(head: subprocess.Popen[bytes], log_path: Path) -> bool:
    """Wait until ``ray start`` says the runtime started (GCS, raylet and agents up, not
    merely the GCS port open); False when it exits first."""
    deadline = time.monotonic() + 180
    while b"Ray runtime started" not in log_path.read_bytes():
        if head.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the Ray head did not start in 180 s"
        time.sleep(0.2)
    return True


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[str]:
    """``ray start --head --block`` on 127.0.0.1 in its own process group; stopped by
    killing that group (``ray stop`` kills by process name: any Ray on the machine).

    Ray gives its raylet a fixed 30 s to register at start-up; on a loaded CI machine
    that can pass, and the head exits: it is then started again (3 tries)."""
    temp = Path(tempfile.mkdtemp(prefix="fmray-", dir="/tmp"))  # short: Unix socket paths
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_worker_niceness": "0",
        MARKER: str(temp),
        # the workers import this tree's ``simulation`` (a real cluster installs it)
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    pids: set[int] = set()
    heads: list[subprocess.Popen[bytes]] = []
    try:
        for attempt in range(3):
            log_path = tmp_path / f"ray-head-{attempt}.log"  # kept by pytest for a post-mortem
            cmd, gcs = _head_command(temp)
            with log_path.open("wb") as log:
                head = subprocess.Popen(
                    cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            heads.append(head)
            if _started(head, log_path):
                break
            _kill_group(heads.pop(), pids)
        else:
            pytest.fail("the Ray head failed to start 3 times:\n" + log_path.read_text()[-3000:])
        yield f"127.0.0.1:{gcs}"
        pids |= group_pids(head.pid)
        assert head.pid in pids and len(pids) > 1  # the head and the daemons it started
        assert set(with_environment(MARKER, str(temp))) <= pids  # nothing it started left the group
    finally:
        for head in heads:
            _kill_group(head, pids)
        shutil.rmtree(temp, ignore_errors=True)
    left = [p for p in pids if alive(p)]
    assert not left, f"Ray processes left after killing the group: {left}"
    # and none that left the group (setsid) either: all inherited the marker
    strays = [p for p in with_environment(MARKER, str(temp)) if alive(p)]
    assert not strays, f"Ray processes outside the group left: {strays}"


def _heads(study_dir: Path) -> dict[str, str]:
    return {
        p.parent.name: json.loads(p.read_text())["ledger_head"]
        for p in study_dir.glob("runs/*/manifest.json")
    }


@pytest.mark.slow
def test_ray_study_equals_local_sweep_and_resumes(tmp_path: Path, ray_head: str) -> None:
    study = resolve_study(QUICKSTART, STUDY_SET, engine="inprocess")
    assert len(study.variants) == 4
    local = run_study(study, tmp_path / "local", workers=1)
    assert local.failed == 0

    out = tmp_path / "ray"
    args = [sys.executable, "-m", "simulation.cli.main", "compare", str(QUICKSTART)]
    args += ["--out", str(out), *SET_ARGS]
    args += ["--ray-address", ray_head]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}

    def compare(*extra: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*args, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        logs = sorted(tmp_path.glob("ray-head-*.log"))
        head_log = logs[-1].read_text(errors="replace")[-2000:]
        assert proc.returncode == 0, proc.stderr[-3000:] + "\nray head:\n" + head_log
        return proc

    assert "4 ran, 0 reused, 0 failed" in compare().stdout
    ray_table = pd.read_parquet(out / "study.parquet")
    local_table = pd.read_parquet(tmp_path / "local" / "study.parquet")
    assert (ray_table["status"] == "ok").all()
    pd.testing.assert_frame_equal(
        ray_table.drop(columns=WALL_TIMES), local_table.drop(columns=WALL_TIMES)
    )
    heads = _heads(out)
    assert heads == _heads(tmp_path / "local") and len(set(heads.values())) == 4
    assert not list(out.glob("runs/.*"))  # no half-unpacked directory left

    # resume: one run lost, one killed mid-write; re-run with the secret shipped
    lost, partial = sorted(heads)[:2]
    shutil.rmtree(out / "runs" / lost)
    (out / "runs" / partial / "manifest.json").write_text('{"scenario": {}')
    assert "2 ran, 2 reused, 0 failed" in compare("--ship-keyring").stdout
    assert _heads(out) == heads
    resumed = pd.read_parquet(out / "study.parquet")
    assert resumed["reused"].tolist() == [r not in (lost, partial) for r in resumed["run_id"]]
    pd.testing.assert_frame_equal(
        resumed.drop(columns=[*WALL_TIMES, "reused"]),
        local_table.drop(columns=[*WALL_TIMES, "reused"]),
    )
