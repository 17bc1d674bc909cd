"""The fast entry encoder equals canonical JSON byte for byte."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.canonical import canonical_bytes
from marketplace.entries import Entry, Transaction

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.text(min_size=1),
    sender=st.text(min_size=1),
    nonce=st.integers(0, 2**40),
    time=st.floats(min_value=0, max_value=1e12, allow_nan=False),
    data=st.dictionaries(st.text(), json_values, max_size=4),
    seq=st.integers(0, 2**40),
)
def test_encode_matches_canonical(
    kind: str, sender: str, nonce: int, time: float, data: dict[str, object], seq: int
) -> None:
    tx = Transaction(kind, sender, nonce, time, data)  # type: ignore[arg-type]
    e = Entry.build(seq=seq, block=seq // 7, tx=tx, signature="ab" * 64, prev_hash="cd" * 32)
    enc = e.encode()
    assert enc.signing == canonical_bytes(
        {"kind": kind, "sender": sender, "nonce": nonce, "time": time, "data": data}
    )
    assert enc.body == canonical_bytes(e.body())
    assert enc.record == e.record()
    assert Entry.from_record(enc.record) == e
