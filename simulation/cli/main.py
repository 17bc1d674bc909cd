"""The ``fedmarket`` command line.

Every user error is one line per problem on stderr and a non-zero exit, never
a traceback: 2 for an invalid scenario or override, 3 for a run that could not
complete, and the ledger commands' own codes for ledger problems.
"""

from __future__ import annotations

import json
import logging
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

from simulation.cli.market import KeyringOption, run_keyring
from simulation.errors import RunError, RunInterrupted, ScenarioError, problem_lines

EXIT_SCENARIO = 2
EXIT_RUN = 3

app = typer.Typer(
    name="fedmarket",
    help="Simulate federated-learning marketplaces: DP clients on Flower, a signed ledger, "
    "agents on a simpy clock.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: rich help formatting alone costs ~0.3 s of start-up.
    rich_markup_mode=None,
    add_completion=False,
)


@cache
def console(*, stderr: bool = False) -> Console:
    """The rich console for stdout or stderr (imported on first use: ``--help`` needs none)."""
    from rich.console import Console

    return Console(stderr=stderr)


def _mount_subapps() -> None:
    from simulation.cli.compare import mount as mount_compare
    from simulation.cli.data import data_app
    from simulation.cli.deploy import mount as mount_deploy
    from simulation.cli.market import ledger_app, registry_app
    from simulation.cli.outputs import mount as mount_outputs
    from simulation.cli.reproduce import mount as mount_reproduce

    app.add_typer(ledger_app, name="ledger")
    app.add_typer(registry_app, name="registry")
    app.add_typer(data_app, name="data")
    mount_outputs(app, registry_app)
    mount_compare(app)
    mount_reproduce(app)
    mount_deploy(app)


_mount_subapps()


class _BelowWarning(logging.Filter):
    """Drops Flower's INFO/DEBUG chatter unless ``-v`` (Flower resets its own level)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def _setup_logging(verbose: bool) -> None:
    logger = logging.getLogger("fedmarket")
    logger.handlers.clear()
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console(stderr=True), show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    if not verbose:
        flwr = logging.getLogger("flwr")
        if not any(isinstance(f, _BelowWarning) for f in flwr.filters):
            flwr.addFilter(_BelowWarning())


def _scenario_error(exc: ScenarioError) -> typer.Exit:
    for line in problem_lines(exc.problems):
        typer.echo(line, err=True)
    return typer.Exit(EXIT_SCENARIO)


SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a field: key.path=value (repeatable)."),
]


@app.command()
def run(
    scenario_file: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory to write.")],
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    overrides: SetOption = None,
    force: Annotated[bool, typer.Option(help="Replace an earlier run in --out.")] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="flower (Simulation Engine), deployment (a SuperLink and one real "
            "SuperNode per client on loopback) or inprocess (plain loop)."
        ),
    ] = "flower",
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show Flower/Ray logs.")] = False,
    keyring: KeyringOption = None,
) -> None:
    """Replay a scenario: train, trade and record everything on the ledger (signed with
    your keyring, created on first use outside any run directory)."""
    from marketplace.errors import MarketplaceError
    from simulation.scenario.load import load_scenario

    _setup_logging(verbose)
    if engine not in ("flower", "inprocess", "deployment"):
        typer.echo(
            f"--engine: unknown engine {engine!r} (valid: flower, deployment, inprocess)",
            err=True,
        )
        raise typer.Exit(EXIT_SCENARIO)
    try:
        scenario = load_scenario(scenario_file, overrides or (), seed)
    except ScenarioError as exc:
        raise _scenario_error(exc) from None

    from simulation.cli.progress import RoundProgress
    from simulation.engine.runner import run_scenario

    try:
        signer = run_keyring(keyring)
        signer.check_outside(out_dir)
    except MarketplaceError as exc:
        typer.echo(f"--keyring: {exc}", err=True)
        raise typer.Exit(EXIT_SCENARIO) from None
    progress = RoundProgress(scenario.rounds, console=console(stderr=True))
    try:
        with progress:
            outcome = run_scenario(
                scenario,
                out_dir,
                engine=engine,  # type: ignore[arg-type]
                force=force,
                verbose=verbose,
                on_round=progress.update,
                keyring=signer,
            )
    except ScenarioError as exc:  # what only the chosen engine cannot honour
        raise _scenario_error(exc) from None
    except RunInterrupted as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(128 + exc.signum if exc.signum else EXIT_RUN) from None
    except RunError as exc:
        typer.echo(f"run failed: {' '.join(str(exc).splitlines())}", err=True)
        raise typer.Exit(EXIT_RUN) from None
    _summary(outcome.manifest, outcome.wall_seconds, out_dir)


def _summary(manifest: dict[str, object], wall: float, out_dir: Path) -> None:
    final = manifest["final"]
    assert isinstance(final, dict)
    from rich.table import Table
    from rich.text import Text

    # Text, not markup: the scenario's name is the user's string ("[/x]" is no tag).
    title = Text(f"{manifest['scenario']['name']} (seed {manifest['seed']})")  # type: ignore[index]
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("rounds", str(final["round"]))
    table.add_row("test accuracy", f"{final['test_accuracy']:.4f}")
    table.add_row("test loss", f"{final['test_loss']:.4f}")
    table.add_row("ε max (cumulative)", f"{final['epsilon_max']:.3f}")
    market = manifest.get("market")
    market = market if isinstance(market, dict) else {}
    table.add_row("licences sold", f"{int(market.get('licenses_sold', 0))}")
    table.add_row("licence revenue (tokens)", f"{float(market.get('revenue_tokens', 0.0)):.2f}")
    table.add_row("simulated time (s)", f"{final['simulated_seconds']:.2f}")
    table.add_row("wall time (s)", f"{wall:.1f}")
    table.add_row("ledger head", str(manifest["ledger_head"])[:16] + "…")
    reference = manifest.get("reference")
    if isinstance(reference, dict) and reference.get("imprecise_rounds"):
        missed = reference["imprecise_rounds"]
        table.add_row(
            "reference SE above target",
            f"{len(missed)} of {reference['monte_carlo_rounds']} Monte Carlo rounds",
        )
    console().print(table)
    console().print(f"results: {out_dir}", markup=False, highlight=False)


@app.command()
def validate(
    scenario_file: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    overrides: SetOption = None,
) -> None:
    """Check a scenario file (and overrides) without running it."""
    from simulation.scenario.load import load_scenario

    try:
        scenario = load_scenario(scenario_file, overrides or ())
    except ScenarioError as exc:
        raise _scenario_error(exc) from None
    console().print(
        f"{scenario_file}: ok ({scenario.name}, sha256 {scenario.sha256()[:16]}…)",
        markup=False,
        highlight=False,
    )


@app.command()
def schema() -> None:
    """Print the JSON Schema of scenario files, with every component's parameters
    (under "x-fedmarket-components": kind -> name -> schema of its params)."""
    from simulation.cli.params import COMPONENTS_KEY, component_schemas
    from simulation.scenario.load import json_schema

    document = json_schema()
    document[COMPONENTS_KEY] = component_schemas()
    typer.echo(json.dumps(document, indent=2, sort_keys=True))


@app.command()
def params(
    name: Annotated[
        str | None,
        typer.Argument(help="Component name (krum, foolsgold, label_flip, ...) or KIND:NAME."),
    ] = None,
) -> None:
    """Print one component's parameters with defaults and units (no NAME: list them all)."""
    from simulation.cli.params import find_components, near_names

    if name is None:
        _list_components()
        return
    found = find_components(name)
    if not found:
        near = near_names(name)
        hint = f" (did you mean: {', '.join(near)})" if near else ""
        typer.echo(
            f"error: unknown component {name!r}{hint}; `fedmarket params` lists all", err=True
        )
        raise typer.Exit(EXIT_SCENARIO)
    for kind, entry in found:
        _print_params(kind, entry)


def _list_components() -> None:
    from simulation.cli.params import WHERE
    from simulation.scenario.components import KINDS

    for kind, spec in KINDS.items():
        typer.echo(f"{spec.label} ({WHERE[kind][0]}): {', '.join(spec.names())}")


def _print_params(kind: str, name: str) -> None:
    from simulation.cli.params import WHERE, model_summary, param_rows
    from simulation.scenario.components import KINDS

    named_by, params_at = WHERE[kind]
    typer.echo(
        f"{KINDS[kind].label} {name!r}: set {named_by} = {name}; parameters under {params_at}"
    )
    summary = model_summary(kind, name)
    if summary:
        typer.echo(f"  {summary}")
    rows = param_rows(kind, name)
    if not rows:
        typer.echo("  takes no parameters")
    for r in rows:
        facts = [r.type, f"default {r.default}"]
        facts += [f"unit {r.unit}"] if r.unit else []
        facts += [r.constraints] if r.constraints else []
        typer.echo(f"  {r.name}: {'; '.join(facts)}")
        if r.description:
            typer.echo(f"      {r.description}")


def main() -> None:
    """Console-script entry point."""
    from simulation.engine.env import quiet_environment

    quiet_environment()
    app()


if __name__ == "__main__":
    main()
