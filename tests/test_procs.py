"""The /proc helpers the process tests rely on: a zombie counts as stopped, a
process is found by its group and by an inherited environment marker, and
``wait_gone`` names what survives."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid

from tests.procs import alive, group_pids, identity, record, survivors, wait_gone, with_environment


def test_a_killed_child_is_stopped_before_it_is_reaped() -> None:
    marker = uuid.uuid4().hex
    env = {**os.environ, "FEDMARKET_TEST_PROCS": marker}
    child = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    try:
        seen: set[tuple[int, str]] = set()
        assert record([child.pid], seen) == ["sleep 60 "]
        assert alive(child.pid) and identity(child.pid) in seen
        assert group_pids(child.pid) == {child.pid}  # its own group: start_new_session
        assert with_environment("FEDMARKET_TEST_PROCS", marker) == [child.pid]
        assert wait_gone(seen, 0.1) == [f"{child.pid}: sleep 60 "]
        os.kill(child.pid, signal.SIGKILL)
        assert wait_gone(seen, 10.0) == []  # a zombie now: not yet reaped
        assert identity(child.pid) is not None and not alive(child.pid)
        assert group_pids(child.pid) == set()
    finally:
        child.kill()
        child.wait()
    assert identity(child.pid) is None and survivors(seen) == []
