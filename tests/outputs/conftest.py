"""Shared fixtures: a tiny study (2 learning rates × 2 seeds) run in-process once per session."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import typer

from simulation.cli.outputs import mount
from simulation.engine.runner import run_scenario
from simulation.scenario.load import load_scenario

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "scenarios" / "quickstart.yaml"
FIXTURES_HF = REPO / "tests" / "fixtures" / "hf"
LRS = (0.1, 0.5)
SEEDS = (1, 2)

# The figures a plain run's report embeds, in order (hand-listed: a figure that
# silently disappears or appears must fail here, not be counted).
RUN_FIGURES = (
    "accuracy_loss",
    "reward_share",
    "earnings",
    "lorenz",
    "epsilon",
    "token_flows",
    "label_distribution",
)


# The figures the learning-rate study's report embeds, in order (hand-listed). It has no
# attackers (no attackers' share, no detection); its designs train differently.
STUDY_FIGURES = ("accuracy_loss", "epsilon", "honest_profit", "token_share_groups", "gini")

# The outcome study: reward designs over the same training, with a Sybil owner (two
# identities flipping labels) and a free-rider among six identities, without DP.
OUTCOME_POPULATION = (
    "[{group: sybils, count: 2, behaviour: label_flip, sybil: duplicate},"
    " {group: riders, count: 1, behaviour: free_rider}]"
)
OUTCOME_SET = (
    "rounds=1",
    "clients.count=6",
    "training.epochs=1",
    "output.save_model=false",
    "privacy={mode: none}",
    "model.name=logreg",
    f"population={OUTCOME_POPULATION}",
    "rewards.mechanism=equal,data_size",
    "seed=1,2",
)
# Its figures (hand-listed): no ε figure without DP; accuracy one line.
OUTCOME_FIGURES = (
    "accuracy_loss",
    "attacker_token_share",
    "honest_profit",
    "token_share_groups",
    "detection",
    "gini",
)


def _run(out: Path, *, seed: int, lr: float) -> Path:
    overrides = ("rounds=2", "clients.count=4", f"training.lr={lr}", "output.keep_versions=true")
    scenario = load_scenario(QUICKSTART, overrides, seed)
    run_scenario(scenario, out, engine="inprocess", force=True)
    return out


@pytest.fixture(scope="session")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study directory: one sub-run per (lr, seed), designs differ only in training.lr."""
    root = tmp_path_factory.mktemp("study")
    for lr in LRS:
        for seed in SEEDS:
            _run(root / f"lr{lr}-seed{seed}", seed=seed, lr=lr)
    return root


@pytest.fixture(scope="session")
def outcome_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``fedmarket compare`` study (summary.csv and all): 2 reward designs x 2 seeds with
    attackers in population groups (do not modify)."""
    from simulation.scenario.sweep import resolve_study
    from simulation.study.compare import run_study

    root = tmp_path_factory.mktemp("outcomes")
    study = resolve_study(QUICKSTART, list(OUTCOME_SET), engine="inprocess")
    outcome = run_study(study, root, workers=1)
    assert outcome.failed == 0
    return root


@pytest.fixture(scope="session")
def outcome_report(outcome_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The outcome study's report (:class:`~simulation.outputs.report.ReportPaths`;
    do not modify), written once for the tests that read it."""
    from simulation.outputs.report import write_report

    return write_report(outcome_study, tmp_path_factory.mktemp("outcome-report"))


@pytest.fixture(scope="session")
def pristine_run(study_dir: Path) -> Path:
    """One run of the study (do not modify; copy it with ``run_dir``)."""
    return study_dir / f"lr{LRS[0]}-seed{SEEDS[0]}"


PLAIN_OVERRIDES = (
    "rounds=3",
    "clients.count=4",
    "privacy={mode: none}",
    "model.name=logreg",
    "output.keep_versions=true",
    "output.license=mit",
)


@pytest.fixture(scope="session")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run without DP that keeps every version's weights and names its licence
    (do not modify)."""
    out = tmp_path_factory.mktemp("plain")
    scenario = load_scenario(QUICKSTART, PLAIN_OVERRIDES, 3)
    run_scenario(scenario, out, engine="inprocess", force=True)
    return out


@pytest.fixture
def run_dir(pristine_run: Path, tmp_path: Path) -> Path:
    """A private copy of a run, safe to write into."""
    dest = tmp_path / "run"
    shutil.copytree(pristine_run, dest)
    return dest


@pytest.fixture
def cli() -> typer.Typer:
    """A typer app with the outputs commands mounted, like ``simulation/cli/main.py`` does."""
    app = typer.Typer(pretty_exceptions_enable=False)
    registry = typer.Typer()

    @app.callback()
    def _root() -> None:
        """fedmarket (test app)."""

    app.add_typer(registry, name="registry")
    mount(app, registry)
    return app
