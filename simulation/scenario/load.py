"""Reading a scenario file: YAML, ``--set`` overrides, validation against the schema
and the registries, and error reporting as ``FILE: field.path -> reason``.

Errors are collected, never raised one at a time: a user fixing a file sees
every problem at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from simulation.config.schema import HubDatasetConfig, Scenario
from simulation.errors import Problem, ScenarioError

# ------------------------------------------------------------------ error handling

# Fields whose value is a discriminated union: pydantic puts the tag in the
# error location (``privacy.dp_sgd.noise_multiplier``); users never wrote it.
_TAGGED = {"partition", "privacy", "dataset"}
_TAGGED_LISTS = {"timeline"}


def _field_path(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    skip_next = False
    prev: int | str | None = None
    for i, item in enumerate(loc):
        if skip_next:
            skip_next = False
            prev = item
            continue
        parts.append(str(item))
        if item in _TAGGED or (isinstance(item, int) and i > 0 and prev in _TAGGED_LISTS):
            skip_next = True
        prev = item
    return ".".join(parts)


def _valid_keys(loc: Sequence[int | str]) -> list[str]:
    """Field names valid at the parent of ``loc``, to suggest on an unknown key."""
    model: Any = Scenario
    path = [p for p in loc[:-1]]
    i = 0
    while i < len(path):
        name = path[i]
        fields = getattr(model, "model_fields", None)
        if fields is None or name not in fields:
            return []
        ann = fields[name].annotation
        if name in _TAGGED and i + 1 < len(path):
            tag = path[i + 1]
            options = getattr(ann, "__args__", ())
            for opt in options:
                tags = [getattr(m, "tag", None) for m in getattr(opt, "__metadata__", ())]
                for inner in getattr(opt, "__args__", (opt,)):
                    mf = getattr(inner, "model_fields", {})
                    if tag in tags:  # a callable discriminator's Tag (the dataset section)
                        model = inner
                    for key in ("kind", "mode"):
                        if key in mf and mf[key].default == tag:
                            model = inner
            i += 2
            continue
        model = ann
        i += 1
    fields = getattr(model, "model_fields", None)
    return sorted(fields) if fields else []


def problems_from_validation(source: str, err: ValidationError) -> list[Problem]:
    """Turn a pydantic error into one ``Problem`` per failing field."""
    problems: list[Problem] = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        field = _field_path(loc)
        reason = str(e["msg"])
        if e["type"] == "extra_forbidden":
            valid = _valid_keys(loc)
            reason = "unknown field" + (f" (valid: {', '.join(valid)})" if valid else "")
        elif reason.startswith("Value error, "):
            reason = reason.removeprefix("Value error, ")
            # Cross-field validators name their own field as "field: reason".
            head, sep, tail = reason.partition(": ")
            if sep and " " not in head:
                field = f"{field}.{head}" if field else head
                reason = tail
        if e["type"] not in ("extra_forbidden", "missing") and "input" in e:
            shown = repr(e["input"])
            if len(shown) <= 60 and not isinstance(e["input"], dict):
                reason = f"{reason} (got {shown})"
        problems.append(Problem(source, field, reason))
    return problems


# ------------------------------------------------------------------------ loading


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning I/O and syntax errors into ``ScenarioError``."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([Problem(source, "", "file not found")]) from None
    except OSError as exc:
        raise ScenarioError([Problem(source, "", f"cannot read: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError([Problem(source, where, f"invalid YAML: {problem}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError([Problem(source, "", "the top level must be a mapping")])
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``key.path=value``; the value is read as YAML (``0.1``, ``true``, ``[64,32]``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ScenarioError([Problem("--set", text, "expected key.path=value")])
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key.path=value`` override set."""
    out = json.loads(json.dumps(data))
    problems: list[Problem] = []
    for text in overrides:
        try:
            path, value = parse_override(text)
        except ScenarioError as exc:
            problems.extend(exc.problems)
            continue
        node: Any = out
        for i, part in enumerate(path[:-1]):
            dotted = ".".join(path[: i + 1])
            if isinstance(node, list):
                # A list item by index: ``population.0.fraction=0.2``.
                if not part.isdigit() or int(part) >= len(node):
                    problems.append(Problem("--set", text, f"{dotted}: no such list item"))
                    break
                nxt = node[int(part)]
            else:
                nxt = node.get(part)
                if nxt is None:
                    nxt = node[part] = {}
            if not isinstance(nxt, dict | list):
                problems.append(Problem("--set", text, f"{dotted} is not a section"))
                break
            node = nxt
        else:
            last = path[-1]
            if isinstance(node, list):
                if not last.isdigit() or int(last) >= len(node):
                    problems.append(Problem("--set", text, f"{'.'.join(path)}: no such list item"))
                else:
                    node[int(last)] = value
            else:
                node[last] = value
    if problems:
        raise ScenarioError(problems)
    return out


def validate_data(data: Mapping[str, Any], source: str) -> Scenario:
    """Validate plain data as a ``Scenario`` and check registry names."""
    problems = _check_names(data, source)
    try:
        scenario = Scenario.model_validate(dict(data))
    except ValidationError as err:
        raise ScenarioError(problems_from_validation(source, err) + problems) from None
    if problems:
        raise ScenarioError(problems)
    problems = _check_components(scenario, source) + _check_machine(scenario, source)
    problems += _check_aggregation_feasible(scenario, source)
    problems += _check_staked_voters(scenario, source)
    if problems:
        raise ScenarioError(problems)
    return scenario


def _check_machine(scenario: Scenario, source: str) -> list[Problem]:
    """What this machine must provide: a Hub dataset's files (at ``dataset.path`` or in
    the local HF cache; nothing is downloaded, nothing imports ``datasets``), and CUDA
    when ``training.device`` is ``cuda`` (only then is torch imported)."""
    problems = []
    dataset = scenario.dataset
    if isinstance(dataset, HubDatasetConfig):
        from simulation.fl.sources import DatasetNotAvailable, locate

        try:
            locate(dataset)
        except DatasetNotAvailable as exc:
            field = "dataset.path" if dataset.path is not None else "dataset.name"
            problems.append(Problem(source, field, str(exc)))
    if scenario.training.device == "cuda":
        import torch

        from simulation.fl.device import cuda_unavailable_reason

        if not torch.cuda.is_available():
            reason = f"cuda requested, but {cuda_unavailable_reason()}"
            problems.append(Problem(source, "training.device", reason))
    return problems


def _named_components(data: Mapping[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """Every ``(field, kind, name, params)`` a scenario names, from its raw data."""

    def section(name: str) -> Mapping[str, Any]:
        block = data.get(name)
        return block if isinstance(block, dict) else {}

    def items(value: Any) -> list[tuple[int, Mapping[str, Any]]]:
        seq = value if isinstance(value, list) else []
        return [(i, x) for i, x in enumerate(seq) if isinstance(x, dict)]

    agg, rewards, contrib, market = (
        section(k) for k in ("aggregation", "rewards", "contribution", "market")
    )
    rule = market.get("rating_rule", "mean")
    found: list[tuple[str, str, Any, Any]] = [
        ("aggregation", "strategy", agg.get("strategy", "fedavg"), agg.get("params", {})),
        ("rewards", "mechanism", rewards.get("mechanism", "data_size"), rewards.get("params", {})),
        (
            ("market.rating_rule", "rating_rule", rule.get("name"), rule.get("params", {}))
            if isinstance(rule, dict)
            else ("market", "rating_rule", rule, {})
        ),
    ]
    dp = agg.get("client_dp")
    if isinstance(dp, dict):
        params = {k: v for k, v in dp.items() if k != "mode"}
        found.append(("aggregation.client_dp", "client_dp", dp.get("mode"), params))
    if contrib.get("evaluator") is not None:
        found.append(("contribution", "evaluator", contrib["evaluator"], contrib.get("params", {})))
    for i, g in items(data.get("population")):
        found.append(
            (f"population.{i}", "behaviour", g.get("behaviour", "honest"), g.get("params", {}))
        )
    for i, e in items(data.get("timeline")):
        if e.get("kind") == "coalition":
            found.append((f"timeline.{i}", "attack", e.get("attack"), e.get("params", {})))
    for i, b in items(market.get("behaviours")):
        found.append(
            (f"market.behaviours.{i}", "market_behaviour", b.get("behaviour"), b.get("params", {}))
        )
    return found


_NAME_KEY = {"market_behaviour": "behaviour", "client_dp": "mode"}
"""The key that names a component, where it is not the kind itself."""


def _check_names(data: Mapping[str, Any], source: str) -> list[Problem]:
    """Every named component must exist and its ``params`` must fit its parameter model.

    Checked on the raw data, so they are reported alongside schema errors.
    """
    from simulation.scenario.components import RUNTIME_PARAMS, param_problems, params_model

    problems = []
    for where, kind, name, params in _named_components(data):
        name_field = f"{where}.{_NAME_KEY.get(kind, kind)}"
        if where == "market.rating_rule":
            name_field = "market.rating_rule.name"
        if not isinstance(name, str):
            continue  # the schema reports a missing or mistyped name
        try:
            model = params_model(kind, name)
        except ValueError as exc:
            problems.append(Problem(source, name_field, str(exc)))
            continue
        runtime = RUNTIME_PARAMS.get(kind, frozenset())
        given = params if params is not None else {}
        for key, reason in param_problems(model, given, runtime=runtime):
            field = f"{where}.params" if kind != "client_dp" else where
            problems.append(Problem(source, f"{field}.{key}" if key else field, reason))
    return problems


def _check_components(scenario: Scenario, source: str) -> list[Problem]:
    """Build the cheap components once, so constraints their constructors check (not
    expressible in a parameter model) fail before a run starts. Strategies are not
    built here (that would import Flower): their parameter models carry their bounds."""
    from agents.market import create_market_behaviour
    from agents.training import create_behaviour
    from marketplace.contribution import create_evaluator
    from marketplace.incentives import create_mechanism
    from marketplace.ratings import make_rating_rule

    mechanism_params: dict[str, Any] = dict(scenario.rewards.params)
    if scenario.rewards.mechanism == "reputation":
        mechanism_params.setdefault("reputation", {})  # the run passes the ledger's live view
    attempts: list[tuple[str, Any]] = [
        (
            "rewards.params",
            lambda: create_mechanism(scenario.rewards.mechanism, **mechanism_params),
        ),
    ]
    market = scenario.market
    if not isinstance(market.rating_rule, str):
        attempts.append(
            (
                "market.rating_rule.params",
                lambda: make_rating_rule(market.rating_rule_name, market.rating_rule_params),
            )
        )
    if scenario.contribution.evaluator:
        ev = scenario.contribution.evaluator
        attempts.append(
            ("contribution.params", lambda: create_evaluator(ev, **scenario.contribution.params))
        )
    for i, g in enumerate(scenario.population):
        attempts.append(
            (f"population.{i}.params", lambda g=g: create_behaviour(g.behaviour, g.params))
        )
    for i, b in enumerate(scenario.market.behaviours):
        attempts.append(
            (
                f"market.behaviours.{i}.params",
                lambda b=b: create_market_behaviour(b.behaviour, b.params),
            )
        )
    problems = []
    for field, make in attempts:
        try:
            make()
        except (ValueError, TypeError) as exc:
            problems.append(Problem(source, field, str(exc).splitlines()[0]))
    return problems


# Replies a Byzantine-robust rule needs for ``f`` tolerated attackers, as its paper states:
# Krum and Multi-Krum (Blanchard et al. 2017) n ≥ 2f + 3; Bulyan (El Mhamdi et al. 2018)
# n ≥ 4f + 3. Flower runs below these bounds (Krum with fewer neighbours, Bulyan not at all).
_MIN_REPLIES = {"krum": (2, 3), "multikrum": (2, 3), "bulyan": (4, 3)}


def _check_aggregation_feasible(scenario: Scenario, source: str) -> list[Problem]:
    """A robust aggregator whose guarantee the round size cannot honour is a scenario error."""
    agg = scenario.aggregation
    problems: list[Problem] = []
    per_round = scenario.clients.per_round()
    sampled = (
        f"a round samples {per_round} clients (clients.count={scenario.clients.count}, "
        f"clients.fraction={scenario.clients.fraction})"
    )
    if agg.strategy in _MIN_REPLIES:
        f = agg.params.get("num_malicious_nodes", 0)
        a, b = _MIN_REPLIES[agg.strategy]
        if isinstance(f, int) and not isinstance(f, bool) and a * f + b > per_round:
            problems.append(
                Problem(
                    source,
                    "aggregation.params.num_malicious_nodes",
                    f"{agg.strategy} tolerates f={f} only with at least {a}f+{b}="
                    f"{a * f + b} replies per round, but {sampled}",
                )
            )
    select = agg.params.get("num_nodes_to_select")
    if agg.strategy == "multikrum" and isinstance(select, int) and select > per_round:
        problems.append(
            Problem(
                source,
                "aggregation.params.num_nodes_to_select",
                f"multikrum cannot select {select} updates: {sampled}",
            )
        )
    if agg.strategy == "fltrust" and scenario.dataset.validation_fraction == 0:
        problems.append(
            Problem(
                source,
                "dataset.validation_fraction",
                "fltrust trains the server on a root dataset, the validation split; "
                "with validation_fraction 0 it is empty and the model would never move",
            )
        )
    return problems


_VOTERS = ("honest_voters", "colluding_cabal")


def _check_staked_voters(scenario: Scenario, source: str) -> list[Problem]:
    """Under ``yuma`` a vote counts by the voter's stake: every voter must be able to stake.

    Only clients stake (``market.stake`` tokens out of ``market.initial_grant``
    when they join); any other voting account holds none, so its votes would
    have no say and a version rated only by such voters no rating at all.
    """
    from agents.market import create_market_behaviour

    market = scenario.market
    if market.rating_rule_name != "yuma":
        return []
    clients = {f"client-{i:03d}" for i in range(scenario.clients.count)}
    staking = min(market.stake, market.initial_grant) > 0
    problems = []
    for i, b in enumerate(market.behaviours):
        if b.behaviour not in _VOTERS:
            continue
        try:
            members = create_market_behaviour(b.behaviour, b.params).params.members()
        except (ValueError, TypeError):
            continue  # reported by _check_components
        unstaked = [m for m in members if not staking or m not in clients]
        if unstaked:
            shown = ", ".join(unstaked[:3]) + (", ..." if len(unstaked) > 3 else "")
            problems.append(
                Problem(
                    source,
                    f"market.behaviours.{i}.params",
                    f"market.rating_rule yuma counts votes by stake, but {b.behaviour} "
                    f"{shown} can hold none (only clients stake, market.stake="
                    f"{market.stake} tokens): vote with client accounts or use another rule",
                )
            )
    return problems


def load_scenario(
    path: Path | str, overrides: Iterable[str] = (), seed: int | None = None
) -> Scenario:
    """Load, override and validate a scenario file; raise ``ScenarioError`` listing problems."""
    path = Path(path)
    data = read_yaml(path)
    data = apply_overrides(data, overrides)
    if seed is not None:
        data["seed"] = seed
    return validate_data(data, str(path))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (for editors and ``fedmarket schema``)."""
    return Scenario.model_json_schema()
