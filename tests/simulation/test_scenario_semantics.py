"""Semantic checks of a scenario and the bounded YAML reader, in process.

The corpus test (tests/test_malformed_inputs.py) drives the same cases through the
CLI; these pin the exact lines and the rules behind them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from simulation.cli.main import app
from simulation.errors import MAX_SHOWN, Problem, ScenarioError, problem_lines
from simulation.scenario.load import _component_reason, load_scenario
from simulation.scenario.safe_yaml import parse_yaml
from simulation.scenario.sweep import resolve_study

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"


def lines(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> list[str]:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path, overrides)
    return [str(p).replace(f"{path}: ", "") for p in exc.value.problems]


def test_fractions_must_be_whole_numbers_of_clients(tmp_path: Path) -> None:
    got = lines(
        tmp_path,
        "clients: {count: 10}\npopulation:\n"
        "  - {group: a, fraction: 0.54, behaviour: free_rider}\n"
        "  - {group: b, fraction: 0.04, behaviour: free_rider}\n",
    )
    assert got == [
        "population.0.fraction -> 0.54 of 10 clients is 5.4 clients, not a whole number; "
        "give count: 5 or count: 6",
        "population.1.fraction -> 0.04 of 10 clients is 0.4 clients, not a whole number; "
        "give count: 1",
    ]
    # 0.3 × 10 is 3.0000000000000004 in floating point: still exactly 3 clients.
    sc = load_scenario(QUICKSTART, ["population=[{group: a, fraction: 0.3}]"])
    assert sc.population[0].size(sc.clients.count) == 3


def test_groups_may_not_hold_more_clients_than_exist(tmp_path: Path) -> None:
    got = lines(
        tmp_path,
        "clients: {count: 10}\npopulation:\n"
        "  - {group: a, count: 6}\n  - {group: b, fraction: 0.5}\n",
    )
    assert got == ["population -> groups hold 11 clients but clients.count is 10"]


def test_timeline_and_faults_lie_inside_the_run(tmp_path: Path) -> None:
    got = lines(
        tmp_path,
        "rounds: 15\nclients: {count: 4}\npopulation: [{group: g, count: 2}]\n"
        "timeline:\n"
        "  - {kind: attack, group: g, start_round: 20, stop_round: 40}\n"
        "  - {kind: join, group: g, round: 15}\n"
        "  - {kind: leave, group: g, round: 16}\n"
        "faults: [{client: 1, kind: nan, rounds: [15, 16]}]\n",
    )
    assert got == [
        "faults.0.rounds -> round 16 is outside the run (1..15)",
        "timeline.0.start_round -> round 20 is after the last round (rounds: 15)",
        "timeline.0.stop_round -> round 40 is after the last round (rounds: 15)",
        "timeline.2.round -> round 16 is after the last round (rounds: 15)",
    ]


def test_every_client_group_and_account_named_must_exist(tmp_path: Path) -> None:
    got = lines(
        tmp_path,
        "clients: {count: 20}\n"
        "population:\n  - {group: a, clients: [3, 20]}\n  - {group: b, clients: [3]}\n"
        "timeline:\n"
        "  - {kind: dropout, group: c, probability: 0.1}\n"
        "  - {kind: coalition, group: a, attack: alie, params: {members: [client-003, x]}}\n"
        "faults: [{client: 20, kind: nan}]\n"
        "market:\n  behaviours:\n"
        "    - {behaviour: colluding_cabal, params: {accounts: [client-099, voter-000]}}\n"
        "    - {behaviour: rational_participants, params: {accounts: [bob]}}\n"
        "    - {behaviour: honest_voters, params: {count: 3}}\n",
    )
    clients = "clients.count is 20: client-000..client-019"
    assert got == [
        "faults.0.client -> client 20 does not exist (clients.count is 20: clients 0..19)",
        "population.0.clients -> client 20 does not exist (clients.count is 20: clients 0..19)",
        "population.1.clients -> client 3 is also in group 'a'",
        "timeline.0.group -> no population group 'c' (groups: a, b)",
        f"market.behaviours.0.params.accounts -> client-099 does not exist ({clients})",
        f"market.behaviours.1.params.accounts -> bob is not a client; rational_participants act "
        f"for clients ({clients})",
        f"timeline.1.params -> x is not a client ({clients})",
    ]


def test_shipped_cabal_and_whitewashers_name_existing_clients() -> None:
    for name in ("ballot_stuffing", "whitewashing", "rational_participants", "mixed"):
        load_scenario(ROOT / "scenarios" / f"{name}.yaml")


def test_component_errors_never_show_python_text(tmp_path: Path) -> None:
    got = lines(
        tmp_path,
        "rewards: {mechanism: stake_slash, params: {slash_amount: -5}}\n"
        "contribution: {evaluator: loo, params: {x: 1}}\n"
        "aggregation: {strategy: fltrust, params: {nope: 1}}\n",
    )
    assert got == [
        "aggregation.params.nope -> unknown parameter (valid: server_lr)",
        "rewards.params.slash_amount -> Input should be greater than 0",  # in tokens
        "contribution.params.x -> unknown parameter (valid: none)",
    ]


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (
            TypeError("ReputationMechanism.__init__() got an unexpected keyword argument 'foo'"),
            "unknown parameter 'foo'",
        ),
        (TypeError("LeaveOneOut() takes no arguments"), "takes no parameters"),
        (
            TypeError("'<' not supported between instances of 'int' and 'str'"),
            "invalid parameters (a value of the wrong type, or a required one missing)",
        ),
        (
            ValueError("could not convert string to float: 'x'"),
            "invalid parameters (a value of the wrong type or out of range)",
        ),
        (KeyError("alpha"), "invalid parameters (a value of the wrong type or out of range)"),
        (ValueError("slash_amount must be > 0, got -5"), "slash_amount must be > 0, got -5"),
    ],
)
def test_a_constructor_failure_is_reported_in_words(exc: Exception, reason: str) -> None:
    assert _component_reason(exc) == reason


def test_an_unknown_timeline_group_hides_no_other_problem(tmp_path: Path) -> None:
    got = lines(
        tmp_path,
        "rounds: 3\ntimeline: [{kind: attack, group: nobody}, {kind: attack, group: x}]\n"
        "clients: {count: 2, min_per_round: 3}\n"
        "rewards: {mechanism: data_size, params: {bogus: 1}}\n",
    )
    assert [g.split(" -> ")[0] for g in got] == [
        "rewards.params.bogus",
        "clients.min_per_round",
        "timeline.0.group",
        "timeline.1.group",
    ]


def test_list_overrides_name_the_missing_item() -> None:
    cases = {
        "population.3.fraction=0.1": "no item 3 (population has no items)",
        "model.hidden.3=8": "no item 3 (model.hidden has 1 item)",
        "model.hidden.x=8": "model.hidden is a list; 'x' is not an item number",
        "rounds.x=1": "rounds is not a section",
    }
    for text, reason in cases.items():
        with pytest.raises(ScenarioError) as exc:
            load_scenario(QUICKSTART, [text])
        assert [str(p) for p in exc.value.problems] == [f"--set: {text} -> {reason}"]
    one = load_scenario(
        QUICKSTART,
        [
            "population=[{group: a, count: 1}]",
            "population.0.fraction=0.1",
            "population.0.count=null",
        ],
    )
    assert one.population[0].fraction == 0.1


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("name: 2020-01-01\n", {"name": "2020-01-01"}),  # a date stays the string written
        ("a: 1\n", {"a": 1}),
        ("a: [1, {b: null}]\n", {"a": [1, {"b": None}]}),
    ],
)
def test_yaml_gives_plain_json_data(text: str, value: object) -> None:
    assert parse_yaml(text, "f") == value


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ("a: !!timestamp 2020-01-01\n", "unsupported YAML value of type date"),
        ("a: &x 1\nb: *x\n", "anchors and aliases"),
        ("a: " + "[" * 33 + "]" * 33 + "\n", "nested deeper than 32 levels"),
        ("a: 0x" + "f" * 17 + "\n", "integer out of range (more than 64 bits)"),
    ],
)
def test_yaml_refusals(text: str, reason: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        parse_yaml(text, "f")
    assert reason in str(exc.value)


def test_problem_lines_are_single_printable_lines_and_capped() -> None:
    p = Problem("f.yaml", "a\nb", "bad \x1b[31mred\x1b[0m\r\n" + "x" * 1000)
    (line,) = problem_lines([p])
    assert "\n" not in line and "\x1b" not in line and len(line) < 800
    many = [Problem("f.yaml", f"faults.{i}", "wrong") for i in range(500)]
    out = problem_lines(many)
    assert len(out) == MAX_SHOWN + 1
    assert out[-1] == f"f.yaml -> {500 - MAX_SHOWN} more problems not shown"


def test_sweep_guards(tmp_path: Path) -> None:
    base = str(QUICKSTART)
    with pytest.raises(ScenarioError, match="at most 1000"):
        resolve_study(
            QUICKSTART, ["training.lr=" + ",".join(str(i / 1000) for i in range(1, 1002))]
        )
    with pytest.raises(ScenarioError, match="anchors and aliases"):
        resolve_study(QUICKSTART, ["name=&a x,y"])
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"base: {base}\nseeds: {{count: 5000}}\nparameters: {{rounds: [1]}}\n")
    with pytest.raises(ScenarioError, match="5000 runs"):
        resolve_study(sweep)


# --------------------------------------------------------------- property test

runner = CliRunner()
QUICK = yaml.safe_load(QUICKSTART.read_text())
SWAPS = st.sampled_from(
    [None, True, -1, 0, 2**70, 1e308, -0.5, "", "x" * 300, [], [1, "a"], {}, {"k": 1}, "a: b"]
)


def _paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _flip(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return -value if value else 1
    if isinstance(value, str):
        return value[::-1] + "x"
    return value


@st.composite
def mutants(draw: st.DrawFn) -> dict[str, object]:
    import copy

    data = copy.deepcopy(QUICK)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        *head, last = path
        parent: object = data
        for part in head:
            parent = parent[part]  # type: ignore[index]
        op = draw(st.sampled_from(["delete", "swap", "flip", "add"]))
        if op == "delete":
            del parent[last]  # type: ignore[attr-defined]
        elif op == "swap":
            parent[last] = draw(SWAPS)  # type: ignore[index]
        elif op == "flip":
            parent[last] = _flip(parent[last])  # type: ignore[index]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "seed", "population", "timeline"]))] = draw(SWAPS)
    return data


@settings(max_examples=200)
@given(mutants())
def test_mutated_quickstart_exits_0_or_2_without_traceback(mutant: dict[str, object]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fm-mutant-") as tmp:
        path = Path(tmp) / "mutant.yaml"
        path.write_text(yaml.safe_dump(mutant))
        result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert all(line.startswith(str(path)) for line in result.output.splitlines() if line), (
            result.output
        )
