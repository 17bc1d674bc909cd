"""Outcomes per group and per attacker kind on a hand-built run result, every
expected value computed by hand (in the comments) from the rows below."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from simulation.results.groups import Truth, group_outcomes, run_group_outcomes, study_columns
from simulation.results.metrics import run_metrics

C0, C1, C2, C3, C4, C4W = (
    "client-000", "client-001", "client-002", "client-003", "client-004", "client-004-w1",
)  # fmt: skip
TRUTH = Truth.from_json(
    {
        "attackers": [C2, C3, C4, C4W],
        # client-003 is a Sybil identity of client-002; client-004-w1 is client-004
        # re-entered under a fresh name.
        "owners": {C0: C0, C1: C1, C2: C2, C3: C2, C4: C4, C4W: C4},
        "groups": {"sybils": [C2, C3], "riders": [C4]},
        "roles": {
            C0: "honest",
            C1: "honest",
            C2: "sybil+label_flip",
            C3: "sybil+label_flip",
            C4: "free_rider+whitewashers",
            C4W: "free_rider+whitewashers",
        },
    }
)
ROWS = [
    # rewards: owners c0 10, c1 20, c2 5+5=10, c4 4+6=10 (total 50)
    *[(1, a, "reward_tokens", v) for a, v in [(C0, 10), (C1, 20), (C2, 5), (C3, 5), (C4, 4)]],
    (2, C4W, "reward_tokens", 6.0),
    # royalties: c0 6, c2 2+2=4 (total 10); a fee line never reaches these rows
    *[(2, a, "royalty_tokens", v) for a, v in [(C0, 6), (C2, 2), (C3, 2)]],
    # costs: 1 per identity: c0 1, c1 1, c2 2, c4 2
    *[(1, a, "cost", 1.0) for a in (C0, C1, C2, C3, C4)],
    (2, C4W, "cost", 1.0),
    # reference contribution: c0 .5, c1 .7, c2 -.2, c4 0 (total 1.0)
    *[(1, a, "true_contribution", v) for a, v in [(C0, .5), (C1, .7), (C2, -.1), (C3, -.1)]],
    (1, C4, "true_contribution", 0.0),
    # screen rejects c4's fresh identity; the aggregator's weight flags c2 (< 0.1);
    # the mechanism slashes honest c1
    (2, C4W, "rejected", 1.0),
    *[(1, a, "aggregation_weight", w) for a, w in [(C0, .3), (C1, .3), (C2, 0), (C3, .2)]],
    (1, C4, "aggregation_weight", 0.2),
    (1, C1, "slashed_tokens", 1.0),
    (1, "global", "reward_tokens", 999.0),  # global rows are no one's tokens
]  # fmt: skip
METRICS = pd.DataFrame(ROWS, columns=["round", "client", "metric", "value"])


def _row(table: pd.DataFrame, kind: str, name: str) -> dict[str, float]:
    (rec,) = table[(table["set"] == kind) & (table["name"] == name)].to_dict("records")
    return rec


def _close(got: dict[str, float], want: dict[str, float]) -> None:
    for key, value in want.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value), key


NAN = float("nan")


def test_shares_profit_and_contribution_per_group() -> None:
    t = group_outcomes(METRICS, TRUTH, flag_below=0.1)
    assert sorted(zip(t["set"], t["name"], strict=True)) == sorted(
        [("group", "sybils"), ("group", "riders"), ("group", "(none)"),
         ("kind", "honest"), ("kind", "sybil+label_flip"), ("kind", "free_rider+whitewashers"),
         ("total", "attackers"), ("total", "honest")]
    )  # fmt: skip
    # sybils (owner c2): rewards 10/50, royalties 4/10, tokens 14/60, profit 14 - 2,
    # contribution -0.2 / 1.0 (signed)
    _close(
        _row(t, "group", "sybils"),
        {"owners": 1, "reward_share": 0.2, "royalty_share": 0.4, "token_share": 14 / 60,
         "net_profit": 12.0, "net_profit_per_owner": 12.0, "contribution_share": -0.2},
    )  # fmt: skip
    # riders (owner c4, two identities): 10/50, 0/10, 10/60, 10 - 2, 0/1
    _close(
        _row(t, "group", "riders"),
        {"owners": 1, "reward_share": 0.2, "royalty_share": 0.0, "token_share": 10 / 60,
         "net_profit": 8.0, "contribution_share": 0.0},
    )  # fmt: skip
    # no group (c0, c1): 30/50, 6/10, 36/60, 36 - 2 (17 each), 1.2/1.0
    none = _row(t, "group", "(none)")
    _close(
        none,
        {"owners": 2, "reward_share": 0.6, "royalty_share": 0.6, "token_share": 0.6,
         "net_profit": 34.0, "net_profit_per_owner": 17.0, "contribution_share": 1.2},
    )  # fmt: skip
    _close(_row(t, "kind", "honest"), {k: v for k, v in none.items() if k not in ("set", "name")})
    # attackers (c2, c4): 20/50, 4/10, 24/60, 12 + 8, -0.2
    _close(
        _row(t, "total", "attackers"),
        {"owners": 2, "reward_share": 0.4, "royalty_share": 0.4, "token_share": 0.4,
         "net_profit": 20.0, "net_profit_per_owner": 10.0, "contribution_share": -0.2},
    )  # fmt: skip


def test_detection_per_detector_and_group() -> None:
    t = group_outcomes(METRICS, TRUTH, flag_below=0.1)
    # flagged owners: screen {c4}, aggregator {c2}, mechanism {c1}, any {c1, c2, c4};
    # attackers {c2, c4}, honest {c0, c1}.
    _close(
        _row(t, "group", "sybils"),
        {"screen_recall": 0.0, "screen_precision": NAN, "screen_f1": 0.0,
         "aggregator_precision": 1.0, "aggregator_recall": 1.0, "aggregator_f1": 1.0,
         "mechanism_precision": 0.0, "mechanism_recall": 0.0, "mechanism_f1": 0.0,
         # any: c2 hit; flagged among {c2} ∪ honest: c1, c2 -> precision 1/2, F1 2/3
         "any_precision": 0.5, "any_recall": 1.0, "any_f1": 2 / 3, "any_flag_rate": 1.0},
    )  # fmt: skip
    _close(
        _row(t, "group", "riders"),
        {"screen_precision": 1.0, "screen_recall": 1.0, "screen_flag_rate": 1.0,
         "aggregator_precision": NAN, "aggregator_recall": 0.0, "aggregator_f1": 0.0},
    )  # fmt: skip
    # all attackers: any flags c1, c2, c4 -> precision 2/3, recall 1, F1 0.8
    _close(
        _row(t, "total", "attackers"),
        {"any_precision": 2 / 3, "any_recall": 1.0, "any_f1": 0.8,
         "mechanism_precision": 0.0, "mechanism_recall": 0.0, "mechanism_f1": 0.0},
    )  # fmt: skip
    # no attackers among the honest: no precision/recall, but how many were flagged
    _close(
        _row(t, "total", "honest"),
        {"any_precision": NAN, "any_recall": NAN, "mechanism_flag_rate": 0.5,
         "aggregator_flag_rate": 0.0},
    )  # fmt: skip


def test_a_detector_that_does_not_act_has_no_columns() -> None:
    without = METRICS[~METRICS["metric"].isin(["aggregation_weight"])]
    t = group_outcomes(without, TRUTH, flag_below=0.1)
    assert not any(c.startswith("aggregator_") for c in t.columns)
    assert "mechanism_recall" in t.columns and "screen_recall" in t.columns
    flat = study_columns(t)
    assert flat["group:sybils:token_share"] == pytest.approx(14 / 60)
    assert flat["total:attackers:mechanism_f1"] == 0.0


def test_run_metrics_count_data_owners_not_identities(tmp_path: Path) -> None:
    # a2 is a Sybil identity of owner a (both attack); b and c are honest.
    rows = [
        (1, "a", "reward_tokens", 10.0), (1, "a2", "reward_tokens", 10.0),
        (1, "b", "reward_tokens", 20.0),
        (1, "a", "true_contribution", -0.1), (1, "a2", "true_contribution", -0.1),
        (1, "b", "true_contribution", 0.6), (1, "c", "true_contribution", 0.1),
        (1, "a2", "flagged", 1.0), (1, "b", "flagged", 0.0),
    ]  # fmt: skip
    pd.DataFrame(rows, columns=["round", "client", "metric", "value"]).to_parquet(
        tmp_path / "metrics.parquet", index=False
    )
    (tmp_path / "manifest.json").write_text(json.dumps({"final": {}}))
    truth = {
        "attackers": ["a", "a2"],
        "behaviours": dict.fromkeys(["a", "a2", "b", "c"], "honest"),
        "owners": {"a": "a", "a2": "a", "b": "b", "c": "c"},
    }
    (tmp_path / "ground_truth.json").write_text(json.dumps(truth))
    m = run_metrics(tmp_path)
    assert m["attacker_fraction"] == pytest.approx(1 / 3)  # 1 of 3 owners (not 2 of 4)
    assert m["attacker_token_share"] == pytest.approx(0.5)  # 20 / 40
    # owners' tokens [20, 20, 0]: sum|xi - xj| = 80; 2 * 3^2 * 40/3 = 240
    assert m["reward_gini"] == pytest.approx(1 / 3)
    assert m["honest_profit"] == pytest.approx(10.0)  # mean(20, 0)
    # signed: (-0.1 - 0.1) / (-0.2 + 0.6 + 0.1); clipping at 0 would say 0
    assert m["attacker_contribution_share"] == pytest.approx(-0.4)
    # owner a flagged through a2: 1 of 1 flagged owners attacks, 1 of 1 attacker caught
    assert m["detection_precision"] == 1.0 and m["detection_recall"] == 1.0
    groups = run_group_outcomes(tmp_path)
    (att,) = groups[(groups["set"] == "total") & (groups["name"] == "attackers")].to_dict("records")
    assert att["token_share"] == pytest.approx(m["attacker_token_share"])
    assert att["contribution_share"] == pytest.approx(m["attacker_contribution_share"])


def test_the_study_summary_carries_group_outcomes() -> None:
    from simulation.study.compare import summarize

    table = pd.DataFrame(
        {
            "design": ["d", "d", "e"],
            "status": ["ok", "ok", "ok"],
            "group:sybils:token_share": [0.2, 0.4, 0.1],
            "total:attackers:any_f1": [1.0, 0.5, NAN],
        }
    )
    summary = summarize(table, []).set_index("design")
    assert summary.loc["d", "group:sybils:token_share_mean"] == pytest.approx(0.3)
    assert summary.loc["d", "total:attackers:any_f1_mean"] == pytest.approx(0.75)
    assert summary.loc["e", "group:sybils:token_share_mean"] == pytest.approx(0.1)
    assert math.isnan(summary.loc["e", "total:attackers:any_f1_mean"])
