"""A run's result files: writing them (manifest, tables, model) and the outcome
metrics computed from them, one definition for runs, studies and plots."""

from marketplace._lazy import lazy_exports

_EXPORTS = {
    "write_results": "write",
    "metrics_frame": "write",
    "rounds_frame": "write",
    "package_versions": "write",
    "git_commit": "write",
    "METRICS": "metrics",
    "gini": "metrics",
    "run_metrics": "metrics",
    "group_outcomes": "groups",
    "run_group_outcomes": "groups",
    "RunFiles": "groups",
    "Truth": "groups",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
