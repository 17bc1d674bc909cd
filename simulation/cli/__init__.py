"""The ``fedmarket`` command line (typer): run, validate, schema, compare, plot,
report, ledger and registry. Heavy libraries are imported only by the commands that use them."""

from marketplace._lazy import lazy_exports

_EXPORTS = {
    "app": "main",
    "main": "main",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
