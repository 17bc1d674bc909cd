"""The public API of ``marketplace`` is pinned (httpx-style)."""

from __future__ import annotations

import inspect

import marketplace
from marketplace import Market

EXPECTED = [
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


def test_all_is_pinned() -> None:
    assert marketplace.__all__ == EXPECTED
    for name in EXPECTED:
        assert hasattr(marketplace, name), name


def test_token_unit() -> None:
    assert marketplace.TOKEN == 1_000_000


def test_error_tree() -> None:
    assert issubclass(marketplace.LedgerIntegrityError, marketplace.MarketplaceError)
    for err in (
        marketplace.SignatureError,
        marketplace.NonceError,
        marketplace.InsufficientFunds,
        marketplace.LicenseError,
        marketplace.VoteError,
    ):
        assert issubclass(err, marketplace.TransactionError)
    doc = inspect.getdoc(marketplace.errors) or ""
    assert doc.splitlines()[2].strip() == "MarketplaceError"


def test_facade_contract_signatures() -> None:
    """The signatures promised in docs/ARCHITECTURE.md."""
    sig = inspect.signature
    assert list(sig(Market.create).parameters) == [
        "path",
        "seed",
        "genesis",
        "keyring",
        "run_id",
        "clock",
        "block_size",
    ]
    assert list(sig(Market.open).parameters) == ["path", "readonly", "clock", "keyring"]
    assert list(sig(Market.register_participant).parameters) == ["self", "account", "role", "meta"]
    assert list(sig(Market.mint).parameters) == ["self", "to", "amount", "reason"]
    assert list(sig(Market.transfer).parameters) == ["self", "sender", "to", "amount", "memo"]
    assert list(sig(Market.stake).parameters) == ["self", "account", "amount"]
    assert list(sig(Market.slash).parameters) == ["self", "account", "amount", "reason"]
    assert list(sig(Market.record_contribution).parameters) == [
        "self",
        "round",
        "client",
        "update_hash",
        "num_examples",
        "epsilon",
        "metrics",
        "privacy",
        "signature",
    ]
    assert list(sig(Market.reject_contribution).parameters) == [
        "self",
        "round",
        "client",
        "reason",
        "epsilon",
        "privacy",
    ]
    assert list(sig(Market.record).parameters) == ["self", "kind", "data"]
    assert list(sig(Market.reward).parameters) == ["self", "round", "allocations", "mechanism"]
    assert list(sig(Market.register_model_version).parameters)[:6] == [
        "self",
        "round",
        "parent",
        "artifact_sha256",
        "metrics",
        "contributors",
    ]
    assert isinstance(Market.head_hash, property)
