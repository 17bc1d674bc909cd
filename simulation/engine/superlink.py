"""A private Flower SuperLink (simulation runtime) for one run, on loopback.

Flower 1.41's supported way to run a simulation is a SuperLink started with
``--simulation``, to which a run is submitted through the Control API (what
``flwr run`` does); ``flwr.simulation.run_simulation`` is deprecated. Each
``fedmarket run --engine flower`` starts its own:

* a Ray head (``ray start --head --block``) with its files in the run's
  temporary folder, no dashboard, no autoscaler monitor, its Ray Client server
  on a free port (not the fixed 10001 two runs would share), and the scenario's
  CPUs (no more than its clients can use: Flower starts one actor per CPU); the simulation
  runtime connects to it through ``RAY_ADDRESS``. It is started first and not
  waited for: it comes up while the SuperLink, the simulation runtime and the
  ServerApp start (a driver that connects early waits for it);
* ``flower-superlink --simulation --insecure`` on a free 127.0.0.1 port, with
  ``FLWR_HOME`` in the run's temporary folder (its FAB installs and state go
  there, never to ``~/.flwr``), ``FLWR_DISABLE_UPDATE_CHECK=1`` and
  ``--disable-runtime-dependency-installation`` (otherwise it would ``uv sync``
  the app and pull a CUDA torch).

Both run under ``simulation.engine.watchdog``, so nothing they start outlives
the run, however it ends. The app is submitted as a FAB holding only a
``pyproject.toml`` that names the ServerApp and ClientApp: runtime dependency
installation is off, so they are imported from this environment, the same code
as the driver's (``PYTHONPATH`` is set to make sure).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulation.engine.watchdog import Supervised
from simulation.errors import RunError

log = logging.getLogger("fedmarket.superlink")

SERVER_APP = "simulation.engine.server_app:app"
CLIENT_APP = "simulation.fl.client_app:app"
"""The components of the Flower App (as in ``[tool.flwr.app.components]``)."""

START_TIMEOUT = 120.0
"""Seconds for the SuperLink to answer its health check."""

FAB_PYPROJECT = f"""\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "fedmarket"
version = "0.1.0"
dependencies = []

[tool.flwr.app]
publisher = "fedmarket"

[tool.flwr.app.components]
serverapp = "{SERVER_APP}"
clientapp = "{CLIENT_APP}"

[tool.flwr.app.config]
scenario = ""
out = ""
channel = ""
keyring = ""
node-signed = ""
data = ""
"""
"""The submitted app: components only (the code comes from this environment)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    """A console script of this environment (beside the running interpreter)."""
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        raise RunError(f"{name} not found beside {sys.executable} or on PATH (is flwr installed?)")
    return found


def child_environment(home: Path, ray_address: str | None) -> dict[str, str]:
    """The environment of the SuperLink and all it starts."""
    import simulation

    code_root = str(Path(simulation.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (code_root, env.get("PYTHONPATH")) if p)
    env["FLWR_HOME"] = str(home)
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray prestarts one idle worker per CPU for the first job; Flower runs only actors,
    # which Ray starts workers of their own for: the prestarted ones exit unused.
    env["RAY_prestart_worker_first_driver"] = "0"
    # The SuperExec looks for the submitted run once a second by default; it
    # goes on asking all run long, so not much more often than that.
    env["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] = "0.25"
    if ray_address is not None:
        env["RAY_ADDRESS"] = ray_address
    return env


@dataclass
class RayHead:
    """A single-node Ray cluster for one run."""

    process: Supervised
    address: str
    log_path: Path

    @classmethod
    def start(
        cls,
        workdir: Path,
        num_cpus: int,
        env: Mapping[str, str],
        *,
        verbose: bool,
        num_gpus: int = 0,
    ) -> RayHead:
        """Start it; a driver that connects before it is up waits for it (Ray retries)."""
        port = free_port()
        temp = workdir / "ray"
        temp.mkdir()
        argv = [
            _bin("ray"),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            f"--num-cpus={num_cpus}",
            f"--num-gpus={num_gpus}",
            "--include-dashboard=false",
            f"--include-log-monitor={str(verbose).lower()}",  # workers' logs, for -v only
            "--disable-usage-stats",
            f"--temp-dir={temp}",
            f"--object-store-memory={256 * 1024 * 1024}",
            # Ray Client's server listens on 10001 unless told otherwise: two runs at
            # once would collide there. Nothing here uses it; Ray cannot turn it off.
            f"--ray-client-server-port={free_port()}",
            # The autoscaler's monitor has nothing to scale on one fixed node.
            "--no-monitor",
        ]
        log_path = workdir / "ray.log"
        proc = Supervised.start(argv, env=env, log=log_path, name="ray head")
        return cls(proc, f"127.0.0.1:{port}", log_path)

    def running(self) -> bool:
        return self.process.running()


@dataclass
class LocalSuperLink:
    """A running ``flower-superlink --simulation`` and the Control API client to it."""

    process: Supervised
    port: int
    client: Any  # flwr ControlHttpClient
    log_path: Path

    @classmethod
    def start(
        cls, workdir: Path, env: Mapping[str, str], *, simulation: bool = True, wait: bool = True
    ) -> LocalSuperLink:
        """Start it on a free port and (``wait``) wait until its health check answers;
        with ``simulation=False`` it runs no simulation runtime and serves real SuperNodes
        (the Fleet API is on the same port; ``simulation.engine.deployment``)."""
        from flwr.cli.cli_client_interceptor import CliClientHttpInterceptor
        from flwr.supercore.control.control_http_client import ControlHttpClient
        from flwr.supercore.interceptors.http.runtime_version import (
            RuntimeVersionHttpInterceptor,
        )

        port = free_port()
        log_path = workdir / "superlink.log"
        argv = [
            _bin("flower-superlink"),
            *(["--simulation"] if simulation else []),
            "--insecure",
            "--host=127.0.0.1",
            f"--port={port}",
            "--disable-runtime-dependency-installation",
        ]
        proc = Supervised.start(argv, env=env, log=log_path, name="flower-superlink")
        client = ControlHttpClient.from_server_address(
            server_address=f"127.0.0.1:{port}",
            insecure=True,
            root_certificates=None,
            interceptors=[
                CliClientHttpInterceptor(),
                RuntimeVersionHttpInterceptor(component_name="flwr CLI"),
            ],
        )
        link = cls(proc, port, client, log_path)
        if wait:
            link.wait_healthy()
        return link

    def wait_healthy(self) -> None:
        """Return once its health check answers (a ``RunError`` if it exits or is late)."""
        import httpx

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.process.running():
                raise RunError("flower-superlink exited at start")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1.0).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RunError(f"flower-superlink did not answer within {START_TIMEOUT:g} s")

    def submit(self, run_config: Mapping[str, str], federation: Mapping[str, Any] | None) -> int:
        """Start a run of the fedmarket app (as ``flwr run`` does); its run id.
        ``federation`` is the simulation config (``None`` on real SuperNodes)."""
        from flwr.cli.build import build_fab_from_files
        from flwr.common.serde import fab_to_proto, user_config_to_proto
        from flwr.proto.control_pb2 import StartRunRequest
        from flwr.proto.federation_config_pb2 import SimulationConfig
        from flwr.supercore.fab import Fab

        fab_bytes, _ = build_fab_from_files({"pyproject.toml": FAB_PYPROJECT.encode()})
        fab = Fab(hashlib.sha256(fab_bytes).hexdigest(), fab_bytes, {})
        request = StartRunRequest(
            fab=fab_to_proto(fab),
            override_config=user_config_to_proto(dict(run_config)),
            federation="",
            override_federation_config=(
                SimulationConfig(**federation) if federation is not None else None
            ),
            app_spec="",
        )
        response = self.client.StartRun(request)
        if not response.HasField("run_id"):
            raise RunError("the SuperLink did not start the run")
        return int(response.run_id)

    def status(self, run_id: int) -> tuple[str, str, str]:
        """``(status, sub_status, details)`` of a run, e.g. ``("finished", "completed", "")``."""
        from flwr.common.serde import run_from_proto
        from flwr.proto.control_pb2 import ListRunsRequest

        response = self.client.ListRuns(ListRunsRequest(run_id=run_id))
        run = run_from_proto(response.run_dict[run_id])
        return run.status.status, run.status.sub_status, run.status.details
