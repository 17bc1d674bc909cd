"""Every component a scenario names, with the parameters it takes.

A scenario names components by registry name — an aggregator, an incentive
mechanism, a contribution evaluator, a rating rule, training behaviours,
coalition attacks and market behaviours — and gives each a ``params``
mapping. Here each name resolves to a pydantic model of its parameters, so a
typo lists the valid keys and a wrong type names the key, before anything is
built (and without importing torch or Flower). Components that carry their own
model (``Params`` on agents' behaviours, :class:`AggregatorSpec` for
aggregators) use it; mechanisms and evaluators, plain classes of the
standalone ``marketplace`` library, get one derived from their constructor's
typed keyword arguments.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

__all__ = ["KINDS", "RUNTIME_PARAMS", "ComponentKind", "param_problems", "params_model"]


class DerivedParams(BaseModel):
    """Base of the parameter models derived from constructor signatures."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MechanismOptions(DerivedParams):
    """Options every mechanism takes (``create_mechanism`` wraps it)."""

    max_share: float | None = Field(None, gt=0.0, le=1.0, description="cap on any one share")
    min_score: float | None = Field(None, description="minimum contribution score to be paid")


@dataclass(frozen=True)
class ComponentKind:
    """One kind of named component: its label, its registry's names, and the
    parameter model of an entry."""

    label: str
    names: Callable[[], list[str]]
    model: Callable[[str], type[BaseModel]]


_JSON_ATOMS = (int, float, str, bool, type(None))


def _json_type(tp: Any) -> Any | None:
    """``tp`` restricted to what a scenario file can hold, or ``None`` if nothing is."""
    if tp is Any or tp in _JSON_ATOMS:
        return tp
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in typing.get_args(tp) if _json_type(a) is not None]
        if not kept or kept == [type(None)]:
            return None
        return kept[0] if len(kept) == 1 else typing.Union[tuple(kept)]  # noqa: UP007
    if origin in (list, tuple, Mapping, dict) or (
        origin is not None and getattr(origin, "__module__", "") == "collections.abc"
    ):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return tp if all(_json_type(a) is not None for a in args) else None
    return None


def derived_model(
    target: Callable[..., Any], *, skip: tuple[str, ...] = (), base: type = DerivedParams
) -> Any:
    """A pydantic model of the keyword parameters of ``target`` (a class's constructor,
    or a factory function) that a scenario can set.

    Parameters whose type holds nothing JSON-like (callables, objects) are not
    scenario parameters; neither are those in ``skip`` (supplied by the run).
    """
    init = target.__init__ if isinstance(target, type) else target  # type: ignore[misc]
    title = getattr(target, "__name__", "Component")
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # an annotation that does not resolve: treat as Any
        hints = {}
    fields: dict[str, Any] = {}
    for name, p in inspect.signature(init).parameters.items():
        if name == "self" or name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        tp = _json_type(hints.get(name, Any))
        if tp is None:
            continue
        fields[name] = (tp, ... if p.default is p.empty else p.default)
    return create_model(f"{title}Params", __base__=base, **fields)


# --------------------------------------------------------------------- kinds


def _strategy_names() -> list[str]:
    from simulation.fl.aggregation import AGGREGATORS

    return list(AGGREGATORS.names())


def _strategy_model(name: str) -> type[BaseModel]:
    from simulation.fl.aggregation import AGGREGATORS

    return AGGREGATORS.get(name).params


def _mechanism_names() -> list[str]:
    from marketplace.incentives import MECHANISMS

    return sorted(MECHANISMS)


@cache
def _mechanism_model(name: str) -> type[BaseModel]:
    from marketplace.incentives import MECHANISMS
    from simulation.config.prices import TOKEN_PARAMS

    cls = MECHANISMS.get(name)
    runtime = tuple(getattr(cls, "runtime_params", ()))
    model = derived_model(cls, skip=runtime, base=MechanismOptions)
    money = {
        k: (float, Field(..., gt=0.0, description="tokens")) for k in TOKEN_PARAMS.get(name, ())
    }
    if money:  # a scenario gives money in tokens; the constructor takes base units
        model = create_model(model.__name__, __base__=model, **money)
    return model  # type: ignore[no-any-return]


def _evaluator_names() -> list[str]:
    from marketplace.contribution import EVALUATORS

    return sorted(EVALUATORS)


@cache
def _evaluator_model(name: str) -> type[BaseModel]:
    from marketplace.contribution import EVALUATORS

    return derived_model(EVALUATORS.get(name))  # type: ignore[no-any-return]


def _rating_names() -> list[str]:
    from marketplace.ratings import RATING_RULES

    return sorted(RATING_RULES)


@cache
def _rating_model(name: str) -> type[BaseModel]:
    from marketplace.ratings import rating_rule_factory

    factory = rating_rule_factory(name)
    return DerivedParams if factory is None else derived_model(factory)  # type: ignore[no-any-return]


def _agents(registry: str) -> tuple[Callable[[], list[str]], Callable[[str], type[BaseModel]]]:
    def reg() -> Any:
        import agents

        return getattr(agents, registry)

    return (lambda: list(reg().names())), (lambda name: reg().get_or_raise(name).Params)


def _client_dp_names() -> list[str]:
    from simulation.fl.aggregation import CLIENT_DP_MODES

    return sorted(CLIENT_DP_MODES)


def _client_dp_model(name: str) -> type[BaseModel]:
    from simulation.fl.aggregation import CLIENT_DP_MODES

    return CLIENT_DP_MODES[name]


KINDS: dict[str, ComponentKind] = {
    "strategy": ComponentKind("strategy", _strategy_names, _strategy_model),
    "mechanism": ComponentKind("mechanism", _mechanism_names, _mechanism_model),
    "evaluator": ComponentKind("evaluator", _evaluator_names, _evaluator_model),
    "rating_rule": ComponentKind("rating rule", _rating_names, _rating_model),
    "behaviour": ComponentKind("training behaviour", *_agents("TRAINING_BEHAVIOURS")),
    "attack": ComponentKind("coalition attack", *_agents("COALITION_ATTACKS")),
    "market_behaviour": ComponentKind("market behaviour", *_agents("MARKET_BEHAVIOURS")),
    "client_dp": ComponentKind("client-level DP mode", _client_dp_names, _client_dp_model),
}
"""Component kinds by the key the loader uses."""


def params_model(kind: str, name: str) -> type[BaseModel]:
    """The parameter model of component ``name`` of ``kind`` (``ValueError`` if unknown)."""
    k = KINDS[kind]
    valid = k.names()
    if name not in valid:
        raise ValueError(f"unknown {k.label} {name!r} (valid: {', '.join(valid)})")
    return k.model(name)


RUNTIME_PARAMS: dict[str, frozenset[str]] = {
    "attack": frozenset({"members", "groups"}),
}
"""Per kind, parameters the run fills in when a scenario leaves them out (a coalition's
members are its population group's)."""


def param_problems(
    model: type[BaseModel], params: Any, *, runtime: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """``(key, reason)`` for every problem of ``params`` against ``model``; empty if valid.

    An unknown key lists the valid ones; a missing key says so, unless it is one
    the run supplies (``runtime``).
    """
    if not isinstance(params, Mapping):
        return [("", "expected a mapping of parameters")]
    try:
        model.model_validate(dict(params))
    except ValidationError as err:
        valid = ", ".join(sorted(model.model_fields)) or "none"
        out = []
        for e in err.errors(include_url=False):
            key = ".".join(str(p) for p in e["loc"])
            if e["type"] == "extra_forbidden":
                out.append((key, f"unknown parameter (valid: {valid})"))
            elif e["type"] == "missing":
                if key not in runtime:
                    out.append((key, "required parameter missing"))
            else:
                out.append((key, str(e["msg"]).removeprefix("Value error, ")))
        return out
    return []
