"""Reading a scenario file: YAML, ``--set`` overrides, validation against the schema
and the registries, and error reporting as ``FILE: field.path -> reason``.

Files and ``--set`` values are read by :mod:`simulation.scenario.safe_yaml`, which
bounds size, nesting and aliases before anything is converted. Validation then
runs in stages, each reporting every problem it finds: the structure (pydantic)
with the registry names, then the cross-field semantics
(:meth:`Scenario.semantic_problems`) together with the building of every named
component and the accounts they name. No interpreter message reaches the user:
a component that raises on its parameters is reported in words.
"""

from __future__ import annotations

import copy
import logging
import re
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import ValidationError

from simulation.config.prices import mechanism_params as token_params
from simulation.config.schema import (
    STRUCTURE_ONLY,
    CoalitionEvent,
    HubDatasetConfig,
    Scenario,
    client_account,
)
from simulation.errors import Problem, ScenarioError
from simulation.scenario.safe_yaml import MAX_DEPTH, parse_value, read_mapping

log = logging.getLogger("fedmarket.scenario")

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


def _unwrap(ann: Any) -> Any:
    while get_origin(ann) is Annotated:
        ann = get_args(ann)[0]
    return ann


def _step(ann: Any, part: int | str) -> Any:
    """The annotation one location step below ``ann`` (``None``: unknown)."""
    ann = _unwrap(ann)
    origin = get_origin(ann)
    if isinstance(part, int):
        return _unwrap(get_args(ann)[0]) if origin in (tuple, list) else None
    if origin in (Union, types.UnionType):  # a tagged union: the tag picks the model
        for raw in get_args(ann):
            option = _unwrap(raw)
            tags = [getattr(m, "tag", None) for m in getattr(raw, "__metadata__", ())]
            fields = getattr(option, "model_fields", {})
            if part in tags or any(  # a callable discriminator's Tag (the dataset section)
                k in fields and fields[k].default == part for k in ("kind", "mode")
            ):
                return option
        return None
    if origin is dict:
        return get_args(ann)[1]
    fields = getattr(ann, "model_fields", None)
    return fields[part].annotation if fields and part in fields else None


def _valid_keys(loc: Sequence[int | str]) -> list[str]:
    """Field names valid at the parent of ``loc``, to suggest on an unknown key."""
    model: Any = Scenario
    for part in loc[:-1]:
        model = _step(model, part)
        if model is None:
            return []
    fields = getattr(_unwrap(model), "model_fields", None)
    return sorted(fields) if fields else []


def _shown(value: Any) -> str | None:
    """A short rendering of a rejected scalar value, or ``None`` (too long, or a container)."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 56 else None
    if isinstance(value, int) and value.bit_length() > 128:
        return None
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    if isinstance(value, list | tuple) and len(value) <= 8:
        parts = [_shown(v) for v in value]
        if all(p is not None for p in parts):
            return f"[{', '.join(p for p in parts if p is not None)}]"
    return None


def problems_from_validation(source: str, err: ValidationError) -> list[Problem]:
    """Turn a pydantic error into one ``Problem`` per failing field."""
    problems: list[Problem] = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        if e["type"] == "semantic":
            problems.append(Problem(source, ".".join(map(str, loc)), str(e["msg"])))
            continue
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
            shown = _shown(e["input"])
            if shown is not None and len(shown) <= 60:
                reason = f"{reason} (got {shown})"
        problems.append(Problem(source, field, reason))
    return problems


# ------------------------------------------------------------------------ loading


def read_yaml(path: Path, what: str = "scenario") -> dict[str, Any]:
    """Read a YAML mapping within the bounds of :mod:`simulation.scenario.safe_yaml`
    (size, encoding, aliases, nesting), turning every failure into ``ScenarioError``."""
    return read_mapping(Path(path), what)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``key.path=value``; the value is read as YAML (``0.1``, ``true``, ``[64,32]``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    path = key.split(".")
    if not sep or not key or any(not part for part in path):
        raise ScenarioError([Problem("--set", text, "expected key.path=value")])
    if len(path) > MAX_DEPTH:
        raise ScenarioError([Problem("--set", text, f"key nested deeper than {MAX_DEPTH} levels")])
    return path, parse_value(raw, "--set", text)


def _item(node: list[Any], part: str, dotted: str) -> str | None:
    """Why ``part`` is not an item of the list at ``dotted`` (``None``: it is)."""
    if not part.isdigit():
        return f"{dotted} is a list; {part!r} is not an item number"
    if int(part) >= len(node):
        has = f"{len(node)} item{'s' if len(node) != 1 else ''}" if node else "no items"
        return f"no item {part} ({dotted} has {has})"
    return None


def _set(out: dict[str, Any], path: list[str], value: Any) -> str | None:
    """Set ``path`` to ``value`` in ``out``; the reason it cannot be set, or ``None``."""
    node: Any = out
    for i, part in enumerate(path):
        dotted = ".".join(path[:i]) or "the scenario"
        last = i == len(path) - 1
        if isinstance(node, list):
            why = _item(node, part, dotted)
            if why is not None:
                return why
            if last:
                node[int(part)] = value
                return None
            nxt = node[int(part)]
        elif last:
            node[part] = value
            return None
        else:
            nxt = node.get(part)
            if nxt is None:
                if path[i + 1].isdigit():  # an item of a list the file does not set
                    return f"no item {path[i + 1]} ({'.'.join(path[: i + 1])} has no items)"
                nxt = node[part] = {}
        if not isinstance(nxt, dict | list):
            return f"{'.'.join(path[: i + 1])} is not a section"
        node = nxt
    return None


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key.path=value`` override set."""
    out = copy.deepcopy(data)  # plain, bounded data (safe_yaml refuses aliases and depth)
    problems: list[Problem] = []
    for text in overrides:
        try:
            path, value = parse_override(text)
        except ScenarioError as exc:
            problems.extend(exc.problems)
            continue
        why = _set(out, path, value)
        if why is not None:
            problems.append(Problem("--set", text, why))
    if problems:
        raise ScenarioError(problems)
    return out


def validate_data(data: Mapping[str, Any], source: str) -> Scenario:
    """Validate plain data as a ``Scenario``: the structure (with the registry names),
    then the cross-field semantics, the named components and the accounts they name.

    Every problem of a stage is reported; a later stage runs whenever the
    structure is valid, so a semantic error never hides a bad parameter.
    """
    problems = _check_names(data, source)
    try:
        scenario = Scenario.model_validate(dict(data), context=STRUCTURE_ONLY)
    except ValidationError as err:
        raise ScenarioError(problems_from_validation(source, err) + problems) from None
    named_badly = {p.field for p in problems}
    problems += [Problem(source, f, r) for f, r in scenario.semantic_problems()]
    problems += _check_components(scenario, source, named_badly)
    problems += _check_aggregation_feasible(scenario, source)
    problems += _check_client_dp(scenario, source, named_badly)
    problems += _check_staked_voters(scenario, source)
    problems += _check_local_steps(scenario, source, named_badly)
    if not any(p.field.startswith("market.behaviours") for p in problems):
        problems += _check_sales(scenario, source)
    reported = {p.field for p in problems}
    problems += [p for p in _check_machine(scenario, source) if p.field not in reported]
    if problems:
        raise ScenarioError(problems)
    return scenario


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
    from simulation.fl.aggregation import FLOWER_DP_WRAPPERS
    from simulation.scenario.components import RUNTIME_PARAMS, param_problems, params_model

    problems = []
    for where, kind, name, params in _named_components(data):
        name_field = f"{where}.{_NAME_KEY.get(kind, kind)}"
        if where == "market.rating_rule":
            name_field = "market.rating_rule.name"
        if not isinstance(name, str):
            continue  # the schema reports a missing or mistyped name
        if kind == "client_dp" and name in FLOWER_DP_WRAPPERS:
            continue  # refused with its reason by _check_client_dp
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


# Python's own wording: a component that raised it was handed parameters it does
# not take; the user sees what is wrong with the entry, not the interpreter's text.
_UNEXPECTED_KEYWORD = re.compile(r"unexpected keyword argument '([^']+)'")
_PYTHON_TEXT = re.compile(
    r"could not convert|invalid literal for|object has no attribute|not supported between"
    r"|unsupported operand|positional argument|required (positional|keyword)|__init__\(\)"
    r"|got multiple values|object is not|math domain error|must be real number"
)
# Market behaviours whose members are federated clients (they leave and rejoin).
_CLIENT_MARKET_BEHAVIOURS = ("whitewashers", "rational_participants", "churn")


def _component_reason(exc: Exception) -> str:
    """A user-facing reason for a component that could not be built from its parameters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, TypeError):
        found = _UNEXPECTED_KEYWORD.search(text)
        if found:
            return f"unknown parameter {found.group(1)!r}"
        if "takes no arguments" in text:
            return "takes no parameters"
        return "invalid parameters (a value of the wrong type, or a required one missing)"
    if isinstance(exc, ValueError) and text and not _PYTHON_TEXT.search(text):
        return text
    return "invalid parameters (a value of the wrong type or out of range)"


def _attempt(field: str, make: Callable[[], Any], problems: list[Problem], source: str) -> Any:
    """Build one component; a failure becomes a ``Problem`` (full detail in the debug log)."""
    try:
        return make()
    except Exception as exc:  # any failure to build is the entry's problem, never a traceback
        log.debug("building %s failed", field, exc_info=True)
        problems.append(Problem(source, field, _component_reason(exc)))
        return None


def _check_components(scenario: Scenario, source: str, named_badly: set[str]) -> list[Problem]:
    """Build the cheap components once, so constraints their constructors check (not
    expressible in a parameter model) fail before a run starts, and check that every
    account they name exists. Strategies are not built here (that would import
    Flower): their parameter models carry their bounds. An entry whose name or
    parameters :func:`_check_names` already refused (``named_badly`` holds those
    fields) is not built again."""
    from agents.market import create_market_behaviour
    from agents.training import create_behaviour
    from marketplace.contribution import create_evaluator
    from marketplace.incentives import create_mechanism
    from marketplace.ratings import make_rating_rule

    fine = partial(_named_well, named_badly)
    problems: list[Problem] = []
    rewards = scenario.rewards
    mechanism_params = token_params(rewards.mechanism, rewards.params)
    if rewards.mechanism == "reputation":
        mechanism_params.setdefault("reputation", {})  # the run passes the ledger's live view
    if fine("rewards"):
        make = partial(create_mechanism, rewards.mechanism, **mechanism_params)
        _attempt("rewards.params", make, problems, source)
    market = scenario.market
    if not isinstance(market.rating_rule, str) and fine("market.rating_rule"):
        make = partial(make_rating_rule, market.rating_rule_name, market.rating_rule_params)
        _attempt("market.rating_rule.params", make, problems, source)
    ev = scenario.contribution.evaluator
    if ev is not None and fine("contribution"):
        params = scenario.contribution.params
        _attempt("contribution.params", partial(create_evaluator, ev, **params), problems, source)
    for i, g in enumerate(scenario.population):
        if fine(f"population.{i}"):
            make = partial(create_behaviour, g.behaviour, g.params)
            _attempt(f"population.{i}.params", make, problems, source)
    clients = {client_account(i) for i in range(scenario.clients.count)}
    for i, b in enumerate(scenario.market.behaviours):
        if fine(f"market.behaviours.{i}"):
            make = partial(create_market_behaviour, b.behaviour, b.params)
            built = _attempt(f"market.behaviours.{i}.params", make, problems, source)
            if built is not None:
                problems += _member_problems(built, b.behaviour, clients, i, scenario, source)
    problems += _coalition_problems(scenario, clients, source)
    return problems


def _named_well(named_badly: set[str], where: str) -> bool:
    """Whether no problem already reported is at ``where`` or inside it (so
    ``population.1`` is not confused with ``population.10``)."""
    return not any(f == where or f.startswith(where + ".") for f in named_badly)


def _check_local_steps(scenario: Scenario, source: str, named_badly: set[str]) -> list[Problem]:
    """``training.local_steps`` replaces local epochs by fixed-size minibatches; whatever
    counts in epochs cannot then be honoured: DP-SGD's Poisson-sampled epochs (what its
    accountant composes), a behaviour that changes the local epochs, and rational
    participants (their effort and cost are in epochs)."""
    from agents.training import create_behaviour

    steps = scenario.training.local_steps
    if steps is None:
        return []
    field, why = "training.local_steps", f"training.local_steps ({steps}) replaces epochs"
    problems = []
    if scenario.privacy.mode == "dp_sgd":
        reason = f"{why}; DP-SGD's accountant assumes Poisson-sampled epochs (privacy.mode)"
        problems.append(Problem(source, field, reason))
    epochs = scenario.training.epochs
    for i, g in enumerate(scenario.population):
        if not _named_well(named_badly, f"population.{i}"):
            continue
        try:
            runs = create_behaviour(g.behaviour, g.params).local_epochs(epochs)
        except Exception:  # reported by _check_components with its reason
            continue
        if runs != epochs:
            reason = f"{why}; population.{i} ({g.behaviour}) trains {runs} local epochs"
            problems.append(Problem(source, field, reason))
    for i, b in enumerate(scenario.market.behaviours):
        if b.behaviour == "rational_participants":
            reason = f"{why}; market.behaviours.{i} (rational_participants) costs in epochs"
            problems.append(Problem(source, field, reason))
    return problems


def _clients_range(n: int) -> str:
    return f"clients.count is {n}: {client_account(0)}..{client_account(n - 1)}"


def _member_problems(
    built: Any, name: str, clients: set[str], i: int, scenario: Scenario, source: str
) -> list[Problem]:
    """Accounts a market behaviour acts for that must be, and are not, clients."""
    members = getattr(built.params, "members", None)
    if not callable(members):
        return []
    group = getattr(built.params, "group", None)
    if group is not None:
        known = [g.group for g in scenario.population]
        if group in known:
            return []  # a group's members are clients, drawn when the run starts
        shown = ", ".join(known) or "none"
        reason = f"no population group {group!r} (population groups: {shown})"
        return [Problem(source, f"market.behaviours.{i}.params.group", reason)]
    field = f"market.behaviours.{i}.params." + ("accounts" if built.params.accounts else "count")
    need_client = name in _CLIENT_MARKET_BEHAVIOURS
    n = scenario.clients.count
    out = []
    for account in members():
        if account in clients:
            continue
        if account.startswith("client-"):
            out.append(Problem(source, field, f"{account} does not exist ({_clients_range(n)})"))
        elif need_client:
            reason = f"{account} is not a client; {name} act for clients ({_clients_range(n)})"
            out.append(Problem(source, field, reason))
    return out


def _coalition_problems(scenario: Scenario, clients: set[str], source: str) -> list[Problem]:
    """The accounts a coalition attack names explicitly (``members``, a Sybil group's
    ``owner`` and ``identities``) must be clients: the attack rewrites their updates."""
    n, problems = scenario.clients.count, []
    for i, event in enumerate(scenario.timeline):
        if not isinstance(event, CoalitionEvent):
            continue
        named = [m for m in event.params.get("members") or () if isinstance(m, str)]
        for group in event.params.get("groups") or ():
            if isinstance(group, dict):
                named += [group.get("owner"), *(group.get("identities") or ())]
        for account in dict.fromkeys(a for a in named if isinstance(a, str)):
            if account not in clients:
                reason = f"{account} is not a client ({_clients_range(n)})"
                problems.append(Problem(source, f"timeline.{i}.params", reason))
    return problems


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


def _check_aggregation_feasible(scenario: Scenario, source: str) -> list[Problem]:
    """A robust aggregator whose guarantee the round size cannot honour is a scenario error."""
    from simulation.fl.aggregation import MIN_REPLIES as _MIN_REPLIES

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
    return problems


def _check_client_dp(scenario: Scenario, source: str, named_badly: set[str]) -> list[Problem]:
    """Client-level DP must have a valid guarantee: a sensitivity-bounded server step
    (``simulation.fl.aggregation.client_dp_problem``) and ``δ < 1/N``."""
    from simulation.fl.aggregation import SERVER_MOMENTUM_WITH_CLIENT_DP, client_dp_problem

    agg = scenario.aggregation
    if not agg.client_dp or "aggregation.strategy" in named_badly:
        return []
    problems = []
    if agg.server_momentum:
        reason = SERVER_MOMENTUM_WITH_CLIENT_DP.removeprefix("aggregation.server_momentum ")
        problems.append(Problem(source, "aggregation.server_momentum", reason))
    found = client_dp_problem(agg.strategy, agg.client_dp)
    if found is not None:
        problems.append(Problem(source, *found))
    delta = agg.client_dp.get("delta", 1e-5)
    n = scenario.clients.count
    if isinstance(delta, float) and delta * n >= 1.0:
        problems.append(
            Problem(
                source,
                "aggregation.client_dp.delta",
                f"δ={delta} must be below 1/clients.count = 1/{n}: with δ ≥ 1/N a mechanism"
                " that publishes one client's update whole is (0, δ)-DP",
            )
        )
    return problems


_VOTERS = ("honest_voters", "colluding_cabal")


def _check_sales(scenario: Scenario, source: str) -> list[Problem]:
    """A fixed price list that no buyer can ever afford makes a market with buyers that
    sells nothing (no revenue, no royalties): an error unless ``market.allow_no_sales``.

    "Ever": even a perfect model rated 5 is worth at most ``base_value[type]`` to a
    buyer, and no buyer pays more than ``market.buyer_budget``.
    """
    from simulation.config.prices import affordable, buyer_behaviours

    market = scenario.market
    if market.prices is None or market.allow_no_sales:
        return []
    if not any(b.behaviour == "buyers" for b in market.behaviours):
        return []
    buyers = buyer_behaviours(market)
    if affordable(market.prices, buyers, market.buyer_budget):
        return []
    wanted = sorted({t for b in buyers for t, w in b.params.license_mix.items() if w > 0})
    budget = market.buyer_budget

    def most(t: str) -> float:
        return max(min(budget, b.worth(t, 1.0, 5.0)) for b in buyers)

    asked = ", ".join(
        f"{t} costs {market.prices[t].price:g} tokens > {most(t):g}"
        if t in market.prices
        else f"{t} is not offered"
        for t in wanted
    )
    reason = (
        f"no buyer can ever afford a licence: {asked} (the most a buyer pays: a "
        f"perfect model's worth, within market.buyer_budget); lower the prices, leave "
        "market.prices unset to price from demand, or set market.allow_no_sales: true"
    )
    return [Problem(source, "market.prices", reason)]


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
            params = create_market_behaviour(b.behaviour, b.params).params
            group = getattr(params, "group", None)
            members = () if group is not None else params.members()  # type: ignore[attr-defined]
        except (ValueError, TypeError):
            continue  # reported by _check_components
        unstaked = [m for m in members if not staking or m not in clients]
        if group is not None and not staking:
            unstaked = [f"group {group}"]  # a group's members are clients: they stake if any do
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


def scenario_from_data(
    data: Mapping[str, Any], source: str, overrides: Iterable[str] = (), seed: int | None = None
) -> Scenario:
    """Override and validate already-read scenario data (a study reads its base once)."""
    out = apply_overrides(dict(data), overrides)
    if seed is not None:
        out["seed"] = seed
    return validate_data(out, source)


def load_scenario(
    path: Path | str, overrides: Iterable[str] = (), seed: int | None = None
) -> Scenario:
    """Load, override and validate a scenario file; raise ``ScenarioError`` listing problems."""
    path = Path(path)
    return scenario_from_data(read_yaml(path), str(path), overrides, seed)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (for editors and ``fedmarket schema``)."""
    return Scenario.model_json_schema()
