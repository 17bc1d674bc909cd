"""Rejection reasons: the short, stable codes the server signs into the ledger.

A ``contribution_rejected`` entry is signed and shared, and the same scenario
and seed must give the same ledger head on every engine and host. So a reason
is a code from a closed vocabulary plus a bounded message built only from
facts that are the same everywhere (tensor names, shapes, the exception's
class name, scenario values). Whatever is host-specific (tracebacks, pids,
addresses, Ray's colour codes) goes to the log, never into a reason.

``reason(code, message)`` is the one way to build one; the ClientApp uses
``client_error`` for an exception in training so that both engines sign the
same text.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = [
    "MAX_MESSAGE",
    "RejectionCode",
    "bounded",
    "client_error",
    "reason",
]

RejectionCode = Literal[
    # the update itself (server-side screening)
    "wrong_tensors",
    "wrong_shape",
    "wrong_dtype",
    "non_finite",
    "norm_exceeded",
    "straggler",
    # the protocol (what came back over the Grid, or did not)
    "client_error",
    "timeout",
    "no_arrays",
    "bad_metrics",
    "duplicate_reply",
    "foreign_reply",
    "no_update",
    # a deployed node's own signature of its contribution
    "bad_signature",
]

MAX_MESSAGE = 160
"""Characters of message after the code; longer ones are cut with an ellipsis."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,80}$")


def bounded(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line, without terminal escapes, at most ``limit`` characters."""
    text = _CONTROL.sub(" ", _ANSI.sub("", text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reason(code: RejectionCode, message: str = "") -> str:
    """The ledger text of a rejection: ``code`` or ``code: message`` (bounded)."""
    message = bounded(message)
    return f"{code}: {message}" if message else code


def client_error(exc: BaseException) -> str:
    """The reason for a client whose training raised ``exc``: its class name only.

    The exception's text may name paths, addresses or process ids, so it goes to
    the log; the class name is the same on every host and engine.
    """
    name = type(exc).__name__
    return reason("client_error", f"raised {name}" if _IDENTIFIER.match(name) else "raised")
