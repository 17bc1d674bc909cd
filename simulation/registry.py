"""Name → object registries, so a scenario file can name any component.

One implementation serves the whole project: ``marketplace.registry_base.Registry``
(the pure library cannot import ``simulation``, so it owns the class). A typo
fails with the list of valid names, as Opacus' accountant registry does.
"""

from __future__ import annotations

from marketplace.registry_base import Registry

__all__ = ["Registry"]
