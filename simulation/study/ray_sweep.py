"""Running a study's runs as tasks on an existing Ray cluster (``compare --ray-address``).

Why Ray and not a home-made scheduler: Ray is already a dependency (through
Flower, at the version Flower pins) and already is the cluster scheduler
researchers have. Each run of a study becomes one Ray task of one CPU; the
driver (``fedmarket compare``) keeps every decision a local sweep makes
(which runs are complete and reused, the study tables), so a Ray study and a
local one differ only in where each run trains.

Three choices, each documented in ``docs/compare.md``:

* **Engine.** A task runs with the ``inprocess`` engine only: a Flower
  simulation nested inside a Ray task would start its own Ray runtime on the
  task's CPUs and deadlock. :class:`RayExecutor` refuses any other engine.
* **Output.** A task runs into a temporary directory on its node, packs it as
  a tar archive and *returns* it; the driver unpacks it into
  ``runs/<run_id>/`` (atomically: a rename) on its own disk. No shared
  filesystem is needed for results, and a task killed mid-way leaves nothing
  in the study. The price is that each run directory crosses the Ray object
  store (small for studies: ``output.save_model: false`` keeps it small).
* **Keyring.** The signing keyring travels as a :class:`KeyringSource`:
  by default its *path*, which each task reads (the keyring file must exist
  at that path on every node: a shared home directory, or provisioned with
  mode 0600), or with ``ship=True`` the secret itself in the task arguments
  (no file on the workers, but the secret crosses Ray's network and sits in
  its task table for the task's life; unencrypted unless the cluster enables
  Ray's TLS). Neither writes the secret into a run directory.
"""

from __future__ import annotations

import io
import logging
import math
import shutil
import socket
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from marketplace.errors import KeyringError
from marketplace.keyring import Keyring
from simulation.errors import Problem, RunError, ScenarioError
from simulation.scenario.load import read_yaml
from simulation.scenario.sweep import Engine, is_sweep_file
from simulation.study.compare import RunStatus, RunTask, execute_run

__all__ = ["KeyringSource", "RayExecutor", "RemoteRun", "ray_engine_problem", "ray_study_engine"]

log = logging.getLogger("fedmarket.compare.ray")

#: Hosts Ray would rewrite to the machine's outward address (see :func:`_connect`).
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_PROBE_SECONDS = 10.0


def ray_engine_problem(engine: str | None) -> Problem | None:
    """The error for an engine that cannot run inside a Ray task (``None`` when it can)."""
    if engine in (None, "inprocess"):
        return None
    return Problem(
        "--engine",
        "engine",
        f"{engine!r} cannot run on a Ray cluster: a Flower simulation nested inside a "
        "Ray task deadlocks; runs on a Ray cluster use --engine inprocess",
    )


def ray_study_engine(target: Path | str, engine: str | None) -> Engine:
    """The engine of a study run on Ray: ``inprocess``, unless ``--engine`` or the sweep
    file asks for another, which is a ``ScenarioError`` (never silently replaced).
    ``--engine inprocess`` overrides a sweep file's ``engine: flower``, as it does locally."""
    problem = ray_engine_problem(engine)
    if problem is None and engine is None:
        data = read_yaml(Path(target))
        if is_sweep_file(data) and data.get("engine", "flower") != "inprocess":
            named = repr(data["engine"]) if "engine" in data else "'flower' (the default)"
            problem = Problem(
                str(target),
                "engine",
                f"{named} cannot run on a Ray cluster: "
                "set engine: inprocess or pass --engine inprocess",
            )
    if problem is not None:
        raise ScenarioError([problem])
    return "inprocess"


@dataclass(frozen=True, repr=False)
class KeyringSource:
    """How a task obtains the keyring that signs its ledger (see the module doc).

    Exactly one of ``path`` (read on the worker; the file must be there) and
    ``keyring`` (the secret itself, shipped in the task arguments)."""

    path: str | None = None
    keyring: Keyring | None = None

    @classmethod
    def of(cls, keyring: Keyring, *, ship: bool) -> KeyringSource:
        """Ship ``keyring`` itself, or its file path (an in-memory keyring has none)."""
        if ship:
            return cls(keyring=keyring)
        if keyring.path is None:
            raise KeyringError("an in-memory keyring has no file to point Ray tasks at: ship it")
        return cls(path=str(keyring.path.resolve()))

    def open(self) -> Keyring:
        """The keyring, on the worker (``KeyringError`` naming the path if it is not there)."""
        if self.keyring is not None:
            return self.keyring
        if self.path is None:
            raise KeyringError("no keyring given to the Ray task")
        return Keyring.load(self.path)

    def __repr__(self) -> str:  # Ray logs task arguments on failure: never the secret
        return f"KeyringSource(path={self.path!r}, shipped={self.keyring is not None})"


@dataclass(frozen=True)
class RemoteRun:
    """What a task sends back: how the run ended and its run directory as a tar archive
    (empty when the run wrote nothing)."""

    status: RunStatus
    archive: bytes


def _pack(run_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(run_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(run_dir)), recursive=False)
    return buffer.getvalue()


def unpack(archive: bytes, run_dir: Path) -> None:
    """Replace ``run_dir`` by the archive's content, atomically (unpacked beside it, then
    renamed), so a driver killed mid-way leaves the old directory or the new, never a mix.
    The ``data`` filter refuses absolute paths, ``..`` and links out of the directory."""
    incoming = run_dir.with_name(f".{run_dir.name}.incoming")
    shutil.rmtree(incoming, ignore_errors=True)
    incoming.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
        tar.extractall(incoming, filter="data")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    incoming.rename(run_dir)


def run_remote(task: RunTask, keyring: KeyringSource) -> RemoteRun:
    """The body of one Ray task: run ``task`` into a temporary directory, return it packed.

    Never raises for a run's own failure (like :func:`execute_run`), so the driver
    tells a failed run (recorded) from a lost task (a node died)."""
    logging.getLogger("fedmarket").setLevel(logging.WARNING)
    try:
        signer = keyring.open()
    except KeyringError as exc:
        return RemoteRun(RunStatus(task.run_id, "failed", f"KeyringError: {exc}", math.nan), b"")
    with tempfile.TemporaryDirectory(prefix="fedmarket-ray-") as tmp:
        local = Path(tmp) / task.run_id
        status = execute_run(replace(task, out_dir=str(local)), keyring=signer)
        archive = _pack(local) if local.is_dir() else b""
    return RemoteRun(status, archive)


def _connect(address: str) -> Any:
    """``ray.init`` on the existing cluster at ``address`` (``RunError`` if unreachable).

    Ray rewrites a loopback address to the machine's outward IP before connecting,
    which misses a head bound to 127.0.0.1 (``ray start --node-ip-address
    127.0.0.1``); naming the driver's node address as the same loopback host keeps it."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:  # ray.init retries an unreachable GCS for minutes: probe it first
        socket.create_connection((host, int(port)), timeout=_PROBE_SECONDS).close()
    except (OSError, ValueError) as exc:
        raise RunError(f"--ray-address {address}: cannot connect to a Ray cluster: {exc}") from None
    from simulation.engine.env import quiet_environment

    quiet_environment()
    import ray

    extra: dict[str, Any] = {"_node_ip_address": host} if host in _LOOPBACK else {}
    try:
        ray.init(
            address=address,
            logging_level=logging.WARNING,
            log_to_driver=False,
            configure_logging=False,
            **extra,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RunError(f"--ray-address {address}: cannot connect to a Ray cluster: {exc}") from None
    return ray


@dataclass(frozen=True)
class RayExecutor:
    """Runs a study's pending runs as Ray tasks; pass it to ``run_study(executor=...)``.

    ``cpus_per_run`` is the CPUs each task reserves (the inprocess engine trains on
    one thread, so 1 lets a node run one study run per core)."""

    address: str
    keyring: KeyringSource
    cpus_per_run: float = 1.0

    def __call__(self, tasks: Sequence[RunTask], finished: Callable[[RunStatus], None]) -> None:
        problems = [p for t in tasks if (p := ray_engine_problem(t.engine)) is not None]
        if problems:
            raise ScenarioError(problems[:1])
        ray = _connect(self.address)
        try:
            self._submit_and_collect(ray, tasks, finished)
        finally:
            ray.shutdown()

    def _submit_and_collect(
        self, ray: Any, tasks: Sequence[RunTask], finished: Callable[[RunStatus], None]
    ) -> None:
        remote = ray.remote(num_cpus=self.cpus_per_run, max_retries=0)(run_remote)
        pending: dict[Any, RunTask] = {remote.remote(t, self.keyring): t for t in tasks}
        log.info("submitted %d runs to the Ray cluster at %s", len(pending), self.address)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    task = pending.pop(ref)
                    finished(self._collect(ray, ref, task))
        except BaseException:
            # Ctrl-C: cancel what has not finished; finished runs are unpacked and the
            # study resumes from them next time.
            log.warning("Ray study interrupted; cancelling %d pending runs", len(pending))
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    @staticmethod
    def _collect(ray: Any, ref: Any, task: RunTask) -> RunStatus:
        try:
            result: RemoteRun = ray.get(ref)
        except Exception as exc:  # the task itself died (node lost, worker killed)
            message = f"ray task died: {type(exc).__name__}: {exc}".replace("\n", " ")
            return RunStatus(task.run_id, "failed", message[:500], math.nan)
        if result.archive:
            unpack(result.archive, Path(task.out_dir))
        return result.status
