"""Waiting for a round's replies on Flower's ``Grid``, and judging each one.

The server trusts nothing a client sends: a reply may never come (the client
hangs), carry no arrays, carry metrics that are missing or not numbers, come
twice, or answer a task sent to another node. Each of these becomes a
``Reply`` with a rejection reason (``simulation.fl.protocol``), which the world
records on the ledger; the round goes on with the others. The wait is bounded
by the scenario's ``resources.round_timeout_s`` and ends early when a clean
stop is requested.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid

from simulation.errors import RunInterrupted
from simulation.fl.messages import ReplyMetrics
from simulation.fl.node_signing import SIGNATURE
from simulation.fl.protocol import reason

if TYPE_CHECKING:
    from simulation.world.records import Reply, Weights

log = logging.getLogger("fedmarket.server")

StopCheck = Callable[[], bool]

REQUIRED_METRICS = ("num-examples", "steps", "sample-rate")
"""Metrics every train reply must carry: the FedAvg weight and what the accountant composes."""

_CLIENT_REASON = re.compile(r"^client_error: raised [A-Za-z_][A-Za-z0-9_.]{0,80}$")


def never() -> bool:
    """A stop check that never asks to stop."""
    return False


@dataclass
class Collected:
    """Every reply that came back for a batch of sent messages, by message id."""

    sent: dict[str, Message]
    replies: dict[str, list[Message]] = field(default_factory=dict)
    stray: list[Message] = field(default_factory=list)  # answers to no message we sent
    undelivered: list[Message] = field(default_factory=list)


def push(grid: Grid, messages: Sequence[Message]) -> Collected:
    """Send ``messages``; what comes back is collected by ``wait_for_replies``."""
    ids = list(grid.push_messages(messages))
    out = Collected(sent={})
    for msg, mid in zip(messages, ids, strict=False):
        if mid:
            out.sent[str(mid)] = msg
        else:
            out.undelivered.append(msg)
    out.undelivered.extend(messages[len(ids) :])
    return out


def wait_for_replies(
    grid: Grid,
    sent: Sequence[Message] | Collected,
    *,
    timeout: float,
    should_stop: StopCheck = never,
) -> Collected:
    """Pull replies to ``sent`` (pushing it first if it is a list of messages) until
    each has one, ``timeout`` seconds pass, or ``should_stop()`` (``RunInterrupted``)."""
    out = sent if isinstance(sent, Collected) else push(grid, sent)
    deadline = time.monotonic() + timeout
    pause = 0.005
    while len(out.replies) < len(out.sent):
        if should_stop():
            raise RunInterrupted("stop requested")
        # Only what is still unanswered: for a message already answered the
        # SuperLink would return an error reply of its own.
        for reply in grid.pull_messages([m for m in out.sent if m not in out.replies]):
            rid = reply.metadata.reply_to_message_id
            if rid in out.sent:
                out.replies.setdefault(rid, []).append(reply)
            else:
                out.stray.append(reply)
        if len(out.replies) >= len(out.sent) or time.monotonic() >= deadline:
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    return out


def _metrics(reply: Message) -> ReplyMetrics | str:
    """The reply's metrics, or why they are unusable."""
    record = reply.content.get("metrics") if reply.has_content() else None
    if not isinstance(record, MetricRecord | ConfigRecord):  # a ConfigRecord may hold text
        return "no record 'metrics'"
    out: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{key!r} is not a number"
        out[key] = float(value)
    for key in REQUIRED_METRICS:
        if key not in out:
            return f"{key!r} missing"
        if not math.isfinite(out[key]) or out[key] < 0:
            return f"{key!r} = {out[key]!r}"
    if out["num-examples"] != int(out["num-examples"]) or out["sample-rate"] > 1:
        return "num-examples or sample-rate out of range"
    try:
        return ReplyMetrics.from_record(out)
    except ValueError as exc:
        return str(exc)


def _arrays(reply: Message) -> Weights | None:
    record = reply.content.get("arrays") if reply.has_content() else None
    if not isinstance(record, ArrayRecord) or not record:
        return None
    try:
        return {k: np.asarray(v.numpy()) for k, v in record.items()}
    except Exception:  # a malformed array is no array
        log.info("unreadable arrays in a reply", exc_info=True)
        return None


def judge_reply(client: int, reply: Message) -> Reply:
    """One train reply as a ``Reply``: its update and metrics, or a rejection."""
    from simulation.world.records import Reply

    if reply.has_error():
        text = str(reply.error.reason)
        log.info("client %d failed (code %s): %s", client, reply.error.code, text)
        ok = _CLIENT_REASON.match(text)
        code = text if ok else reason("client_error", f"flower error {int(reply.error.code)}")
        return Reply(client, None, None, error=code)
    weights = _arrays(reply)
    if weights is None:
        return Reply(client, None, None, error=reason("no_arrays"))
    metrics = _metrics(reply)
    if isinstance(metrics, str):
        return Reply(client, None, None, error=reason("bad_metrics", metrics))
    return Reply(client, weights, metrics, signature=_signature(reply))


def _signature(reply: Message) -> str | None:
    """The node's signature of its contribution (``None`` if it sent none; the
    ledger checks it, ``simulation.fl.node_signing``)."""
    record = reply.content.get(SIGNATURE)
    value = record.get(SIGNATURE) if isinstance(record, ConfigRecord) else None
    return value if isinstance(value, str) else None


def judge_round(
    collected: Collected,
    client_of_message: Callable[[Message], int],
    client_of_node: dict[int, int],
    timeout: float,
) -> list[Reply]:
    """A ``Reply`` for every task of the round (sorted by client)."""
    from simulation.world.records import Reply

    verdict: dict[int, Reply] = {}
    offenders: dict[int, str] = {}
    for msg in collected.undelivered:
        c = client_of_message(msg)
        verdict[c] = Reply(c, None, None, error=reason("timeout", "not delivered"))
    for mid, msg in collected.sent.items():
        c = client_of_message(msg)
        got = collected.replies.get(mid, [])
        own = [r for r in got if _answers(r, msg)]
        for r in got:
            if not _answers(r, msg):
                _foreign(r, client_of_node, offenders)
        if len(own) > 1:
            verdict[c] = Reply(
                c, None, None, error=reason("duplicate_reply", f"{len(own)} replies")
            )
        elif own:
            verdict[c] = judge_reply(c, own[0])
        else:
            verdict[c] = Reply(c, None, None, error=reason("timeout", f"no reply in {timeout:g} s"))
    for r in collected.stray:
        _foreign(r, client_of_node, offenders)
    for c, why in offenders.items():
        if c in verdict:  # only this round's clients are judged here
            verdict[c] = Reply(c, None, None, error=why)
    return [verdict[c] for c in sorted(verdict)]


def _answers(reply: Message, msg: Message) -> bool:
    """Is ``reply`` from the node ``msg`` went to (or the SuperLink's error on its behalf)?"""
    src = reply.metadata.src_node_id
    return src == msg.metadata.dst_node_id or (src == SUPERLINK_NODE_ID and reply.has_error())


def _foreign(reply: Message, client_of_node: dict[int, int], offenders: dict[int, str]) -> None:
    """A reply to a task that was not the sender's: the sender misbehaved."""
    sender = client_of_node.get(int(reply.metadata.src_node_id))
    log.info(
        "reply from node %s to message %s, which it was not sent",
        reply.metadata.src_node_id,
        reply.metadata.reply_to_message_id,
    )
    if sender is not None:
        offenders[sender] = reason("foreign_reply", "answered a task sent to another node")
