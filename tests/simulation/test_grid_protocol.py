"""Clients that break the protocol, on a fake Flower ``Grid``: each is rejected and
recorded on the ledger with its reason, and the round goes on without it.

The fake grid answers train messages by really training (``run_client_task``),
except for the nodes told to misbehave; the ServerApp's ``serve`` drives a real
world over it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)

from marketplace import Market, audit_ledger
from simulation.engine.replies import judge_round, wait_for_replies
from simulation.engine.server_app import serve
from simulation.errors import RunInterrupted
from simulation.fl.training import ClientTask, run_client_task
from simulation.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parents[2]
NODE0 = 100  # node id of partition 0; partition i is node NODE0 + i


@pytest.fixture(autouse=True)
def run_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps each Message with the running task's run id; give the process one."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


Behaviour = Callable[[Message], list[Message]]


def honest(msg: Message) -> list[Message]:
    task = ClientTask.model_validate_json(str(msg.content["config"]["task"]))
    arrays = msg.content["arrays"]
    assert isinstance(arrays, ArrayRecord)
    res = run_client_task(task, {k: v.numpy() for k, v in arrays.items()})
    content = RecordDict(
        {
            "arrays": ArrayRecord(
                {k: Array(np.ascontiguousarray(v)) for k, v in res.weights.items()}
            ),
            "metrics": MetricRecord(
                {
                    "num-examples": res.num_examples,
                    "steps": res.steps,
                    "sample-rate": res.sample_rate,
                }
            ),
        }
    )
    return [Message(content, reply_to=msg)]


def hangs(msg: Message) -> list[Message]:
    return []


def no_arrays(msg: Message) -> list[Message]:
    (reply,) = honest(msg)
    return [Message(RecordDict({"metrics": reply.content["metrics"]}), reply_to=msg)]


def non_numeric_metrics(msg: Message) -> list[Message]:
    (reply,) = honest(msg)
    metrics = ConfigRecord({"num-examples": "many", "steps": 3, "sample-rate": 0.1})
    return [
        Message(RecordDict({"arrays": reply.content["arrays"], "metrics": metrics}), reply_to=msg)
    ]


def missing_metrics(msg: Message) -> list[Message]:
    (reply,) = honest(msg)
    metrics = MetricRecord({"steps": 3, "sample-rate": 0.1})
    return [
        Message(RecordDict({"arrays": reply.content["arrays"], "metrics": metrics}), reply_to=msg)
    ]


def replies_twice(msg: Message) -> list[Message]:
    return honest(msg) + honest(msg)


def raises(msg: Message) -> list[Message]:
    # What Flower itself sends for a ClientApp that raised: Ray's traceback, pid, address.
    reason = "\x1b[36mray::ClientAppActor.run()\x1b[39m (pid=4242, ip=10.1.2.3, actor_id=ab12)"
    return [Message(Error(code=2, reason=reason), reply_to=msg)]


class FakeGrid:
    """Nodes ``NODE0 + i``; ``behaviours[i]`` answers node i's train messages (default
    honest); ``impostor`` maps a node to the node whose messages it answers instead."""

    def __init__(
        self,
        n: int,
        behaviours: dict[int, Behaviour] | None = None,
        impostor: dict[int, int] | None = None,
    ) -> None:
        self.n = n
        self.behaviours = behaviours or {}
        self.impostor = impostor or {}
        self.inbox: dict[str, Message] = {}
        self.outbox: list[Message] = []
        self.pushed = 0

    def get_node_ids(self) -> list[int]:
        return [NODE0 + i for i in range(self.n)]

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids, batch = [], list(messages)
        for msg in batch:
            self.pushed += 1
            mid = f"m{self.pushed}"
            msg.metadata.__dict__["_message_id"] = mid
            self.inbox[mid] = msg
            ids.append(mid)
        for msg in batch:
            self.outbox.extend(self._answer(msg))
        return ids

    def _answer(self, msg: Message) -> list[Message]:
        node = msg.metadata.dst_node_id
        if msg.metadata.message_type == "query":
            content = RecordDict({"config": ConfigRecord({"partition-id": node - NODE0})})
            return [Message(content, reply_to=msg)]
        if node in self.impostor:
            return []  # its message is answered by the impostor (below), not by itself
        replies = self.behaviours.get(node - NODE0, honest)(msg)
        for victim, liar in self.impostor.items():
            if liar == node:
                other = next(
                    (m for m in self.inbox.values() if m.metadata.dst_node_id == victim), None
                )
                if other is not None:
                    (forged,) = honest(other)
                    forged.metadata.__dict__["_src_node_id"] = liar
                    replies.append(forged)
        return replies

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        wanted = set(message_ids)
        out = [m for m in self.outbox if m.metadata.reply_to_message_id in wanted]
        self.outbox = [m for m in self.outbox if m not in out]
        for m in out:
            self.inbox.pop(m.metadata.reply_to_message_id, None)
        return out


def scenario(timeout: float = 30.0):  # type: ignore[no-untyped-def]
    return load_scenario(
        ROOT / "scenarios" / "quickstart.yaml",
        [
            "clients.count=6",
            "rounds=2",
            "privacy={mode: none}",
            "model.name=logreg",
            f"resources.round_timeout_s={timeout}",
        ],
    )


def rejections(run_dir: Path) -> dict[tuple[int, str], str]:
    with Market.open(run_dir) as m:
        return {
            (int(e.data["round"]), str(e.data["client"])): str(e.data["reason"])
            for e in m.entries()
            if e.kind == "contribution_rejected"
        }


def test_each_protocol_fault_is_rejected_with_its_reason_and_the_rounds_go_on(
    tmp_path: Path,
) -> None:
    grid = FakeGrid(
        6,
        behaviours={
            0: no_arrays,
            1: non_numeric_metrics,
            2: missing_metrics,
            3: replies_twice,
            4: raises,
        },
    )
    result = serve(grid, scenario(), tmp_path)  # type: ignore[arg-type]
    got = rejections(tmp_path)
    for r in (1, 2):
        assert got[(r, "client-000")] == "no_arrays"
        assert got[(r, "client-001")] == "bad_metrics: 'num-examples' is not a number"
        assert got[(r, "client-002")] == "bad_metrics: 'num-examples' missing"
        assert got[(r, "client-003")] == "duplicate_reply: 2 replies"
        # Flower's own error text (colour codes, pid, address) stays out of the ledger.
        assert got[(r, "client-004")] == "client_error: flower error 2"
    assert len(got) == 10
    assert [rec.accepted for rec in result.rounds[1:]] == [1, 1]  # client-005 goes on alone
    assert audit_ledger(tmp_path).head_hash == result.head_hash


def test_a_hung_client_is_rejected_after_the_round_timeout(tmp_path: Path) -> None:
    grid = FakeGrid(6, behaviours={2: hangs})
    started = time.monotonic()
    result = serve(grid, scenario(timeout=0.3), tmp_path)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    got = rejections(tmp_path)
    assert got == {
        (1, "client-002"): "timeout: no reply in 0.3 s",
        (2, "client-002"): "timeout: no reply in 0.3 s",
    }
    assert [rec.accepted for rec in result.rounds[1:]] == [5, 5]
    assert elapsed >= 0.6  # waited the timeout in each round ...
    assert elapsed < 60  # ... and not forever


def test_a_reply_for_another_nodes_task_rejects_the_sender(tmp_path: Path) -> None:
    # Node 1 answers node 4's task as well as its own; node 4 itself stays silent.
    grid = FakeGrid(6, impostor={NODE0 + 4: NODE0 + 1})
    serve(grid, scenario(timeout=0.3), tmp_path)  # type: ignore[arg-type]
    got = rejections(tmp_path)
    for r in (1, 2):
        assert got[(r, "client-001")] == "foreign_reply: answered a task sent to another node"
        assert got[(r, "client-004")] == "timeout: no reply in 0.3 s"
    assert len(got) == 4


def test_a_stop_request_ends_the_wait_at_once() -> None:
    grid = FakeGrid(2, behaviours={0: hangs, 1: hangs})
    msg = Message(RecordDict({}), dst_node_id=NODE0, message_type="train")
    started = time.monotonic()
    calls = iter([False, False, True])
    with pytest.raises(RunInterrupted):
        wait_for_replies(grid, [msg], timeout=60.0, should_stop=lambda: next(calls))  # type: ignore[arg-type]
    assert time.monotonic() - started < 5.0


def test_a_message_that_could_not_be_pushed_is_a_timeout() -> None:
    class Refusing(FakeGrid):
        def push_messages(self, messages: Iterable[Message]) -> list[str]:
            return [""]

    msg = Message(RecordDict({}), dst_node_id=NODE0, message_type="train")
    got = wait_for_replies(Refusing(1), [msg], timeout=0.1)  # type: ignore[arg-type]
    (reply,) = judge_round(got, lambda m: 0, {NODE0: 0}, 0.1)
    assert reply.error == "timeout: not delivered"
