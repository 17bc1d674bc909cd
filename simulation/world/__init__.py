"""The market world on a simpy clock: the round loop, the population and its
attacks, the time model, market processes and update screening."""

from marketplace._lazy import lazy_exports

_EXPORTS = {
    "World": "core",
    "WorldResult": "records",
    "RoundRecord": "records",
    "Reply": "core",
    "Transport": "core",
    "Weights": "records",
    "account_name": "core",
    "arrays_sha256": "core",
    "in_process_transport": "core",
    "Population": "population",
    "TimeModel": "timing",
    "IntentApplier": "market_process",
    "MarketViewImpl": "market_process",
    "start_market_processes": "market_process",
    "check_update": "screening",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
