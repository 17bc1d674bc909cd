"""The keyring: one master secret, kept outside every run directory, from which
each account's Ed25519 key on each ledger is derived.

Why: a key derivable from anything in a run directory (the old scheme hashed
the scenario seed, which genesis records) lets whoever holds the directory
re-sign a rewritten history. The master secret is 32 bytes from the OS's
random source, created on first use in the user's configuration directory
(``$XDG_CONFIG_HOME/fedmarket/keyring``, ``~/.config/fedmarket/keyring``;
``%APPDATA%\\fedmarket\\keyring`` on Windows), or at ``$FEDMARKET_KEYRING`` /
``--keyring PATH``. The file is created with mode 0600 and holds one line
after a header::

    fedmarket-keyring v1
    <64 lowercase hex digits>

Derivation (RFC 5869 HKDF-SHA256, so another implementation can re-derive a
key from the master secret)::

    ledger_key_id = SHA-256(b"fedmarket/ledger-key-id/v1\\x00" || canonical(genesis data))
    seed(account) = HKDF-SHA256(IKM=master, salt=b"fedmarket/keyring/v1",
                                info=b"account-key\\x00" || ledger_key_id || UTF-8(account),
                                L=32)

and the Ed25519 key is the RFC 8032 key of that 32-byte seed. ``genesis
data`` is everything genesis records except keys (scenario hash, seed, run
id, params, ...), so every ledger has its own keys. Derivation is lazy: a key
is derived the first time its account signs. Tests and CI use
:meth:`Keyring.for_tests`, a fixed, public master secret (never for real runs).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from marketplace.canonical import JSON, canonical_bytes
from marketplace.errors import KeyringError
from marketplace.keys import Signer

__all__ = [
    "KEYRING_ENV",
    "TEST_MASTER_SECRET",
    "Keyring",
    "default_keyring_path",
    "ledger_key_id",
]

KEYRING_ENV = "FEDMARKET_KEYRING"
"""Environment variable naming the keyring file (overrides the default location)."""

_HEADER = "fedmarket-keyring v1"
_SALT = b"fedmarket/keyring/v1"

TEST_MASTER_SECRET = hashlib.sha256(b"fedmarket public test keyring: never sign real runs").digest()
"""The master secret of :meth:`Keyring.for_tests` (public, hence worthless as a secret)."""


def default_keyring_path() -> Path:
    """``$FEDMARKET_KEYRING``, else the keyring in the user's configuration directory."""
    env = os.environ.get(KEYRING_ENV)
    if env:
        return Path(env).expanduser()
    if os.name == "nt":  # pragma: no cover - platform dependent
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "fedmarket" / "keyring"


def ledger_key_id(genesis_data: Mapping[str, JSON]) -> bytes:
    """The ledger identity keys are derived under (genesis content, known before any key)."""
    return hashlib.sha256(
        b"fedmarket/ledger-key-id/v1\x00" + canonical_bytes(genesis_data)
    ).digest()


class Keyring:
    """A master secret and the account keys derived from it (see the module doc)."""

    __slots__ = ("_master", "path")

    def __init__(self, master: bytes, *, path: Path | None = None) -> None:
        if len(master) != 32:
            raise KeyringError(f"a keyring master secret has 32 bytes, got {len(master)}")
        self._master = master
        self.path = path
        """The file it was read from (``None`` for an in-memory keyring)."""

    def __repr__(self) -> str:  # never the secret
        return f"Keyring(id={self.id}, path={self.path})"

    @property
    def id(self) -> str:
        """A public fingerprint (16 hex digits) telling keyrings apart; reveals nothing
        usable about the secret."""
        return hashlib.sha256(b"fedmarket/keyring-id/v1\x00" + self._master).hexdigest()[:16]

    @classmethod
    def for_tests(cls) -> Keyring:
        """The fixed, public test keyring (tests and CI; never for real runs)."""
        return cls(TEST_MASTER_SECRET)

    @classmethod
    def load(cls, path: Path | str) -> Keyring:
        """Read the keyring file at ``path`` (KeyringError if missing or malformed)."""
        p = Path(path).expanduser()
        try:
            lines = p.read_text(encoding="ascii").split()
        except FileNotFoundError:
            raise KeyringError(f"{p}: no keyring file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyringError(f"{p}: cannot read the keyring: {exc}") from None
        if len(lines) != 3 or " ".join(lines[:2]) != _HEADER:
            raise KeyringError(f"{p}: not a keyring file (expected '{_HEADER}' and a secret)")
        try:
            master = bytes.fromhex(lines[2])
        except ValueError:
            raise KeyringError(f"{p}: the secret is not hex") from None
        if len(master) != 32:
            raise KeyringError(f"{p}: the secret must be 64 hex digits")
        return cls(master, path=p)

    @classmethod
    def create(cls, path: Path | str) -> Keyring:
        """Create a keyring file at ``path`` from OS randomness (refuses to overwrite)."""
        return cls(os.urandom(32)).save(path)

    def save(self, path: Path | str) -> Keyring:
        """Write this keyring to a new file at ``path``, readable by its owner only
        (refuses to overwrite); returns the keyring read back from there. A run
        that signs in another process (the Flower ServerApp) is handed a file so."""
        p = Path(path).expanduser()
        p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyringError(f"{p}: a keyring already exists") from None
        try:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(f"{_HEADER}\n{self._master.hex()}\n")
        except BaseException:
            with contextlib.suppress(OSError):
                p.unlink()
            raise
        return Keyring(self._master, path=p)

    @classmethod
    def load_or_create(cls, path: Path | str | None = None) -> Keyring:
        """The keyring at ``path`` (default: :func:`default_keyring_path`), created on first use."""
        p = default_keyring_path() if path is None else Path(path).expanduser()
        if not p.exists():
            try:
                return cls.create(p)
            except KeyringError:  # created concurrently by another process
                pass
        return cls.load(p)

    def signer(self, key_id: bytes, account: str) -> Signer:
        """The signer of ``account`` on the ledger whose :func:`ledger_key_id` is ``key_id``."""
        info = b"account-key\x00" + key_id + account.encode("utf-8")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info)
        return Signer(hkdf.derive(self._master))

    def check_outside(self, run_dir: Path) -> None:
        """Refuse a keyring file stored inside ``run_dir`` (the secret would travel with it)."""
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            if self.path.resolve().is_relative_to(run_dir.resolve()):
                raise KeyringError(
                    f"{self.path}: the keyring must not be stored in the run directory {run_dir}"
                )
