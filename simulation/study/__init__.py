"""Studies: many runs of scenario variants and seeds, isolated and resumable,
tabulated into one row per run and a per-design summary."""

from marketplace._lazy import lazy_exports

_EXPORTS = {
    "run_study": "compare",
    "StudyOutcome": "compare",
    "summarize": "compare",
    "default_workers": "compare",
    "RayExecutor": "ray_sweep",
    "KeyringSource": "ray_sweep",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
