"""The scenario's licence terms in ledger units (one conversion for every caller:
the run's own versions and models imported after the run), and the default
prices, which come from what the scenario's buyers would pay.

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
from typing import TYPE_CHECKING, Protocol

from marketplace import TOKEN
from marketplace.state import PriceTerms
from simulation.config.schema import LicenseTermsConfig, MarketConfig

if TYPE_CHECKING:
    from agents.market import BuyersBehaviour

__all__ = [
    "DEMAND_TERMS",
    "DemandPricing",
    "FixedPricing",
    "Pricing",
    "affordable",
    "buyer_behaviours",
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
