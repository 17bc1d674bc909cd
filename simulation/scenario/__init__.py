"""Reading what a user writes: scenario files with ``--set`` overrides, validated
against the schema and the registries, and study sweep files; all YAML through the
bounded reader of ``safe_yaml`` (size, encoding, aliases, nesting)."""

from marketplace._lazy import lazy_exports

_EXPORTS = {
    "load_scenario": "load",
    "json_schema": "load",
    "apply_overrides": "load",
    "parse_override": "load",
    "read_yaml": "load",
    "scenario_from_data": "load",
    "parse_yaml": "safe_yaml",
    "read_text": "safe_yaml",
    "Study": "sweep",
    "Variant": "sweep",
    "resolve_study": "sweep",
    "is_sweep_file": "sweep",
    "parse_set_options": "sweep",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
