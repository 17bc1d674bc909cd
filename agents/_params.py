"""Base pydantic model for behaviour and attack parameters, and error translation.

Parameters travel from a scenario file to the server and from the server to the Flower
ClientApp inside a ConfigRecord string, so they must be plain JSON: the base model forbids
unknown keys (a typo fails loudly), NaN and infinities (not representable in canonical JSON)
and mutation (a behaviour's configuration cannot drift during a run).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["BaseParams", "validate_params"]


class BaseParams(BaseModel):
    """Base class of every behaviour's and coalition attack's parameter model."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "<params>"
        parts.append(f"{loc}: {item['msg']}")
    return "; ".join(parts)


P = TypeVar("P", bound="BaseParams")


def validate_params(model: type[P], params: Mapping[str, object] | P | None, *, what: str) -> P:
    """Validate ``params`` against ``model``, turning a ``ValidationError`` into ``ValueError``.

    The message names the offending field (``"scale: Input should be greater than 0"``) and
    ``what`` is being configured, so a scenario author sees which entry to fix.
    """
    if params is None:
        params = {}
    if isinstance(params, model):
        return params
    if isinstance(params, BaseParams):
        raise ValueError(
            f"invalid params for {what}: expected {model.__name__}, got {type(params).__name__}"
        )
    if not isinstance(params, Mapping):
        raise ValueError(f"invalid params for {what}: expected a mapping, got {type(params)!r}")
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        raise ValueError(f"invalid params for {what}: {_describe(exc)}") from exc
