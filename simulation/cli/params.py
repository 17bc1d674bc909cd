"""``fedmarket schema`` and ``fedmarket params NAME``: the schema documents every component.

A scenario names components (an aggregator, a mechanism, an evaluator, a rating
rule, training behaviours, coalition attacks, market behaviours, a client-level
DP mode) and gives each a ``params`` mapping that
:mod:`simulation.scenario.components` validates against a pydantic model. The
scenario's own JSON Schema only says "a mapping" there, so without these
models a user could not learn what ``krum`` takes short of reading code; here
the same models, from the same registries, are rendered into the schema and as a
table. Everything is imported on call: ``fedmarket --help`` stays fast.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

__all__ = [
    "COMPONENTS_KEY",
    "WHERE",
    "ParamRow",
    "component_schemas",
    "find_components",
    "model_summary",
    "near_names",
    "param_rows",
    "unit_of",
]

COMPONENTS_KEY = "x-fedmarket-components"
"""The schema's extension keyword holding every component's parameter schema."""

WHERE: dict[str, tuple[str, str]] = {
    "strategy": ("aggregation.strategy", "aggregation.params"),
    "mechanism": ("rewards.mechanism", "rewards.params"),
    "evaluator": ("contribution.evaluator", "contribution.params"),
    "rating_rule": ("market.rating_rule.name", "market.rating_rule.params"),
    "behaviour": ("population[i].behaviour", "population[i].params"),
    "attack": ("timeline[i].attack (kind: coalition)", "timeline[i].params"),
    "market_behaviour": ("market.behaviours[i].behaviour", "market.behaviours[i].params"),
    "client_dp": ("aggregation.client_dp.mode", "aggregation.client_dp"),
}
"""Per component kind: the scenario field that names an entry, and where its parameters go."""

# Units by the naming conventions the parameter models follow (suffix → unit), most
# specific first; a field's own description ``tokens`` names its unit outright.
_UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_per_hour", "1/h (simulated)"),
    ("_hours", "h (simulated)"),
    ("_interval_s", "s (simulated)"),
    ("_s", "s (simulated)"),
    ("_bps", "basis points (1/10,000)"),
    ("_prob", "probability"),
    ("fraction", "fraction (0-1)"),
)
_UNIT_WORDS = {"tokens": "tokens"}


def unit_of(name: str, description: str | None) -> str:
    """The unit of parameter ``name``: its description when that is a unit word
    (``tokens``), else by the naming convention (``_s`` seconds, ``_hours``,
    ``_per_hour``, ``_bps``, ``_prob``, ``fraction``); ``""`` when unit-less."""
    if description and description.strip() in _UNIT_WORDS:
        return _UNIT_WORDS[description.strip()]
    for suffix, unit in _UNIT_SUFFIXES:
        if name.endswith(suffix):
            return unit
    return ""


def _kinds() -> Mapping[str, Any]:
    from simulation.scenario.components import KINDS

    return KINDS


def component_schemas() -> dict[str, dict[str, Any]]:
    """``{kind: {name: JSON Schema of its params}}`` for every registered component,
    each with ``x-named-by`` / ``x-params-at`` (the scenario fields involved)."""
    out: dict[str, dict[str, Any]] = {}
    for kind, spec in _kinds().items():
        named_by, params_at = WHERE[kind]
        entries: dict[str, Any] = {}
        for name in spec.names():
            schema = spec.model(name).model_json_schema()
            schema["x-named-by"], schema["x-params-at"] = named_by, params_at
            entries[name] = schema
        out[kind] = entries
    return out


def find_components(query: str) -> list[tuple[str, str]]:
    """``(kind, name)`` of every component called ``query``; ``KIND:NAME`` picks one kind."""
    kind_filter, _, name = query.rpartition(":")
    return [
        (kind, name)
        for kind, spec in _kinds().items()
        if (not kind_filter or kind == kind_filter) and name in spec.names()
    ]


def near_names(query: str, limit: int = 5) -> list[str]:
    """Registered names close to ``query`` (by ``difflib``), for an unknown name's error."""
    every = sorted({n for spec in _kinds().values() for n in spec.names()})
    name = query.rpartition(":")[2]
    close = difflib.get_close_matches(name, every, n=limit, cutoff=0.5)
    return close or [n for n in every if name and (name in n or n in name)][:limit]


def model_summary(kind: str, name: str) -> str:
    """The first paragraph of the parameter model's docstring (skipped when it is a
    derived model's generic one)."""
    from simulation.scenario.components import DerivedParams, MechanismOptions, params_model

    model = params_model(kind, name)
    if model.__doc__ in (DerivedParams.__doc__, MechanismOptions.__doc__, BaseModel.__doc__):
        return ""
    first = inspect.cleandoc(model.__doc__ or "").split("\n\n", 1)[0]
    return " ".join(first.split())


@dataclass(frozen=True, slots=True)
class ParamRow:
    """One parameter of a component, as ``fedmarket params`` prints it."""

    name: str
    type: str
    default: str
    unit: str
    constraints: str
    description: str


_ATTR_LINE = re.compile(r"^\s{4}(\w+)(?: \([^)]*\))?:\s*(.*)$")


def _attribute_docs(model: type[BaseModel]) -> dict[str, str]:
    """Per-field text from the model docstring's ``Attributes:`` section (Google style)."""
    doc = inspect.cleandoc(model.__doc__ or "")
    out: dict[str, str] = {}
    current: str | None = None
    inside = False
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            inside, current = True, None
            continue
        if not inside:
            continue
        match = _ATTR_LINE.match(line)
        if match:
            current = match.group(1)
            out[current] = match.group(2).strip()
        elif current and line.startswith(" " * 8) and line.strip():
            out[current] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            inside = False
    return out


def _type_text(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    return re.sub(r"\b(typing|agents\.[\w.]+|collections\.abc)\.", "", text)


def _constraints(metadata: list[Any]) -> str:
    ops = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤", "min_length": "len ≥", "max_length": "len ≤"}
    parts = []
    for item in metadata:
        for attr, op in ops.items():
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{op} {value}")
    return ", ".join(parts)


def param_rows(kind: str, name: str, *, runtime: frozenset[str] = frozenset()) -> list[ParamRow]:
    """The parameters of component ``name`` of ``kind``: type, default (``required``, or
    ``(run)`` for what the run supplies), unit, constraints and description."""
    from simulation.scenario.components import RUNTIME_PARAMS, params_model

    model = params_model(kind, name)
    docs = _attribute_docs(model)
    filled = runtime | RUNTIME_PARAMS.get(kind, frozenset())
    rows = []
    for field, info in model.model_fields.items():
        if info.default is PydanticUndefined and info.default_factory is None:
            default = "(run)" if field in filled else "required"
        elif info.default_factory is not None:
            default = repr(info.default_factory())  # type: ignore[call-arg]
        else:
            default = repr(info.default)
        description = info.description or docs.get(field, "")
        rows.append(
            ParamRow(
                name=field,
                type=_type_text(info.annotation),
                default=default,
                unit=unit_of(field, info.description),
                constraints=_constraints(list(info.metadata)),
                description="" if description in _UNIT_WORDS else description,
            )
        )
    return rows
