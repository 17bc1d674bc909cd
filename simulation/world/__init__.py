"""The market world on a simpy clock: a round as a pipeline of small stages over
typed parts (population, identities, accounting, market), and its typed records."""

from marketplace._lazy import lazy_exports

_EXPORTS = {
    "World": "core",
    "StageFactory": "core",
    "Parts": "setup",
    "build_parts": "setup",
    "default_stages": "setup",
    "account_name": "setup",
    "RoundContext": "context",
    "Federation": "context",
    "Recorder": "context",
    "Screened": "context",
    "Identity": "identities",
    "IdentityBook": "identities",
    "GroundTruth": "records",
    "MarketStats": "records",
    "MetricRow": "records",
    "Reply": "records",
    "RoundRecord": "records",
    "Transport": "records",
    "Weights": "records",
    "WorldResult": "records",
    "Population": "population",
    "TimeModel": "timing",
    "IntentApplier": "market_process",
    "MarketViewImpl": "market_process",
    "start_market_processes": "market_process",
    "check_update": "screening",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
