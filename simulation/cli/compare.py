"""``fedmarket compare``: run a study of scenario variants and compare the designs.

:func:`mount` registers the command on the main app (called by
``simulation/cli/main.py``). Exit codes follow ``fedmarket run``:

====  ===========================================================
0     every run finished
2     the sweep file, the scenario or a ``--set`` is invalid
      (every problem of every variant, one line each; nothing ran)
3     the study finished but at least one run failed (see the
      ``status`` and ``error`` columns of ``study.csv``)
====  ===========================================================
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from simulation.study.compare import RunExecutor

__all__ = ["mount"]

EXIT_SCENARIO = 2
EXIT_RUN = 3

#: Columns of the printed summary: metric name -> header.
_SHOWN = {
    "test_accuracy": "accuracy",
    "epsilon_max": "ε max",
    "attacker_token_share": "attacker share",
    "honest_profit": "honest profit",
    "reward_gini": "Gini",
    "reward_spearman": "Spearman",
    "detection_precision": "det. precision",
    "detection_recall": "det. recall",
}


def _setup_logging(verbose: bool) -> None:
    """Log study progress to stderr (the main CLI's setup, when mounted, is equivalent)."""
    logger = logging.getLogger("fedmarket")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        from simulation.study.compare import quiet_flower

        quiet_flower()


def _fmt(row: object, metric: str) -> str:
    """``mean [lo, hi]``; below the seeds an interval needs, the per-seed values."""
    import pandas as pd

    assert isinstance(row, pd.Series)
    mean = float(row.get(f"{metric}_mean", math.nan))
    if math.isnan(mean):
        return "n/a"
    lo, hi = float(row.get(f"{metric}_lo", math.nan)), float(row.get(f"{metric}_hi", math.nan))
    if not (math.isnan(lo) or math.isnan(hi)):
        return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"
    points = str(row.get(f"{metric}_points", "") or "")
    values = ", ".join(f"{float(v):.3f}" for v in points.split(";") if v)
    return f"{mean:.3f} ({values})" if values else f"{mean:.3f}"


def _print_summary(console: Console, summary: object, title: str) -> None:
    import pandas as pd

    assert isinstance(summary, pd.DataFrame)
    from rich.table import Table

    method = str(summary["interval"].iloc[0]) if "interval" in summary and len(summary) else ""
    table = Table(
        title=f"{title}: mean [95% {method} interval] over seeds; "
        "under 5 seeds, the per-seed values"
    )
    table.add_column("design", no_wrap=True)
    table.add_column("runs", justify="right")
    for header in _SHOWN.values():
        table.add_column(header, justify="right")
    for _, row in summary.iterrows():
        runs = f"{row['runs']}" + (f" ({row['failed']} failed)" if row["failed"] else "")
        cells = [_fmt(row, m) for m in _SHOWN]
        table.add_row(str(row["design"]), runs, *cells)
    console.print(table)
    if len(summary) > 1 and "paired_reference" in summary:
        _print_paired(console, summary)


def _print_paired(console: Console, summary: object) -> None:
    """Each design minus the first on the same seeds: mean difference and the paired p."""
    import pandas as pd

    assert isinstance(summary, pd.DataFrame)
    from rich.table import Table

    first = summary.iloc[0]
    table = Table(
        title=f"minus {first['design']} on the same seeds: mean difference "
        f"(p, two-sided {first['paired_test']})"
    )
    table.add_column("design", no_wrap=True)
    for header in _SHOWN.values():
        table.add_column(header, justify="right")
    for _, row in summary.iloc[1:].iterrows():
        cells = []
        for m in _SHOWN:
            diff, p = float(row.get(f"{m}_diff", math.nan)), float(row.get(f"{m}_p", math.nan))
            p_text = "n/a" if math.isnan(p) else f"{p:.3g}"
            cells.append("n/a" if math.isnan(diff) else f"{diff:+.3f} (p {p_text})")
        table.add_row(str(row["design"]), *cells)
    console.print(table)


def compare(
    target: Annotated[
        Path, typer.Argument(help="A sweep YAML (it names a base:) or a scenario YAML.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Study directory to write.")],
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="key=v fixes a field in every run; key=v1,v2 sweeps it (cross product); "
            'seed=1,2,3 sets the seeds. [a,b] or "a,b" is one value.',
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Parallel runs (default: CPUs/2 for flower, CPUs for inprocess)."),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="flower or inprocess (default: the sweep file's, else flower)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Re-run runs that are already complete.")] = False,
    interval: Annotated[
        str,
        typer.Option(help="bootstrap (percentile, over seeds) or t: the summary's 95% intervals."),
    ] = "bootstrap",
    test: Annotated[
        str,
        typer.Option(help="wilcoxon (signed-rank, exact) or t: the paired test between designs."),
    ] = "wilcoxon",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Run each run as a task on the existing Ray cluster at HOST:PORT "
            "(its head's GCS address); runs use --engine inprocess. See docs/compare.md.",
        ),
    ] = None,
    ship_keyring: Annotated[
        bool,
        typer.Option(
            help="With --ray-address: send the keyring's secret in the task arguments "
            "instead of its file path (which every node must then have)."
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Debug logging.")] = False,
) -> None:
    """Run a study: scenario variants x seeds, each run isolated; tabulate and summarise."""
    from marketplace.errors import KeyringError
    from simulation.errors import RunError, ScenarioError, problem_lines
    from simulation.scenario.sweep import resolve_study
    from simulation.study.compare import run_study

    _setup_logging(verbose)
    if engine not in (None, "flower", "inprocess"):
        typer.echo(f"--engine: unknown engine {engine!r} (valid: flower, inprocess)", err=True)
        raise typer.Exit(EXIT_SCENARIO)
    for flag, value, valid in (
        ("--interval", interval, ("bootstrap", "t")),
        ("--test", test, ("wilcoxon", "t")),
    ):
        if value not in valid:
            typer.echo(f"{flag}: unknown {value!r} (valid: {', '.join(valid)})", err=True)
            raise typer.Exit(EXIT_SCENARIO)
    if ship_keyring and ray_address is None:
        typer.echo("--ship-keyring: only with --ray-address", err=True)
        raise typer.Exit(EXIT_SCENARIO)
    if workers is not None and ray_address is not None:
        typer.echo(
            "--workers: not with --ray-address (the cluster's CPUs set how many run)", err=True
        )
        raise typer.Exit(EXIT_SCENARIO)
    try:
        if ray_address is not None:
            from simulation.study.ray_sweep import ray_study_engine

            engine = ray_study_engine(target, engine)
        study = resolve_study(target, overrides or (), engine=engine)  # type: ignore[arg-type]
    except ScenarioError as exc:
        for line in problem_lines(exc.problems):
            typer.echo(line, err=True)
        raise typer.Exit(EXIT_SCENARIO) from None
    try:
        outcome = run_study(
            study,
            out_dir,
            workers=workers,
            force=force,
            interval=interval,  # type: ignore[arg-type]
            test=test,  # type: ignore[arg-type]
            executor=_ray_executor(ray_address, ship_keyring) if ray_address else None,
        )
    except (RunError, KeyringError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_RUN) from None
    from rich.console import Console

    console = Console() if sys.stdout.isatty() else Console(width=200)
    _print_summary(console, outcome.summary, study.name)
    typer.echo(
        f"{outcome.ran} ran, {outcome.reused} reused, {outcome.failed} failed; study: {out_dir}"
    )
    if outcome.failed:
        failed = outcome.table[outcome.table["status"] != "ok"]
        for _, row in failed.iterrows():
            typer.echo(f"run {row['run_id']} failed: {row['error']}", err=True)
        raise typer.Exit(EXIT_RUN)


def _ray_executor(address: str, ship_keyring: bool) -> RunExecutor:
    """Runs on the Ray cluster at ``address``, signed with the user's keyring (by path,
    or shipped: ``--ship-keyring``)."""
    from marketplace.keyring import Keyring
    from simulation.study.ray_sweep import KeyringSource, RayExecutor

    keyring = KeyringSource.of(Keyring.load_or_create(), ship=ship_keyring)
    return RayExecutor(address, keyring)


def mount(app: typer.Typer) -> None:
    """Register ``compare`` on ``app`` (the ``fedmarket`` typer app)."""
    app.command("compare")(compare)
