"""``fedmarket deploy supernode``: one participant of a scenario on its own host.

``fedmarket run --engine deployment`` starts every SuperNode on this machine.
On a real federation each participant runs this instead, on its own host: it
cuts the scenario's data with the scenario's seed (the same rows every engine
gives that client), keeps *only* partition ``--partition-id`` in
``--data-dir/partition.npz``, and starts ``flower-supernode`` with that file in
its node config, under ``simulation.engine.watchdog`` (so the SuperExec and
every ClientApp it launches end with it, on Ctrl-C too). TLS is the default;
``--insecure`` is refused unless the SuperLink is on this host's loopback.
``docs/deployment.md`` shows the SuperLink side and node authentication.

====  =====================================================
0     the SuperNode ran and exited (or ``--dry-run``)
2     invalid scenario, partition or connection options
====  =====================================================
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["deploy_app"]

deploy_app = typer.Typer(
    help="Run a scenario's participants on other hosts (Flower Deployment Engine).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

LOOPBACK_NAMES = ("localhost",)


def is_loopback(address: str) -> bool:
    """Is ``host:port`` on this host's loopback (``127.0.0.0/8``, ``::1``, localhost)?"""
    host = address.rsplit(":", 1)[0].strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(2)


def _tls_args(
    superlink: str, insecure: bool, root_certificates: Path | None, auth_key: Path | None
) -> list[str]:
    if insecure:
        if not is_loopback(superlink):
            raise _fail(f"--insecure: {superlink} is not on loopback; use --root-certificates")
        if root_certificates is not None:
            raise _fail("--insecure and --root-certificates exclude each other")
        tls = ["--insecure"]
    elif root_certificates is None:
        raise _fail("--root-certificates: required (the CA that signed the SuperLink's cert)")
    else:
        tls = [f"--root-certificates={root_certificates}"]
    for flag, path in (("--root-certificates", root_certificates), ("--auth", auth_key)):
        if path is not None and not path.is_file():
            raise _fail(f"{flag}: {path} is not a file")
    if auth_key is not None:
        tls.append(f"--auth-supernode-private-key={auth_key}")
    return tls


@deploy_app.command("supernode")
def supernode(
    scenario_file: Annotated[Path, typer.Argument(help="Scenario YAML file (as the server's).")],
    partition_id: Annotated[int, typer.Option("--partition-id", help="This participant.")],
    superlink: Annotated[str, typer.Option("--superlink", help="SuperLink HOST:PORT.")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where its partition goes.")],
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override as on the server: key.path=value.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    root_certificates: Annotated[
        Path | None, typer.Option(help="CA certificate (PEM) the SuperLink's TLS cert chains to.")
    ] = None,
    auth_supernode_private_key: Annotated[
        Path | None, typer.Option(help="This node's private key (node authentication).")
    ] = None,
    insecure: Annotated[bool, typer.Option(help="No TLS: loopback only.")] = False,
    port: Annotated[int, typer.Option(help="Local ClientAppIo port (distinct per node).")] = 9094,
    keyring: Annotated[
        Path | None,
        typer.Option(
            help="This participant's keyring: it signs its contributions "
            "(default: $FEDMARKET_KEYRING, else the user's keyring)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Write the partition, print the command, start nothing.")
    ] = False,
) -> None:
    """Start one SuperNode of SCENARIO_FILE holding only partition --partition-id."""
    from marketplace.errors import KeyringError
    from marketplace.keyring import Keyring, default_keyring_path
    from simulation.engine.deployment import check_deployable, supernode_argv
    from simulation.engine.watchdog import __file__ as watchdog_file
    from simulation.errors import ScenarioError, problem_lines
    from simulation.fl.own_data import OwnPartition
    from simulation.fl.training import DataSpec
    from simulation.scenario.load import load_scenario

    tls = _tls_args(superlink, insecure, root_certificates, auth_supernode_private_key)
    try:
        scenario = load_scenario(scenario_file, overrides or (), seed)
        check_deployable(scenario)
    except ScenarioError as exc:
        raise _fail("\n".join(problem_lines(exc.problems))) from None
    count = scenario.clients.count
    if not 0 <= partition_id < count:
        raise _fail(f"--partition-id: {partition_id} is not in 0..{count - 1}")
    try:
        own_keyring = Keyring.load(default_keyring_path() if keyring is None else keyring)
    except KeyringError as exc:
        raise _fail(f"--keyring: {exc}") from None
    assert own_keyring.path is not None
    data = DataSpec.of(scenario).build()
    path = OwnPartition.of(data, partition_id).save(data_dir.resolve() / "partition.npz")
    argv = supernode_argv(
        superlink, partition_id, count, path, port, tls=tls, keyring=own_keyring.path.resolve()
    )
    typer.echo(shlex.join(argv))
    if dry_run:
        return
    env = dict(os.environ)
    env["FLWR_HOME"] = str(data_dir.resolve() / "flwr")
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    os.execve(sys.executable, [sys.executable, str(Path(watchdog_file)), *argv], env)


def mount(app: typer.Typer) -> None:
    """Add ``fedmarket deploy`` to the main app."""
    app.add_typer(deploy_app, name="deploy")
