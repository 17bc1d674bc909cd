"""Each node signs its own contribution (``--engine deployment``), without Flower
processes: the ledger checks the node's signature against the account's registered
key and refuses another key, nonce or ledger id; a world whose "nodes" sign (the
in-process loop plus ``sign_contribution``, as the ClientApp calls it) writes the
same ledger as the server-signed run; and the audit names a tampered node signature."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from marketplace import Market
from marketplace.errors import SignatureError
from marketplace.keyring import Keyring
from marketplace.ledger import contribution_data, contribution_transaction
from simulation.engine.inprocess import in_process_transport
from simulation.fl.messages import ReplyMetrics
from simulation.fl.node_signing import SignRequest, sign_contribution
from simulation.fl.training import ClientTask
from simulation.scenario.load import load_scenario
from simulation.world.core import World
from simulation.world.records import Reply, Weights, WorldResult
from tests.keyring import KEYRING
from tests.marketplace.test_forgery import _cli, _forge, _rows

ROOT = Path(__file__).resolve().parents[2]
NOW = 3.5
OTHER = Keyring(hashlib.sha256(b"another participant's keyring").digest())

CONTRIBUTION = {
    "round": 1,
    "update_hash": "ab" * 32,
    "num_examples": 40,
    "epsilon": 1.25,
    "metrics": {"train-loss": 0.5},
}


@pytest.fixture
def market(tmp_path: Path) -> Market:
    m = Market.create(
        tmp_path / "ledger.db", seed=7, genesis={"scenario_hash": "node signing"}, keyring=KEYRING,
        clock=lambda: NOW,
    )  # fmt: skip
    m.register_participant("client-000", role="client")
    return m


def node_signature(
    m: Market, *, keyring: Keyring = KEYRING, nonce: int | None = None, ledger: str | None = None
) -> str:
    """What a node signs, given the request fields (each overridable, to be wrong)."""
    tx = contribution_transaction(
        client="client-000",
        nonce=m.state.next_nonce("client-000") if nonce is None else nonce,
        time=NOW,
        ledger=m.ledger_id if ledger is None else ledger,
        data=contribution_data(**CONTRIBUTION),  # type: ignore[arg-type]
    )
    return keyring.signer(bytes.fromhex(m.key_id), "client-000").sign(tx.signing_bytes()).hex()


def test_a_contribution_signed_by_the_nodes_own_key_is_appended(market: Market) -> None:
    sig = node_signature(market)
    entry = market.record_contribution(client="client-000", signature=sig, **CONTRIBUTION)  # type: ignore[arg-type]
    assert entry.signature == sig and entry.sender == "client-000"
    # Verified independently of our code, against the key registered on the ledger.
    key = VerifyKey(bytes.fromhex(market.public_key("client-000")))
    key.verify(entry.tx.signing_bytes(), bytes.fromhex(sig))  # raises if it does not verify


@pytest.mark.parametrize(
    "wrong",
    [
        {"keyring": OTHER},
        {"nonce": 5},
        {"ledger": "00" * 32},
    ],
    ids=["another key", "wrong nonce", "wrong ledger id"],
)
def test_a_contribution_signed_otherwise_is_refused_naming_it(
    market: Market, wrong: dict[str, object]
) -> None:
    size = market.size
    sig = node_signature(market, **wrong)  # type: ignore[arg-type]
    with pytest.raises(SignatureError) as exc:
        market.record_contribution(client="client-000", signature=sig, **CONTRIBUTION)  # type: ignore[arg-type]
    text = str(exc.value)
    assert "contribution by client-000 #1" in text
    assert "does not verify under client-000's registered key" in text
    assert market.size == size  # nothing appended
    # Independently: not a signature of what the ledger records, by the registered key.
    honest = node_signature(market)
    entry = market.record_contribution(client="client-000", signature=honest, **CONTRIBUTION)  # type: ignore[arg-type]
    with pytest.raises(BadSignatureError):
        key = VerifyKey(bytes.fromhex(market.public_key("client-000")))
        key.verify(entry.tx.signing_bytes(), bytes.fromhex(sig))


def signing_nodes(keyring_of: Callable[[ClientTask], Keyring]) -> Callable[..., list[Reply]]:
    """The in-process clients, each signing its reply as a deployed ClientApp does."""

    def transport(tasks: list[ClientTask], weights: Weights) -> list[Reply]:
        out = []
        for task, reply in zip(tasks, in_process_transport(tasks, weights), strict=True):
            assert task.sign is not None and reply.weights is not None
            assert isinstance(reply.metrics, ReplyMetrics)
            sig = sign_contribution(
                SignRequest.model_validate_json(task.sign.model_dump_json()),  # over the wire
                keyring=keyring_of(task),
                account=task.account,
                round_=task.round,
                weights=reply.weights,
                metrics=reply.metrics,
            )
            out.append(dataclasses.replace(reply, signature=sig))
        return out

    return transport


SMALL = [
    "clients.count=3",
    "rounds=2",
    "training.epochs=1",
    "model.name=logreg",
    "population=[{group: riders, count: 1, behaviour: free_rider}]",
]


def run(out: Path, transport: Callable[..., list[Reply]], node_signed: bool) -> WorldResult:
    scenario = load_scenario(ROOT / "scenarios" / "quickstart.yaml", SMALL)
    return World(scenario, out, transport, keyring=KEYRING, node_signed=node_signed).run()


def test_node_signed_dp_run_writes_the_server_signed_ledger_and_audits(tmp_path: Path) -> None:
    ref = run(tmp_path / "ref", in_process_transport, node_signed=False)
    signed = run(tmp_path / "signed", signing_nodes(lambda _t: KEYRING), node_signed=True)
    assert ref.ledger is not None and signed.ledger is not None
    # DP (quickstart) with a free-rider: both privacy claims are exercised.
    contributions = [e for e in _rows(tmp_path / "signed") if e.kind == "contribution"]
    assert {e.data["privacy"]["steps"] == 0 for e in contributions} == {True, False}  # type: ignore[index]
    assert signed.ledger.content_digest == ref.ledger.content_digest
    assert signed.head_hash == ref.head_hash  # Ed25519 is deterministic: same key, same bytes

    target = contributions[0]
    bad = ("0" if target.signature[0] != "0" else "1") + target.signature[1:]
    _forge(
        tmp_path / "signed",
        lambda e: e._replace(signature=bad) if e == target else e,
        lambda e: None,
    )
    code, out = _cli("ledger", "verify", tmp_path / "signed")
    assert code == 3
    assert f"entry #{target.seq}" in out and f"bad signature by {target.sender}" in out


def test_a_node_signing_with_another_key_has_its_update_refused(tmp_path: Path) -> None:
    rogue = signing_nodes(lambda t: OTHER if t.client_index == 1 else KEYRING)
    result = run(tmp_path / "rogue", rogue, node_signed=True)
    assert result.ledger is not None
    rejected = [e for e in _rows(tmp_path / "rogue") if e.kind == "contribution_rejected"]
    assert {(e.data["client"], e.data["round"]) for e in rejected} == {
        ("client-001", 1),
        ("client-001", 2),
    }
    assert all(str(e.data["reason"]).startswith("bad_signature") for e in rejected)
    code, out = _cli("ledger", "verify", tmp_path / "rogue")
    assert code == 0, out
