"""Training behaviours: the registry, the factory and the ConfigRecord encoding.

This is the module docs/ARCHITECTURE.md names in "Contract: training behaviours". The
behaviours themselves live in ``honest``, ``free_riding`` and ``poisoning``; this module
re-exports the contract types and builds ``TRAINING_BEHAVIOURS``, keyed by the names scenario
files use. Server and ClientApp exchange a behaviour as one canonical JSON string
(``behaviour_to_config`` / ``behaviour_from_config``) that fits a Flower ConfigRecord.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from agents._behaviour import Heterogeneity, RoundContext, TrainingBehaviour
from agents._params import BaseParams, validate_params
from agents._registry import Registry
from agents.free_riding import DisguisedFreeRiderBehaviour, FreeRiderBehaviour
from agents.honest import HonestBehaviour
from agents.poisoning import (
    BackdoorBehaviour,
    GaussianNoiseBehaviour,
    LabelFlipBehaviour,
    ScalingBehaviour,
    SignFlipBehaviour,
)

__all__ = [
    "TRAINING_BEHAVIOURS",
    "Heterogeneity",
    "RoundContext",
    "TrainingBehaviour",
    "behaviour_from_config",
    "behaviour_to_config",
    "create_behaviour",
]

TRAINING_BEHAVIOURS: Registry[type[TrainingBehaviour]] = Registry("training behaviour")
for _cls in (
    HonestBehaviour,
    FreeRiderBehaviour,
    DisguisedFreeRiderBehaviour,
    LabelFlipBehaviour,
    SignFlipBehaviour,
    ScalingBehaviour,
    GaussianNoiseBehaviour,
    BackdoorBehaviour,
):
    TRAINING_BEHAVIOURS.register(_cls.name, _cls)
del _cls


def create_behaviour(
    name: str, params: Mapping[str, object] | BaseParams | None = None
) -> TrainingBehaviour:
    """Build the behaviour registered as ``name`` from JSON-able ``params``.

    Raises:
        ValueError: unknown ``name`` (the message lists valid names), or invalid ``params``
            (the message names the offending field).
    """
    cls = TRAINING_BEHAVIOURS.get_or_raise(name)
    validated = validate_params(cls.Params, params, what=f"training behaviour {name!r}")
    return cls(validated)


def _canonical(obj: object) -> str:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def behaviour_to_config(behaviour: TrainingBehaviour) -> str:
    """Encode a behaviour as canonical JSON ``{"name": ..., "params": {...}}``.

    The string goes into a Flower ConfigRecord; ``behaviour_from_config`` inverts it.
    """
    return _canonical({"name": behaviour.name, "params": behaviour.params.model_dump(mode="json")})


def behaviour_from_config(config: str) -> TrainingBehaviour:
    """A behaviour from ``behaviour_to_config``'s string; bad input raises ``ValueError``."""
    try:
        payload = json.loads(config)
    except json.JSONDecodeError as exc:
        raise ValueError(f"behaviour config is not JSON: {exc}") from exc
    if not isinstance(payload, dict) or set(payload) != {"name", "params"}:
        raise ValueError('behaviour config must be an object with exactly "name" and "params"')
    name, params = payload["name"], payload["params"]
    if not isinstance(name, str) or not isinstance(params, dict):
        raise ValueError('behaviour config: "name" must be a string and "params" an object')
    return create_behaviour(name, params)
