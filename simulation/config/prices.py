"""The scenario's money in ledger units: licence terms (one conversion for every
caller: the run's own versions and models imported after the run) and the
ledger's genesis rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marketplace import TOKEN
from marketplace.state import Params, PriceTerms
from simulation.config.schema import LicenseTermsConfig, MarketParamsConfig

__all__ = ["TOKEN_PARAMS", "ledger_params", "mechanism_params", "price_list"]

TOKEN_PARAMS: Mapping[str, tuple[str, ...]] = {"stake_slash": ("slash_amount",)}
"""Mechanism parameters that are money: tokens in a scenario, base units in the
``marketplace`` constructor (schema version 2; version 1 had ``slash_amount`` in base units)."""


def mechanism_params(mechanism: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``rewards.params`` for ``create_mechanism``: token amounts in base units (rounded)."""
    out = dict(params)
    for key in TOKEN_PARAMS.get(mechanism, ()):
        value = out.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = round(value * TOKEN)
    return out


def _units(tokens: float | None) -> int | None:
    return None if tokens is None else round(tokens * TOKEN)


def ledger_params(cfg: MarketParamsConfig) -> Params:
    """``market.params`` as the ledger's :class:`Params`: token amounts in base units
    (rounded), everything else as given."""
    return Params(
        unstake_delay=cfg.unstake_delay,
        min_stake=round(cfg.min_stake * TOKEN),
        platform_fee_bps=cfg.platform_fee_bps,
        vote_min_stake=round(cfg.vote_min_stake * TOKEN),
        vote_min_reputation=cfg.vote_min_reputation,
        vote_earn_min_stake=round(cfg.vote_earn_min_stake * TOKEN),
        max_supply=_units(cfg.max_supply),
        emission_per_round=_units(cfg.emission_per_round),
        halving_rounds=cfg.halving_rounds,
        reputation_half_life=cfg.reputation_half_life,
    )


def price_list(prices: Mapping[str, LicenseTermsConfig]) -> dict[str, PriceTerms]:
    """``market.prices`` as ledger price terms: prices in base units (rounded),
    durations in simulated seconds, use caps as given."""
    return {
        name: PriceTerms(price=round(t.price * TOKEN), duration=t.duration_s, max_uses=t.max_uses)
        for name, t in sorted(prices.items())
    }
