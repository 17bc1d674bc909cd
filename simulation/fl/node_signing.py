"""A deployed node signs its own contribution entry with its own account key.

On ``--engine deployment`` the ServerApp keeps the ledger but does not sign a
participant's ``contribution``: the node does, in its ClientApp, and the
server appends the node's signature after checking it against the account's
registered key (``Market.record_contribution(..., signature=...)``). The node
signs exactly the transaction the ledger records
(``marketplace.ledger.contribution_transaction``), so its entry is the one any
engine writes: the content digest, and under the same keyring even the head
(Ed25519 signatures are deterministic), equal the in-process run's.

What the node cannot know on its own comes in its task, *before* it trains, as
a :class:`SignRequest`: the ledger id (genesis hash) and key id, its account's
next nonce and the ledger's clock time of the round (the simulated clock does
not move between dispatch and recording), and in a DP run the cumulative ε
the server's accountant would record for each step the node may take (as
planned, or none when it does not train). The node signs the claim that
matches what it did, or refuses the task. Everything else it signs (round,
the hash of the weights it sends, example count, local metrics) it computed
itself. It derives its key from its own keyring file
(``Keyring.signer(key_id, account)``): the master secret never travels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from marketplace.keyring import Keyring
from marketplace.ledger import contribution_data, contribution_transaction
from simulation.fl.weights import arrays_sha256

__all__ = ["SIGNATURE", "PrivacyClaim", "SignRequest", "sign_contribution"]

SIGNATURE = "signature"
"""The reply's ConfigRecord (and its key) holding the node's hex signature."""


class Reported(Protocol):
    """What a node reports with its weights (``simulation.fl.messages.ReplyMetrics``,
    not imported: ``ClientTask`` holds a :class:`SignRequest`, and messages import
    the training module)."""

    num_examples: int
    steps: int
    sample_rate: float

    def ledger_metrics(self) -> dict[str, float]: ...


class PrivacyClaim(BaseModel):
    """The ε and privacy record the server's accountant records for one possible step."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    epsilon: float
    privacy: dict[str, Any]


class SignRequest(BaseModel):
    """What a node needs, besides its own results, to sign its contribution entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ledger: str
    """The ledger id (genesis hash) the signature is bound to."""
    key_id: str
    """Hex id account keys on this ledger are derived under (public)."""
    nonce: int
    """The account's next nonce on the ledger."""
    time: float
    """The ledger's (simulated) clock when the round's contributions are recorded."""
    claims: tuple[PrivacyClaim, ...] = ()
    """DP runs: the (ε, privacy record) per possible step; empty without DP."""

    def claim_for(self, metrics: Reported) -> tuple[float | None, dict[str, Any] | None]:
        """The ε and privacy record matching the step the node took (``ValueError``
        if none does: the server would record another ε than the node signs)."""
        if not self.claims:
            return None, None
        steps = metrics.steps if metrics.steps > 0 else 0
        rate = metrics.sample_rate if steps else 0.0
        for claim in self.claims:
            if claim.privacy.get("steps") == steps and claim.privacy.get("sample_rate") == rate:
                return claim.epsilon, claim.privacy
        raise ValueError(
            f"took {steps} DP-SGD steps at q={rate}, a step the server's privacy plan does not name"
        )


def sign_contribution(
    request: SignRequest,
    *,
    keyring: Keyring,
    account: str,
    round_: int,
    weights: Mapping[str, np.ndarray],
    metrics: Reported,
) -> str:
    """The hex signature, by ``account``'s key on the requested ledger, of the
    contribution entry of these ``weights`` and ``metrics``."""
    epsilon, privacy = request.claim_for(metrics)
    data = contribution_data(
        round=round_,
        update_hash=arrays_sha256(weights),
        num_examples=metrics.num_examples,
        epsilon=epsilon,
        metrics=metrics.ledger_metrics(),
        privacy=privacy,
    )
    tx = contribution_transaction(
        client=account, nonce=request.nonce, time=request.time, ledger=request.ledger, data=data
    )
    signer = keyring.signer(bytes.fromhex(request.key_id), account)
    return signer.sign(tx.signing_bytes()).hex()
