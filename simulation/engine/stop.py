"""Clean stops on SIGTERM and SIGINT.

The first signal asks the run to stop: the world finishes (or abandons) the
client it is waiting for, seals the open ledger block and raises
``RunInterrupted``; the runner then says where the partial results are. A
second signal stops at once (``KeyboardInterrupt``); the ledger still
verifies, its last block open. Either way every process the run started is
stopped (``simulation.engine.watchdog``).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger("fedmarket.runner")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Set by the first signal; ``stop()`` is a ``should_stop`` check."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def reason(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "a stop request"

    def __call__(self) -> bool:
        return self.requested


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn SIGTERM/SIGINT into a ``StopRequest`` while the block runs (main thread only)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if request.requested:
            raise KeyboardInterrupt
        request.signum = signum
        log.warning(
            "%s: stopping after the current client and sealing the ledger (again to stop now)",
            signal.Signals(signum).name,
        )

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
