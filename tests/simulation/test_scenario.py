"""Scenario files: schema, overrides, and one clear line per problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from simulation.cli.main import app
from simulation.config.schema import DPSGDPrivacy
from simulation.errors import ScenarioError
from simulation.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
runner = CliRunner()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def problems(path: Path, overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path, overrides)
    return [str(p) for p in exc.value.problems]


def test_quickstart_loads_with_dp() -> None:
    sc = load_scenario(QUICKSTART)
    assert sc.name == "quickstart"
    assert isinstance(sc.privacy, DPSGDPrivacy)
    assert sc.privacy.noise_multiplier == 1.5
    assert sc.clients.count == 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "clients: {count: 10, fractoin: 0.5}\n",
            "s.yaml: clients.fractoin -> unknown field (valid: count, fraction, min_per_round)",
        ),
        (
            "training: {lr: fast}\n",
            "s.yaml: training.lr -> Input should be a valid number, unable to parse string as a "
            "number (got 'fast')",
        ),
        ("seed: -1\n", "s.yaml: seed -> Input should be greater than or equal to 0 (got -1)"),
        (
            "privacy: {mode: dp_sgd}\n",
            "s.yaml: privacy -> give exactly one of noise_multiplier or target_epsilon",
        ),
        (
            "privacy: {mode: dp_sgd, noise_multiplier: 1.0, delta: 2}\n",
            "s.yaml: privacy.delta -> Input should be less than 1 (got 2)",
        ),
        (
            "dataset: {name: imagenet}\n",
            "s.yaml: dataset.name -> unknown dataset 'imagenet' (valid: breast_cancer, cifar10, "
            "digits, fashion_mnist, femnist, mnist, shakespeare, synthetic) (got 'imagenet')",
        ),
        (
            "model: {name: cnn}\ndataset: {name: breast_cancer}\n",
            "s.yaml: model.name -> cnn needs an image dataset (cifar10, digits, fashion_mnist, "
            "femnist, mnist)",
        ),
        (
            "aggregation: {strategy: fedavgg}\n",
            "s.yaml: aggregation.strategy -> unknown strategy 'fedavgg' (valid: bulyan, fedavg, "
            "fedmedian, fedprox, fedtrimmedavg, fltrust, foolsgold, krum, multikrum)",
        ),
        (
            "partition: {kind: dirichlet, alpha: 0}\n",
            "s.yaml: partition.alpha -> Input should be greater than 0 (got 0)",
        ),
        ("schema_version: 3\n", "s.yaml: schema_version -> Input should be 2 (got 3)"),
        ("- a\n- b\n", "s.yaml -> the top level must be a mapping"),
    ],
)
def test_each_kind_of_error_names_file_field_and_reason(
    tmp_path: Path, text: str, expected: str
) -> None:
    got = problems(write(tmp_path, text))
    assert [p.replace(str(tmp_path) + "/", "") for p in got] == [expected]


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "seed: -1\nrounds: 0\naggregation: {strategy: nope}\n")
    fields = [p.split(" -> ")[0].split(": ")[1] for p in problems(path)]
    assert fields == ["seed", "rounds", "aggregation.strategy"]


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    assert problems(tmp_path / "absent.yaml") == [f"{tmp_path}/absent.yaml -> file not found"]
    bad = write(tmp_path, "a: [1,\n")
    (line,) = problems(bad)
    assert line.startswith(f"{bad}: line 2, column 1 -> invalid YAML:")


def test_overrides_set_nested_fields_and_are_validated() -> None:
    sc = load_scenario(QUICKSTART, ["training.lr=0.05", "model.hidden=[32, 16]", "rounds=3"])
    assert sc.training.lr == 0.05
    assert sc.model.hidden == (32, 16)
    assert sc.rounds == 3
    with pytest.raises(ScenarioError) as exc:
        load_scenario(QUICKSTART, ["training.lr=-1", "model.hiden=3", "nonsense"])
    lines = [str(p) for p in exc.value.problems]
    assert lines == ["--set: nonsense -> expected key.path=value"]
    with pytest.raises(ScenarioError) as exc:
        load_scenario(QUICKSTART, ["training.lr=-1", "model.hiden=3"])
    assert [p.field for p in exc.value.problems] == ["model.hiden", "training.lr"]


def test_seed_override_changes_hash() -> None:
    a, b = load_scenario(QUICKSTART, seed=1), load_scenario(QUICKSTART, seed=2)
    assert a.seed == 1 and b.seed == 2
    assert a.sha256() != b.sha256()
    assert a.sha256() == load_scenario(QUICKSTART, seed=1).sha256()


def test_cli_validate_explains_how_to_migrate_a_version_1_file(tmp_path: Path) -> None:
    old = write(
        tmp_path,
        "schema_version: 1\nrewards: {mechanism: stake_slash, params: {slash_amount: 2000000}}\n",
    )
    res = runner.invoke(app, ["validate", str(old)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    flat = " ".join(res.output.split())
    assert (
        f"{old}: schema_version -> this is a version-1 file; version 2 gives every money " in flat
    )
    assert "divide it by 1,000,000 (2000000 -> 2) and set schema_version: 2" in flat
    migrated = write(
        tmp_path,
        "schema_version: 2\nrewards: {mechanism: stake_slash, params: {slash_amount: 2}}\n",
    )
    assert runner.invoke(app, ["validate", str(migrated)]).exit_code == 0


def test_slash_amount_is_in_tokens(tmp_path: Path) -> None:
    from simulation.config.prices import mechanism_params

    # 2.5 tokens = 2_500_000 base units; other mechanisms' params pass through.
    assert mechanism_params("stake_slash", {"slash_amount": 2.5, "base": "equal"}) == {
        "slash_amount": 2_500_000, "base": "equal",
    }  # fmt: skip
    assert mechanism_params("equal", {"max_share": 0.5}) == {"max_share": 0.5}
    text = "rewards: {mechanism: stake_slash, params: {slash_amount: 0.5}}\n"
    scenario = load_scenario(write(tmp_path, text))
    from simulation.world.setup import _mechanism

    assert _mechanism(scenario, None, None).slash_amount == 500_000  # type: ignore[arg-type,attr-defined]


def test_cli_validate_exit_codes_and_no_traceback(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["validate", str(QUICKSTART)])
    assert ok.exit_code == 0, ok.output
    bad = write(tmp_path, "clients: {count: 0}\nfoo: 1\n")
    res = runner.invoke(app, ["validate", str(bad)])
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    assert f"{bad}: clients.count -> Input should be greater than or equal to 1 (got 0)" in (
        res.output
    )
    assert f"{bad}: foo -> unknown field" in res.output
    res = runner.invoke(app, ["run", str(bad), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert not (tmp_path / "r").exists()


def test_cli_schema_is_json_schema() -> None:
    res = runner.invoke(app, ["schema"])
    assert res.exit_code == 0
    schema = json.loads(res.output)
    assert schema["additionalProperties"] is False
    assert {"dataset", "privacy", "rounds", "seed"} <= set(schema["properties"])


def test_every_shipped_scenario_validates() -> None:
    files = sorted((ROOT / "scenarios").glob("*.yaml"))
    assert files, "scenarios/ is empty"
    for path in files:
        load_scenario(path)
