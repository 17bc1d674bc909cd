"""FedMarket marketplace: a standalone, auditable ledger-backed market library.

Pure Python + numpy + cryptography (no torch, no flwr). The simulation does all
economics through :class:`Market`; :func:`audit_ledger` re-verifies a ledger
file from scratch. Money is integer base units (``TOKEN`` per token).

Names are imported lazily (PEP 562): ``import marketplace.errors`` does not load the
ledger and libsodium. Type checkers see ordinary imports.
"""

from typing import TYPE_CHECKING

from marketplace._lazy import lazy_exports

if TYPE_CHECKING:
    from marketplace.audit import AuditReport, EntryCheck, audit_ledger
    from marketplace.canonical import JSON, canonical_bytes, canonical_json
    from marketplace.checkpoint import Checkpoint, SignedCheckpoint
    from marketplace.entries import Entry, SignedTransaction, Transaction
    from marketplace.errors import (
        AuthorizationError,
        DuplicateAccountError,
        EmissionError,
        InsufficientFunds,
        KeyringError,
        LedgerIdError,
        LedgerIntegrityError,
        LedgerNotFoundError,
        LicenseError,
        MarketplaceError,
        NonceError,
        ProofError,
        ReadOnlyLedgerError,
        RegistryError,
        SignatureError,
        StakeError,
        TransactionError,
        UnknownAccountError,
        VoteError,
    )
    from marketplace.keyring import Keyring
    from marketplace.keys import public_key_hex
    from marketplace.ledger import InclusionProof, LedgerSummary, Market, ledger_path
    from marketplace.merkle import MerkleTree, verify_consistency, verify_inclusion
    from marketplace.model_registry import artifact_sha256, search_versions
    from marketplace.privacy_audit import PrivacyAudit
    from marketplace.ratings import RATING_RULES, Ballot
    from marketplace.registry_base import Registry
    from marketplace.rounding import largest_remainder
    from marketplace.state import TREASURY, License, ModelVersion, Params, PriceTerms, Vote

_EXPORTS = {
    "AuditReport": "audit",
    "EntryCheck": "audit",
    "audit_ledger": "audit",
    "PrivacyAudit": "privacy_audit",
    "Checkpoint": "checkpoint",
    "SignedCheckpoint": "checkpoint",
    "JSON": "canonical",
    "canonical_bytes": "canonical",
    "canonical_json": "canonical",
    "Entry": "entries",
    "SignedTransaction": "entries",
    "Transaction": "entries",
    "AuthorizationError": "errors",
    "DuplicateAccountError": "errors",
    "EmissionError": "errors",
    "InsufficientFunds": "errors",
    "KeyringError": "errors",
    "LedgerIdError": "errors",
    "LedgerIntegrityError": "errors",
    "LedgerNotFoundError": "errors",
    "LicenseError": "errors",
    "MarketplaceError": "errors",
    "NonceError": "errors",
    "ProofError": "errors",
    "ReadOnlyLedgerError": "errors",
    "RegistryError": "errors",
    "SignatureError": "errors",
    "StakeError": "errors",
    "TransactionError": "errors",
    "UnknownAccountError": "errors",
    "VoteError": "errors",
    "Keyring": "keyring",
    "public_key_hex": "keys",
    "InclusionProof": "ledger",
    "LedgerSummary": "ledger",
    "Market": "ledger",
    "largest_remainder": "rounding",
    "ledger_path": "ledger",
    "MerkleTree": "merkle",
    "verify_consistency": "merkle",
    "verify_inclusion": "merkle",
    "artifact_sha256": "model_registry",
    "search_versions": "model_registry",
    "RATING_RULES": "ratings",
    "Ballot": "ratings",
    "Registry": "registry_base",
    "TREASURY": "state",
    "License": "state",
    "ModelVersion": "state",
    "Params": "state",
    "PriceTerms": "state",
    "Vote": "state",
}

TOKEN = 1_000_000
"""Base units per token."""

__all__ = [
    "JSON",
    "RATING_RULES",
    "TOKEN",
    "TREASURY",
    "AuditReport",
    "AuthorizationError",
    "Ballot",
    "Checkpoint",
    "DuplicateAccountError",
    "EmissionError",
    "Entry",
    "EntryCheck",
    "InclusionProof",
    "InsufficientFunds",
    "Keyring",
    "KeyringError",
    "LedgerIdError",
    "LedgerIntegrityError",
    "LedgerNotFoundError",
    "LedgerSummary",
    "License",
    "LicenseError",
    "Market",
    "MarketplaceError",
    "MerkleTree",
    "ModelVersion",
    "NonceError",
    "Params",
    "PriceTerms",
    "PrivacyAudit",
    "ProofError",
    "ReadOnlyLedgerError",
    "Registry",
    "RegistryError",
    "SignatureError",
    "SignedCheckpoint",
    "SignedTransaction",
    "StakeError",
    "Transaction",
    "TransactionError",
    "UnknownAccountError",
    "Vote",
    "VoteError",
    "artifact_sha256",
    "audit_ledger",
    "canonical_bytes",
    "canonical_json",
    "largest_remainder",
    "ledger_path",
    "public_key_hex",
    "search_versions",
    "verify_consistency",
    "verify_inclusion",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
