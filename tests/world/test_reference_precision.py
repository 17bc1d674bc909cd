"""A Monte Carlo reference that misses its standard-error target is never silent:
``contribution.on_imprecise: error`` (the default) stops the run naming the field and
the round; ``record`` keeps the estimate and records the miss per round
(``rounds.parquet`` ``reference_se_ratio``), in the manifest and in the run summary.

Targets are hand-computed: ``0.05 · |U(N) − U(∅)| / n``, which the recorded values,
summing to ``U(N) − U(∅)``, let anyone repeat."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import Result
from typer.testing import CliRunner

from marketplace.contribution import ContributionResult, exact_shapley, monte_carlo_shapley
from simulation import names
from simulation.cli.main import app
from simulation.errors import ScenarioError
from simulation.scenario.load import load_scenario
from simulation.world.context import RoundContext
from simulation.world.stages import precision
from simulation.world.stages.precision import CheckReferencePrecision

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"


def _quorum(coalition: frozenset[int]) -> float:
    """Four clients, ``U(S) = 1`` once ``|S| ≥ 3``: a client's marginal is 1 when it
    comes third (probability 1/4), so its standard error after ``T`` permutations is
    √(3/16)/√T ≈ 0.433/√T, against a target of 0.05 · 1 / 4 = 0.0125: 100
    permutations miss it about 3.5 times over, ~1,200 meet it."""
    return 1.0 if len(coalition) >= 3 else 0.0


def _round(round_: int, cap: int) -> RoundContext:
    ctx = RoundContext(round=round_, start=0.0, wall_start=0.0)
    ctx.reference = monte_carlo_shapley(
        _quorum, 4, rng=np.random.default_rng(round_), max_permutations=cap
    )
    return ctx


def test_a_capped_reference_stops_the_run_naming_the_fields_and_the_round() -> None:
    ctx = _round(3, 100)
    assert ctx.reference is not None and ctx.reference.permutations == 100
    with pytest.raises(ScenarioError) as err:
        CheckReferencePrecision("error").run(ctx)
    text = str(err.value)
    assert "contribution.on_imprecise" in text and "round 3" in text
    assert "after 100 permutations without meeting its target" in text
    assert "the cap is contribution.reference_max_permutations" in text


def test_record_keeps_the_round_and_its_ratio(caplog: pytest.LogCaptureFixture) -> None:
    stage = CheckReferencePrecision("record")
    missed = _round(1, 100)
    world = logging.getLogger("fedmarket.world")  # the CLI stops fedmarket propagating
    world.addHandler(caplog.handler)
    try:
        stage.run(missed)
    finally:
        world.removeHandler(caplog.handler)
    assert 3.0 <= missed.reference_se_ratio <= 4.2  # ≈ 0.433 / √100 / 0.0125 = 3.46
    assert "round 1: the Monte Carlo reference contribution stopped after 100 permutations" in (
        caplog.text
    )
    exact = RoundContext(round=2, start=0.0, wall_start=0.0)
    exact.reference = exact_shapley(_quorum, 4)  # no standard errors, no target
    stage.run(exact)
    assert math.isnan(exact.reference_se_ratio)


def test_a_larger_cap_meets_the_target_and_the_run_goes_on() -> None:
    ctx = _round(3, 2000)
    CheckReferencePrecision("error").run(ctx)
    assert 0.9 <= ctx.reference_se_ratio <= 1.0
    # It stopped when it met the target (~1,200 permutations), in batches of n = 4.
    drawn = ctx.reference.permutations if ctx.reference is not None else None
    assert drawn is not None and 1000 <= drawn < 2000 and drawn % 4 == 0


def test_the_message_names_the_permutations_the_result_drew() -> None:
    # The message is the result's count, not a cap the stage was told separately.
    ctx = RoundContext(round=2, start=0.0, wall_start=0.0)
    ctx.reference = monte_carlo_shapley(
        _quorum, 4, rng=np.random.default_rng(2), min_permutations=6, max_permutations=6
    )
    with pytest.raises(ScenarioError, match=r"round 2: .* stopped after 6 permutations"):
        CheckReferencePrecision("error").run(ctx)


def _sampled(errors: tuple[float, ...], target: float, converged: bool) -> ContributionResult:
    return ContributionResult(
        scores=(0.1, -0.1),
        utility_calls=4,
        seconds=0.0,
        method="monte_carlo_shapley",
        standard_errors=errors,
        se_target=target,
        converged=converged,
    )


def test_a_round_without_gain_needs_zero_standard_errors() -> None:
    assert precision.se_ratio(_sampled((0.0, 0.0), 0.0, True)) == 0.0
    assert precision.se_ratio(_sampled((1e-3, 0.0), 0.0, False)) == math.inf
    assert precision.se_ratio(_sampled((0.02, 0.001), 0.01, False)) == pytest.approx(2.0)


def test_the_policy_is_validated_by_name() -> None:
    with pytest.raises(ScenarioError, match=r"contribution\.on_imprecise"):
        load_scenario(QUICKSTART, ["contribution.on_imprecise=warn"])
    default = load_scenario(QUICKSTART)
    assert default.contribution.on_imprecise == "error"
    # A late field: hashed only once set (so the default renames no earlier experiment).
    record = load_scenario(QUICKSTART, ["contribution.on_imprecise=record"])
    assert record.sha256() != default.sha256()
    assert (
        load_scenario(QUICKSTART, ["contribution.on_imprecise=error"]).sha256() == default.sha256()
    )


@pytest.mark.parametrize("cap", [99, 100_001])
def test_the_permutation_cap_is_bounded_by_name(cap: int) -> None:
    with pytest.raises(ScenarioError, match=r"contribution\.reference_max_permutations"):
        load_scenario(QUICKSTART, [f"contribution.reference_max_permutations={cap}"])


def test_the_permutation_cap_is_hashed_only_once_set() -> None:
    on = ["contribution.reference=true"]
    default = load_scenario(QUICKSTART, on)
    assert default.contribution.reference_max_permutations == 2000
    same = load_scenario(QUICKSTART, [*on, "contribution.reference_max_permutations=2000"])
    assert same.sha256() == default.sha256()
    larger = load_scenario(QUICKSTART, [*on, "contribution.reference_max_permutations=5000"])
    assert larger.sha256() != default.sha256()


def test_a_permutation_cap_without_the_reference_is_a_scenario_error() -> None:
    # It would cap nothing, yet rename the scenario (it is hashed once set).
    with pytest.raises(ScenarioError, match=r"runs only with contribution\.reference: true"):
        load_scenario(QUICKSTART, ["contribution.reference_max_permutations=5000"])


CAP = 150
"""The scenario's cap in the CLI runs: the runner must hand it to the reference."""


@pytest.fixture
def caps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A reference on a tiny budget: 2 permutations, far from the 5 % target; the caps
    the runner passed it are returned."""
    seen: list[int] = []

    def tiny(utility, num_clients, *, rng, exact_max, max_permutations):  # type: ignore[no-untyped-def]
        seen.append(max_permutations)
        return monte_carlo_shapley(
            utility, num_clients, rng=rng, min_permutations=2, max_permutations=2
        )

    monkeypatch.setattr("simulation.world.stages.scoring.reference_shapley", tiny)
    return seen


IMPRECISE = [
    "rounds=2",
    "clients.count=3",
    "clients.fraction=1.0",
    "training.epochs=1",
    "privacy={mode: none}",
    "model.name=logreg",
    "contribution.reference=true",
    "contribution.exact_max_clients=1",
    f"contribution.reference_max_permutations={CAP}",
]


def _run(out: Path, overrides: list[str]) -> Result:
    sets = [arg for o in overrides for arg in ("--set", o)]
    argv = ["run", str(QUICKSTART), "--out", str(out), "--engine", "inprocess", *sets]
    return CliRunner().invoke(app, argv, env={"COLUMNS": "200"})


def test_an_imprecise_round_fails_the_run_by_default(caps: list[int], tmp_path: Path) -> None:
    res = _run(tmp_path / "r", IMPRECISE)
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert re.search(r"contribution\.on_imprecise -> round 1: .*standard error", res.output)
    # The runner hands the reference the scenario's cap; the message names what it
    # drew (2 here), where it used to name the cap it was told (150).
    assert caps == [CAP] and "stopped after 2 permutations" in res.output
    assert f"{CAP}-permutation" not in res.output


def test_record_writes_the_ratio_per_round_and_the_imprecise_rounds(
    caps: list[int], tmp_path: Path
) -> None:
    res = _run(tmp_path, [*IMPRECISE, "contribution.on_imprecise=record"])
    assert res.exit_code == 0, res.output
    assert caps == [CAP, CAP]
    # Anyone can repeat the ratio from the recorded rows: the values of a round sum
    # to U(N) − U(∅), so the target is 0.05 · |Σ values| / n.
    metrics = pd.read_parquet(tmp_path / "metrics.parquet")
    values = metrics[metrics["metric"] == names.TRUE_CONTRIBUTION].groupby("round")["value"]
    errors = metrics[metrics["metric"] == names.TRUE_CONTRIBUTION_SE].groupby("round")["value"]
    repeated = (errors.max() / (0.05 * values.sum().abs() / values.count())).to_dict()
    rounds = pd.read_parquet(tmp_path / "rounds.parquet").set_index("round")
    ratios = rounds["reference_se_ratio"].dropna()  # round 0 has no reference
    assert ratios.to_dict() == pytest.approx(repeated, rel=1e-9)
    missed = [int(r) for r, v in ratios.items() if v > 1.0]
    assert 1 in missed
    reference = json.loads((tmp_path / "manifest.json").read_text())["reference"]
    assert reference == {
        "on_imprecise": "record",
        "exact_max_clients": 1,
        "monte_carlo_rounds": 2,
        "imprecise_rounds": missed,
    }
    assert f"{len(missed)} of 2 Monte Carlo rounds" in res.output  # the run summary
    rows = metrics[metrics["metric"] == names.REFERENCE_SE_RATIO]
    assert rows["round"].tolist() == [1, 2] and (rows["client"] == names.GLOBAL).all()


def test_a_dumped_scenario_validates_again() -> None:
    # The Flower apps and study workers get the scenario dumped and re-validated, with
    # every field set: the cap check must go by value (failed when it used fields_set).
    from simulation.config.schema import Scenario

    scenario = load_scenario(QUICKSTART)
    assert Scenario.model_validate(scenario.model_dump()).sha256() == scenario.sha256()
