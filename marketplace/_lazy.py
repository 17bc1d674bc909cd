"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package's ``__init__`` lists its public names, but importing one small module
of it (``marketplace.errors``, ``simulation.fl.privacy``) must not import all the
others (the ledger and libsodium; torch and Flower): each name is imported from
its module the first time it is used. This keeps ``fedmarket --help`` and
``validate`` fast. ``simulation``'s subpackages use it too.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` exporting ``name -> module``.

    ``exports`` maps each public name to the submodule (relative to ``package``)
    that defines it.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(set(exports) | set(vars(sys.modules[package])))

    return __getattr__, __dir__
