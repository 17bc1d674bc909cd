"""Sweep files and --set sweeps: counts, modes, run ids, and errors named by field."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulation.errors import ScenarioError
from simulation.scenario.sweep import parse_set_options, resolve_study, run_id_for
from tests.compare.conftest import QUICKSTART, write_sweep


def _problems(exc: pytest.ExceptionInfo[ScenarioError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


def test_product_mode_crosses_lists_and_seeds(tmp_path: Path) -> None:
    sweep = write_sweep(
        tmp_path / "s.yaml",
        """
schema_version: 1
name: grid
base: BASE
mode: product
parameters:
  rewards.mechanism: [equal, data_size, reputation]
  aggregation.strategy: [fedavg, fedmedian]
seeds: {count: 2, start: 10}
set: {rounds: 1}
engine: inprocess
""",
    )
    study = resolve_study(sweep)
    assert len(study.variants) == 3 * 2 * 2
    assert study.seeds == (10, 11)
    assert study.engine == "inprocess"
    assert study.swept_keys == ("rewards.mechanism", "aggregation.strategy")
    assert len({v.design for v in study.variants}) == 6
    assert all("rounds=1" in v.overrides for v in study.variants)


def test_zip_mode_pairs_by_index(tmp_path: Path) -> None:
    sweep = write_sweep(
        tmp_path / "s.yaml",
        """
base: BASE
mode: zip
parameters:
  rewards.mechanism: [equal, data_size, reputation]
  aggregation.strategy: [fedavg, fedmedian, krum]
seeds: [1, 2]
""",
    )
    study = resolve_study(sweep)
    assert len(study.variants) == 3 * 2
    designs = sorted({v.design for v in study.variants})
    assert designs == [
        "rewards.mechanism=data_size, aggregation.strategy=fedmedian",
        "rewards.mechanism=equal, aggregation.strategy=fedavg",
        "rewards.mechanism=reputation, aggregation.strategy=krum",
    ]
    assert study.engine == "flower"  # the default


def test_zip_length_mismatch_names_the_fields(tmp_path: Path) -> None:
    sweep = write_sweep(
        tmp_path / "s.yaml",
        "base: BASE\nmode: zip\nparameters:\n  rewards.mechanism: [equal, score]\n"
        "  aggregation.strategy: [fedavg]\n",
    )
    with pytest.raises(ScenarioError) as exc:
        resolve_study(sweep)
    (msg,) = _problems(exc)
    assert msg.startswith(f"{sweep}: parameters -> mode zip needs lists of equal length")
    assert "rewards.mechanism has 2" in msg and "aggregation.strategy has 1" in msg


def test_empty_list_refused_by_name(tmp_path: Path) -> None:
    sweep = write_sweep(
        tmp_path / "s.yaml", "base: BASE\nparameters:\n  rewards.mechanism: []\n  rounds: [1]\n"
    )
    with pytest.raises(ScenarioError) as exc:
        resolve_study(sweep)
    assert _problems(exc) == [f"{sweep}: parameters.rewards.mechanism -> empty list"]


def test_unknown_sweep_field_and_bad_mode(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "s.yaml", "base: BASE\nmode: cross\nparamters: {}\n")
    with pytest.raises(ScenarioError) as exc:
        resolve_study(sweep)
    msgs = _problems(exc)
    assert any(m.startswith(f"{sweep}: mode -> ") for m in msgs)
    assert any(m.startswith(f"{sweep}: paramters -> unknown field") for m in msgs)


def test_every_variant_problem_reported_at_once(tmp_path: Path) -> None:
    sweep = write_sweep(
        tmp_path / "s.yaml",
        """
base: BASE
parameters:
  rewards.mechanizm: [equal, score]
  aggregation.strategy: [fedavg, nope]
  rounds: [2, 0]
set:
  clients.count: 4
seeds: [1, 2, 3]
""",
    )
    with pytest.raises(ScenarioError) as exc:
        resolve_study(sweep)
    msgs = _problems(exc)
    assert f"{sweep}: parameters.rewards.mechanizm -> unknown field" in msgs[0]
    assert any(
        m.startswith(f"{sweep}: parameters.aggregation.strategy -> unknown strategy 'nope'")
        for m in msgs
    )
    assert any(m.startswith(f"{sweep}: parameters.rounds -> ") and "(got 0)" in m for m in msgs)
    assert len(msgs) == len(set(msgs)) == 3  # one line per problem, not per variant


def test_base_is_relative_to_the_sweep_file(tmp_path: Path) -> None:
    sub = tmp_path / "studies"
    sub.mkdir()
    (tmp_path / "base.yaml").write_text(QUICKSTART.read_text())
    sweep = sub / "s.yaml"
    sweep.write_text("base: ../base.yaml\nparameters: {rounds: [1, 2]}\n")
    study = resolve_study(sweep)
    assert study.base == (tmp_path / "base.yaml").resolve()
    assert study.seeds == (42,)  # the base scenario's own seed when none are given
    missing = sub / "m.yaml"
    missing.write_text("base: nowhere.yaml\n")
    with pytest.raises(ScenarioError, match="file not found"):
        resolve_study(missing)


def test_parse_set_options() -> None:
    fixed, swept = parse_set_options(
        [
            "rounds=2",
            "rewards.mechanism=equal,data_size",
            "seed=1,2,3",
            "model.hidden=[64,32]",
            'name="a,b"',
            "rewards.emission_per_round=1.5, 2",
        ]
    )
    assert fixed == {"rounds": 2, "model.hidden": [64, 32], "name": "a,b"}
    assert swept == {
        "rewards.mechanism": ["equal", "data_size"],
        "seed": [1, 2, 3],
        "rewards.emission_per_round": [1.5, 2],
    }
    with pytest.raises(ScenarioError, match=r"expected key\.path=value"):
        parse_set_options(["rounds"])


def test_scenario_plus_set_sweeps_is_a_product() -> None:
    study = resolve_study(
        QUICKSTART,
        ["rewards.mechanism=equal,data_size", "seed=1,2,3", "rounds=1", "model.hidden=[8,8]"],
    )
    assert len(study.variants) == 2 * 3
    assert study.seeds == (1, 2, 3)
    assert study.mode == "product"
    assert study.fixed == {"rounds": 1, "model.hidden": [8, 8]}
    assert study.name == "quickstart"


def test_set_on_a_sweep_file_adds_fixed_and_crossed_values(tmp_path: Path) -> None:
    sweep = write_sweep(
        tmp_path / "s.yaml", "base: BASE\nparameters: {rewards.mechanism: [equal, reputation]}\n"
    )
    study = resolve_study(sweep, ["rounds=1", "aggregation.strategy=fedavg,krum", "seed=4"])
    assert len(study.variants) == 4
    assert study.seeds == (4,)
    with pytest.raises(ScenarioError, match="already swept"):
        resolve_study(sweep, ["rewards.mechanism=equal,reputation"])


def test_run_ids_are_stable_and_distinct() -> None:
    a = run_id_for({"rewards.mechanism": "equal"}, {"rounds": 2}, 1)
    assert a == run_id_for({"rewards.mechanism": "equal"}, {"rounds": 2}, 1)
    assert a.startswith("mechanism-equal-s1-")
    assert a == "mechanism-equal-s1-" + a.rsplit("-", 1)[1]
    others = {
        run_id_for({"rewards.mechanism": "equal"}, {"rounds": 2}, 2),
        run_id_for({"rewards.mechanism": "equal"}, {"rounds": 3}, 1),
        run_id_for({"rewards.mechanism": "score"}, {"rounds": 2}, 1),
    }
    assert a not in others and len(others) == 3
    # pinned: the id must not change between releases, or resumes re-run everything
    assert run_id_for({"rewards.mechanism": "equal"}, {}, 0) == "mechanism-equal-s0-806c7fe5"


def test_set_problems_are_reported_against_set() -> None:
    with pytest.raises(ScenarioError) as exc:
        resolve_study(QUICKSTART, ["rewards.mechanism=equal,nope", "rounds=0"])
    msgs = _problems(exc)
    assert any(m.startswith("--set: rewards.mechanism -> unknown mechanism 'nope'") for m in msgs)
    assert any(m.startswith("--set: rounds -> ") for m in msgs)
