"""The fixed, public test keyring every test signs with (never for real runs).

``tests/conftest.py`` also points ``FEDMARKET_KEYRING`` at the same secret in
``tests/fixtures/keyring/test.keyring``, so code that loads the default keyring
(a run, the CLI) signs with it too and nothing is created in the user's
configuration directory.
"""

from __future__ import annotations

from pathlib import Path

from marketplace.keyring import Keyring

KEYRING = Keyring.for_tests()
KEYRING_FILE = Path(__file__).resolve().parent / "fixtures" / "keyring" / "test.keyring"
