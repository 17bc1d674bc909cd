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


def _fmt(mean: float, half: float) -> str:
    if math.isnan(mean):
        return "–"
    if math.isnan(half):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {half:.3f}"


def _print_summary(console: Console, summary: object, title: str) -> None:
    import pandas as pd

    assert isinstance(summary, pd.DataFrame)
    from rich.table import Table

    table = Table(title=f"{title}: mean ± 95% CI over seeds")
    table.add_column("design", no_wrap=True)
    table.add_column("runs", justify="right")
    for header in _SHOWN.values():
        table.add_column(header, justify="right")
    for _, row in summary.iterrows():
        runs = f"{row['runs']}" + (f" ({row['failed']} failed)" if row["failed"] else "")
        cells = [_fmt(row[f"{m}_mean"], row[f"{m}_ci95"]) for m in _SHOWN]
        table.add_row(str(row["design"]), runs, *cells)
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
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Debug logging.")] = False,
) -> None:
    """Run a study: scenario variants x seeds, each run isolated; tabulate and summarise."""
    from simulation.errors import ScenarioError, problem_lines
    from simulation.scenario.sweep import resolve_study
    from simulation.study.compare import run_study

    _setup_logging(verbose)
    if engine not in (None, "flower", "inprocess"):
        typer.echo(f"--engine: unknown engine {engine!r} (valid: flower, inprocess)", err=True)
        raise typer.Exit(EXIT_SCENARIO)
    try:
        study = resolve_study(target, overrides or (), engine=engine)  # type: ignore[arg-type]
    except ScenarioError as exc:
        for line in problem_lines(exc.problems):
            typer.echo(line, err=True)
        raise typer.Exit(EXIT_SCENARIO) from None
    outcome = run_study(study, out_dir, workers=workers, force=force)
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


def mount(app: typer.Typer) -> None:
    """Register ``compare`` on ``app`` (the ``fedmarket`` typer app)."""
    app.command("compare")(compare)
