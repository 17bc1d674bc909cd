"""The scenario's licence terms in ledger units (one conversion for every caller:
the run's own versions and models imported after the run)."""

from __future__ import annotations

from collections.abc import Mapping

from marketplace import TOKEN
from marketplace.state import PriceTerms
from simulation.config.schema import LicenseTermsConfig

__all__ = ["price_list"]


def price_list(prices: Mapping[str, LicenseTermsConfig]) -> dict[str, PriceTerms]:
    """``market.prices`` as ledger price terms: prices in base units (rounded),
    durations in simulated seconds, use caps as given."""
    return {
        name: PriceTerms(price=round(t.price * TOKEN), duration=t.duration_s, max_uses=t.max_uses)
        for name, t in sorted(prices.items())
    }
