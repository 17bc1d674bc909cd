"""What every SuperLink engine does around its own processes, written once.

``--engine flower`` (simulation runtime) and ``--engine deployment`` (real
SuperNodes) differ only in what they start. Both lay out a private temporary
folder (short, under ``/tmp``: Ray's sockets live there), the ``RunChannel``
the ServerApp reads its scenario from and writes its rounds, logs and result
to, the keyring file it signs with, the run's data file (``fl.data_file``: the
federated data the driver built, so no other process builds it again), and
the children's environment; then submit the run, follow it, stop every process
they started (all told at once, then each waited for, checked by pid) however
the run ends, keep the engine's logs beside the partial results on a failure,
and remove the folder. :func:`run_on_superlink` is that frame; an engine
passes a :class:`Launcher`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from simulation.config.schema import Scenario
from simulation.engine.channel import RunChannel
from simulation.engine.env import quiet_environment
from simulation.engine.superlink import LocalSuperLink, child_environment
from simulation.errors import RunError, RunInterrupted
from simulation.fl.data_file import RUN_CONFIG_KEY

if TYPE_CHECKING:
    from marketplace.keyring import Keyring
    from simulation.engine.stop import StopRequest
    from simulation.engine.watchdog import Supervised
    from simulation.world.records import RoundRecord, WorldResult

log = logging.getLogger("fedmarket.runner")

ENGINE_LOGS = "engine-logs"
"""Where a failed run's SuperLink, Ray and SuperNode logs are kept, inside ``out_dir``."""

STOP_GRACE = 60.0
"""Seconds the ServerApp gets to finish its client and seal the block after a stop."""

DATA_FILE = "data.npz"
"""The run's federated data, in the channel folder (``simulation.fl.data_file``)."""


class Liveness(Protocol):
    """What ``follow`` asks, besides the SuperLink, whether it still runs."""

    def running(self) -> bool: ...


@dataclass
class RunDir:
    """One run's private folder and what lies in it, for the engine to start from."""

    scenario: Scenario
    workdir: Path
    channel: RunChannel
    env: dict[str, str]
    keyring_file: Path
    processes: list[Supervised] = field(default_factory=list)
    """Every process started so far (the engine appends each as it starts it)."""
    _data: list[Path | None] = field(default_factory=list)

    def data(self) -> Path | None:
        """Build the federated data (once) and write the run's data file; its path, or
        ``None`` for a Hub dataset. A dataset that cannot be had is a ``DataUnavailable``."""
        if not self._data:
            self._data.append(share_data(self.scenario, self.channel.path / DATA_FILE))
        return self._data[0]


class DataUnavailable(RunError):
    """The scenario's dataset or partition cannot be had (one line, no engine logs)."""


def prepare_data(scenario: Scenario) -> None:
    """Build the federated data (memoised, so every later use reuses it): a dataset or
    partition that cannot be had fails here, in one line."""
    from simulation.fl.sources import DataError
    from simulation.fl.training import DataSpec

    try:
        DataSpec.of(scenario).build()
    except DataError as exc:
        raise DataUnavailable(f"dataset: {exc}") from None


@dataclass
class Started:
    """What an engine started: its SuperLink, what watches the rest, and what it submits."""

    link: LocalSuperLink
    liveness: Liveness
    federation: Mapping[str, Any] | None
    run_config: Mapping[str, str] = field(default_factory=dict)


class Launcher(Protocol):
    """The engine's part: start its processes (appending each to ``run.processes``)."""

    prefix: str

    def start(self, run: RunDir) -> Started: ...

    def keep_logs(self, workdir: Path, out_dir: Path) -> Path:
        """Copy the engine's logs to ``out_dir / ENGINE_LOGS``; that folder."""
        ...


def run_on_superlink(
    scenario: Scenario,
    out_dir: Path,
    launcher: Launcher,
    *,
    on_round: Callable[[RoundRecord], None] | None,
    stop: StopRequest,
    keyring: Keyring,
) -> WorldResult:
    """Run ``scenario`` on what ``launcher`` starts; the world's result."""
    quiet_environment()
    workdir = Path(tempfile.mkdtemp(prefix=launcher.prefix, dir="/tmp"))
    try:
        channel = RunChannel(workdir / "channel")
        channel.create(json.dumps(scenario.resolved()))
        run = RunDir(
            scenario,
            workdir,
            channel,
            child_environment(workdir / "flwr", ray_address=None),
            channel.hand_keyring(keyring),
        )
        link: LocalSuperLink | None = None
        try:
            started = launcher.start(run)
            link = started.link
            data_file = run.data()  # while what the engine started comes up
            link.wait_healthy()
            log.debug("SuperLink up on 127.0.0.1:%d", link.port)
            run_config = {
                "scenario": str(channel.scenario),
                "out": str(out_dir.resolve()),
                "channel": str(channel.path),
                "keyring": str(run.keyring_file),
                RUN_CONFIG_KEY: "" if data_file is None else str(data_file),
                **started.run_config,
            }
            run_id = link.submit(run_config, started.federation)
            log.debug("submitted run %d to the SuperLink on port %d", run_id, link.port)
            _import_while_they_start()
            follow(link, started.liveness, run_id, channel, on_round, stop)
        except RunError as exc:
            if isinstance(exc, (RunInterrupted, DataUnavailable)):
                raise
            logs = launcher.keep_logs(workdir, out_dir)
            raise RunError(f"{exc} (engine logs: {logs})") from exc
        finally:
            for p in run.processes:  # all told at once, then waited for
                p.begin_close()
            if link is not None:
                link.client.close()
            for p in run.processes:
                p.close()
        return channel.outcome()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def follow(
    link: LocalSuperLink,
    ray: Liveness,
    run_id: int,
    channel: RunChannel,
    on_round: Callable[[RoundRecord], None] | None,
    stop: StopRequest,
) -> None:
    """Relay rounds and log records until the run finishes (or is stopped)."""
    relay = _Relay(channel, on_round)
    stop_sent: float | None = None
    next_status = 0.0
    while True:
        relay()
        if stop.requested and stop_sent is None:
            channel.request_stop()
            stop_sent = time.monotonic()
        if stop_sent is not None and time.monotonic() - stop_sent > STOP_GRACE:
            raise RunError(f"the ServerApp did not stop within {STOP_GRACE:g} s of {stop.reason}")
        if time.monotonic() >= next_status:
            if not link.process.running():
                raise RunError("the SuperLink exited during the run")
            if not ray.running():
                raise RunError("the Ray head exited during the run")
            status, sub_status, details = link.status(run_id)
            if status == "finished":
                relay()
                if sub_status != "completed" and not (channel.path / "failure.json").exists():
                    raise RunError(f"the Flower run {sub_status}: {details or 'no details'}")
                return
            next_status = time.monotonic() + 1.0
        time.sleep(0.1)


class _Relay:
    """Passes the ServerApp's new log records and finished rounds on, in order."""

    def __init__(self, channel: RunChannel, on_round: Callable[[RoundRecord], None] | None) -> None:
        self.channel = channel
        self.on_round = on_round
        self.log_at = 0
        self.round_at = 0

    def __call__(self) -> None:
        records, self.log_at = self.channel.read_lines("log.jsonl", self.log_at)
        for rec in records:
            logging.getLogger(str(rec["name"])).log(int(rec["level"]), "%s", rec["message"])
        rounds, self.round_at = self.channel.rounds(self.round_at)
        for r in rounds:
            if self.on_round is not None:
                self.on_round(r)


def share_data(scenario: Scenario, path: Path) -> Path | None:
    """Write the federated data the driver built (memoised) to ``path`` for the
    ServerApp and the clients; ``None`` for a Hub dataset (rows decoded on demand:
    each process loads its own)."""
    from simulation.fl.data_file import save_federated, shareable
    from simulation.fl.training import DataSpec

    prepare_data(scenario)
    spec = DataSpec.of(scenario)
    data = spec.build()
    if not shareable(data):
        return None
    return save_federated(data, spec.model_dump_json(), path)


def keep_logs(out_dir: Path, logs: Mapping[str, Path]) -> Path:
    """Copy each existing log of ``logs`` (name → path) to ``out_dir / ENGINE_LOGS``."""
    dest = out_dir / ENGINE_LOGS
    dest.mkdir(parents=True, exist_ok=True)
    for name, path in logs.items():
        if path.exists():
            shutil.copy(path, dest / name)
    return dest


def _import_while_they_start() -> None:
    """What this process needs later (the results writer: pandas, pyarrow),
    imported while the run starts rather than after it."""
    import simulation.results.write  # noqa: F401
