"""Golden values of the per-run study metrics and of the summary's confidence interval."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from simulation.results.groups import run_group_outcomes, study_columns
from simulation.results.metrics import gini, run_metrics
from simulation.study.compare import summarize


def _rewards(*pairs: tuple[str, float]) -> list[tuple[int, str, str, float]]:
    return [(1, client, "reward_tokens", value) for client, value in pairs]


def test_gini_by_hand() -> None:
    # |60-30| + |60-10| + |30-10| = 100, counted twice over ordered pairs = 200;
    # 2 n^2 mean = 2 * 9 * 100/3 = 600  ->  1/3
    assert gini([60, 30, 10]) == pytest.approx(1 / 3)
    assert gini([5, 5, 5]) == 0.0
    assert gini([0, 0]) == 0.0
    assert gini([10, 0, 0, 0]) == pytest.approx(3 / 4)  # (n-1)/n


def test_attacker_share_honest_profit_gini(make_run: Callable[..., Path]) -> None:
    # 60/30/10 over two rounds (tokens are summed over rounds); c is the attacker.
    rows = [
        (1, "a", "reward_tokens", 40.0), (2, "a", "reward_tokens", 20.0),
        (1, "b", "reward_tokens", 30.0),
        (2, "c", "reward_tokens", 10.0),
        (1, "global", "reward_tokens", 999.0),  # global rows are not an account
    ]  # fmt: skip
    run = make_run("r", rows, attackers=["c"])
    m = run_metrics(run)
    assert m["attacker_token_share"] == pytest.approx(0.1)
    assert m["honest_profit"] == pytest.approx(45.0)  # mean(60, 30)
    assert m["reward_gini"] == pytest.approx(1 / 3)
    assert m["test_accuracy"] == 0.9
    assert m["test_loss"] == 0.3
    assert m["epsilon_max"] == 2.0
    assert m["wall_seconds"] == 1.5
    for key in ("reward_spearman", "detection_precision", "detection_recall"):
        assert math.isnan(m[key]), key


def test_accounts_without_tokens_count(make_run: Callable[..., Path]) -> None:
    behaviours = {"a": "honest", "b": "honest", "z": "free_rider"}
    run = make_run("r", _rewards(("a", 50.0), ("b", 50.0)), attackers=["z"], behaviours=behaviours)
    m = run_metrics(run)
    assert m["attacker_token_share"] == 0.0
    assert m["honest_profit"] == pytest.approx(50.0)
    # [50, 50, 0]: sum|xi-xj| = 4 * 50 = 200; 2 * 9 * 100/3 = 600
    assert m["reward_gini"] == pytest.approx(1 / 3)


def test_a_market_attacker_alone_is_an_attacker_as_in_the_group_columns(
    make_run: Callable[..., Path],
) -> None:
    # k is in a colluding cabal and trains honestly: no training attacker at all.
    # Tokens a 50, b 30, k 20: k's share 20/100; honest profit mean(50, 30) = 40.
    roles = {"a": "honest", "b": "honest", "k": "colluding_cabal"}
    run = make_run("r", _rewards(("a", 50.0), ("b", 30.0), ("k", 20.0)), roles=roles)
    m = run_metrics(run)
    assert m["attacker_token_share"] == pytest.approx(0.2)
    assert m["attacker_fraction"] == pytest.approx(1 / 3)
    assert m["honest_profit"] == pytest.approx(40.0)
    groups = study_columns(run_group_outcomes(run))
    assert groups["total:attackers:token_share"] == pytest.approx(m["attacker_token_share"])


def test_costs_are_subtracted(make_run: Callable[..., Path]) -> None:
    rows = [*_rewards(("a", 60.0), ("b", 30.0)), (1, "a", "cost", 10.0), (2, "a", "cost", 10.0)]
    m = run_metrics(make_run("r", rows))
    assert m["honest_profit"] == pytest.approx(((60 - 20) + 30) / 2)


def test_no_tokens(make_run: Callable[..., Path]) -> None:
    m = run_metrics(make_run("r", [(1, "a", "train_loss", 1.0)], behaviours={"a": "honest"}))
    assert math.isnan(m["attacker_token_share"])
    assert m["reward_gini"] == 0.0
    assert m["honest_profit"] == 0.0


def test_spearman_against_true_contribution(make_run: Callable[..., Path]) -> None:
    rows = _rewards(("a", 60.0), ("b", 30.0), ("c", 10.0), ("d", 5.0))
    contrib = [(1, "a", "true_contribution", 0.2), (2, "a", "true_contribution", 0.3),
               (1, "b", "true_contribution", 0.4), (1, "c", "true_contribution", 0.1),
               (1, "d", "true_contribution", 0.0)]  # fmt: skip
    # contributions a=0.5, b=0.4, c=0.1, d=0.0: same order as tokens -> rho 1
    assert run_metrics(make_run("same", rows + contrib))["reward_spearman"] == pytest.approx(1.0)
    # swap a and b's contributions: ranks (1,2,3,4) vs (2,1,3,4): rho = 1 - 6*2/(4*15) = 0.8
    swapped = [(r, {"a": "b", "b": "a"}.get(c, c), m, v) for r, c, m, v in contrib]
    assert run_metrics(make_run("swap", rows + swapped))["reward_spearman"] == pytest.approx(0.8)


def test_detection_precision_recall(make_run: Callable[..., Path]) -> None:
    rows = [
        *_rewards(("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 1.0)),
        (1, "a", "flagged", 1.0),  # true positive
        (1, "b", "flagged", 0.0), (2, "b", "flagged", 1.0),  # false positive (any round)
        (1, "c", "flagged", 0.0),  # attacker missed
        (1, "d", "flagged", 1.0),  # true positive
    ]  # fmt: skip
    m = run_metrics(make_run("r", rows, attackers=["a", "c", "d"]))
    assert m["detection_precision"] == pytest.approx(2 / 3)
    assert m["detection_recall"] == pytest.approx(2 / 3)


def test_detection_nothing_flagged(make_run: Callable[..., Path]) -> None:
    rows = [*_rewards(("a", 1.0)), (1, "a", "flagged", 0.0)]
    m = run_metrics(make_run("r", rows, attackers=["a"]))
    assert math.isnan(m["detection_precision"])
    assert m["detection_recall"] == 0.0


def test_summarize_groups_designs_and_skips_failed_runs() -> None:
    nan = float("nan")
    table = pd.DataFrame(
        {
            "design": ["m=a"] * 4 + ["m=b"],
            "m": ["a"] * 4 + ["b"],
            "status": ["ok", "ok", "ok", "failed", "ok"],
            "test_accuracy": [1.0, 2.0, 3.0, nan, 0.5],
        }
    )
    for col in ("test_loss", "epsilon_max", "attacker_token_share", "honest_profit",
                "reward_gini", "reward_spearman", "detection_precision",
                "detection_recall", "wall_seconds"):  # fmt: skip
        table[col] = 1.0
    s = summarize(table, ["m"]).set_index("design")
    assert s.loc["m=a", "runs"] == 4 and s.loc["m=a", "failed"] == 1
    assert s.loc["m=a", "test_accuracy_mean"] == 2.0
    # 3 ok seeds: below the 5 an interval needs, so the points and no interval
    assert math.isnan(s.loc["m=a", "test_accuracy_ci95"])
    assert s.loc["m=a", "test_accuracy_points"] == "1.0;2.0;3.0"
    assert s.loc["m=a", "test_accuracy_n"] == 3
    assert s.loc["m=b", "test_accuracy_mean"] == 0.5
    assert math.isnan(s.loc["m=b", "test_accuracy_ci95"])
