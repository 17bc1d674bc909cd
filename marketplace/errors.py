"""Typed errors of the marketplace library; the whole hierarchy::

    MarketplaceError
    ├── LedgerIntegrityError        the audit found a bad entry (names its seq)
    ├── LedgerNotFoundError         no ledger.db where one was expected
    ├── ReadOnlyLedgerError         a write on a ledger opened read-only
    ├── KeyringError                no keyring to sign with, or not this ledger's keyring
    ├── ProofError                  a Merkle proof or a signed checkpoint does not verify
    └── TransactionError            a transaction was refused (names account + tx)
        ├── SignatureError          signature does not verify under the account key
        ├── LedgerIdError           signed for another ledger ("ledger-id mismatch")
        ├── NonceError              reused or skipped per-signer nonce ("nonce reused")
        ├── UnknownAccountError     sender or recipient is not registered
        ├── DuplicateAccountError   registering an account id twice
        ├── AuthorizationError      a kind only the treasury may sign
        ├── InsufficientFunds       an overdraft (balance would go below zero)
        ├── StakeError              not enough stake, or unbonding not matured
        ├── EmissionError           minting beyond the emission schedule
        ├── LicenseError            unknown, expired or exhausted license
        ├── VoteError               ineligible, duplicate or out-of-range vote
        └── RegistryError           unknown model version, bad contributor shares

Why typed: the simulation and the CLI must tell "the ledger was tampered
with" (exit 3) apart from "this transfer was refused" (exit 1) without parsing
messages, and every refusal must say which account and which transaction.
"""

from __future__ import annotations

__all__ = [
    "AuthorizationError",
    "DuplicateAccountError",
    "EmissionError",
    "InsufficientFunds",
    "KeyringError",
    "LedgerIdError",
    "LedgerIntegrityError",
    "LedgerNotFoundError",
    "LicenseError",
    "MarketplaceError",
    "NonceError",
    "ProofError",
    "ReadOnlyLedgerError",
    "RegistryError",
    "SignatureError",
    "StakeError",
    "TransactionError",
    "UnknownAccountError",
    "VoteError",
]


class MarketplaceError(Exception):
    """Base of every error the marketplace library raises on purpose."""


class LedgerIntegrityError(MarketplaceError):
    """Raised by the audit when an entry is edited, missing, reordered or invalid.

    ``seq`` is the sequence number of the *first* bad entry.
    """

    def __init__(self, seq: int, reason: str) -> None:
        self.seq = seq
        self.reason = reason
        super().__init__(f"entry #{seq}: {reason}")


class LedgerNotFoundError(MarketplaceError):
    """Raised when a run directory or path holds no ``ledger.db``."""


class ReadOnlyLedgerError(MarketplaceError):
    """Raised when a ledger opened with ``readonly=True`` is asked to write."""


class KeyringError(MarketplaceError):
    """Raised when a ledger must be signed but no keyring was given, the keyring
    file is missing or malformed, or the keyring does not hold this ledger's keys."""


class ProofError(MarketplaceError):
    """Raised when a Merkle inclusion or consistency proof, or a signed checkpoint
    (its format, origin or signature), does not verify."""


class TransactionError(MarketplaceError):
    """A transaction the ledger refused; nothing was appended.

    ``account`` is the account at fault and ``tx`` a short description of the
    transaction (kind, sender and nonce) so a log line identifies it.
    """

    def __init__(self, reason: str, *, account: str, tx: str) -> None:
        self.account = account
        self.tx = tx
        self.reason = reason
        super().__init__(f"{tx}: {reason} (account {account!r})")


class SignatureError(TransactionError):
    """Raised when a signature does not verify under the account's public key."""


class LedgerIdError(TransactionError):
    """Raised when a transaction was signed for another ledger (its ledger id is not
    this ledger's genesis hash): a replay across ledgers."""


class NonceError(TransactionError):
    """Raised when a transaction's nonce is reused (a replay) or skipped (too high)."""


class UnknownAccountError(TransactionError):
    """Raised when the sender or the recipient of a transaction is not registered."""


class DuplicateAccountError(TransactionError):
    """Raised when an account id is registered a second time."""


class AuthorizationError(TransactionError):
    """Raised when an account signs a kind only the platform treasury may sign."""


class InsufficientFunds(TransactionError):
    """Raised when a debit would take a balance below zero (overdraft)."""


class StakeError(TransactionError):
    """Raised on too little stake, unstaking more than staked, or early withdrawal."""


class EmissionError(TransactionError):
    """Raised when minting exceeds the emission schedule or the supply cap."""


class LicenseError(TransactionError):
    """Raised for an unknown, expired or exhausted license, or an unknown license type."""


class VoteError(TransactionError):
    """Raised for an out-of-range score, a second vote, or an ineligible voter."""


class RegistryError(TransactionError):
    """Raised for an unknown model version or invalid contributor shares."""
