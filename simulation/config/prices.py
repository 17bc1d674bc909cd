"""The scenario's money in ledger units: licence terms (one conversion for every
caller: the run's own versions and models imported after the run), the ledger's
genesis rules, and the default prices, which come from what the scenario's
buyers would pay.

A fixed list (20/5/2 tokens) priced a model of ~0.66 accuracy above every
buyer's willingness to pay, so markets sold nothing by default. Unless
``market.prices`` is set, each version is therefore priced at
``market.demand_price_share`` of the lowest willingness to pay among the
scenario's ``buyers`` behaviours (their hedonic value of the version's measured
validation accuracy at their prior rating, :meth:`agents.market.BuyersBehaviour.worth`;
default buyers when the scenario has none): a buyer who sees the version before
it is rated can afford it, and a better model costs more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from marketplace import TOKEN
from marketplace.state import Params, PriceTerms
from simulation.config.schema import LicenseTermsConfig, MarketConfig, MarketParamsConfig

if TYPE_CHECKING:
    from agents.market import BuyersBehaviour

__all__ = [
    "DEMAND_TERMS",
    "TOKEN_PARAMS",
    "DemandPricing",
    "FixedPricing",
    "Pricing",
    "affordable",
    "buyer_behaviours",
    "ledger_params",
    "mechanism_params",
    "price_list",
    "pricing_for",
]

#: Licence types priced by default, and their terms other than the price:
#: (validity in simulated seconds, use cap).
DEMAND_TERMS: dict[str, tuple[float | None, int | None]] = {
    "perpetual": (None, None),
    "subscription": (86_400.0, None),
    "per_use": (None, 20),
}


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


class Pricing(Protocol):
    """A version's price list from its registry metrics (``accuracy``: validation)."""

    def __call__(self, metrics: Mapping[str, float]) -> dict[str, PriceTerms]: ...


@dataclass(frozen=True)
class FixedPricing:
    """``market.prices`` as given, the same for every version."""

    prices: dict[str, PriceTerms]

    def __call__(self, metrics: Mapping[str, float]) -> dict[str, PriceTerms]:
        return dict(self.prices)


@dataclass(frozen=True)
class DemandPricing:
    """``share`` x the lowest willingness to pay for the version's measured accuracy among
    the ``buyers`` who buy that licence type (positive ``license_mix`` weight), per type
    of :data:`DEMAND_TERMS` (a type no buyer buys is not offered). A version without a measured
    accuracy (a model imported after the run) gets no price list: it is not for sale."""

    buyers: tuple[BuyersBehaviour, ...]
    share: float

    def __call__(self, metrics: Mapping[str, float]) -> dict[str, PriceTerms]:
        accuracy = metrics.get("accuracy")
        if accuracy is None:
            return {}
        out = {}
        for name, (duration, uses) in DEMAND_TERMS.items():
            wanting = [b for b in self.buyers if b.params.license_mix.get(name, 0.0) > 0]  # type: ignore[call-overload]
            if not wanting:
                continue  # no buyer buys this type: not offered
            worth = min(b.worth(name, float(accuracy)) for b in wanting)
            # floor (float noise aside): never above what the buyers pay
            price = math.floor(self.share * worth * TOKEN * (1 + 1e-12))
            out[name] = PriceTerms(price=price, duration=duration, max_uses=uses)
        return out


def buyer_behaviours(market: MarketConfig) -> list[BuyersBehaviour]:
    """The scenario's ``buyers`` behaviours, built (default buyers when there are none)."""
    from agents.market import BuyersBehaviour, create_market_behaviour

    built = [
        create_market_behaviour(b.behaviour, b.params)
        for b in market.behaviours
        if b.behaviour == BuyersBehaviour.name
    ]
    return [b for b in built if isinstance(b, BuyersBehaviour)] or [BuyersBehaviour()]


def pricing_for(market: MarketConfig) -> Pricing:
    """The scenario's pricing: ``market.prices`` when set, else :class:`DemandPricing`."""
    if market.prices is not None:
        return FixedPricing(price_list(market.prices))
    return DemandPricing(tuple(buyer_behaviours(market)), market.demand_price_share)


def affordable(
    prices: Mapping[str, LicenseTermsConfig], buyers: Sequence[BuyersBehaviour], budget: float
) -> bool:
    """Whether some buyer could ever buy some licence: a licence type in the buyer's
    ``license_mix`` (positive weight) priced within its budget and at most its highest
    willingness to pay (``base_value``: a perfect model rated 5)."""
    for b in buyers:
        for name, weight in b.params.license_mix.items():
            terms = prices.get(name)
            most = min(budget, b.worth(name, 1.0, 5.0))
            if weight > 0 and terms is not None and terms.price <= most:
                return True
    return False
