"""The one entry encoder equals canonical JSON of each dict byte for byte."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.canonical import canonical_bytes, canonical_json
from marketplace.entries import Entry, Transaction, content_data

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
hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(["transfer", "checkpoint", "contribution"]) | st.text(min_size=1),
    sender=st.text(min_size=1) | st.just('a","seq":1,"time":2.0}'),
    nonce=st.integers(0, 2**40),
    time=st.floats(min_value=0, max_value=1e12, allow_nan=False),
    # member names of the record itself inside data, and quotes and commas in
    # strings, must not confuse the audit's cutting of the record into its texts
    data=st.dictionaries(
        st.sampled_from(["root", "note_signature", "hash", "key", "time", ',"seq":']) | st.text(),
        json_values | st.dictionaries(st.sampled_from(["hash", "sender"]), json_values),
    ),
    seq=st.integers(0, 2**40),
    ledger=st.none() | hex64 | st.text(),
    key=st.none() | hex64 | st.text(),
    signature=hex64 | st.text(),
)
def test_encode_matches_canonical(
    kind: str,
    sender: str,
    nonce: int,
    time: float,
    data: dict[str, object],
    seq: int,
    ledger: str | None,
    key: str | None,
    signature: str,
) -> None:
    tx = Transaction(kind, sender, nonce, time, data, ledger, key)  # type: ignore[arg-type]
    e = Entry.build(seq=seq, block=seq // 7, tx=tx, signature=signature, prev_hash="cd" * 32)
    enc = e.encode()
    signed = {"kind": kind, "sender": sender, "nonce": nonce, "time": time, "data": data}
    assert enc.signing == canonical_bytes({**signed, "ledger": ledger, "key": key})
    assert enc.signing == tx.signing_bytes()
    assert enc.body == canonical_bytes(e.body())
    assert enc.record == e.record() and enc.hash == e.hash
    assert enc.content == e.content()
    keyed = {"root", "note_signature"} if kind == "checkpoint" else set()
    content = {k: v for k, v in data.items() if k not in keyed}
    assert enc.content == canonical_json(
        {"seq": seq, "block": seq // 7, "kind": kind, "sender": sender, "nonce": nonce}
        | {"time": time, "data": content}
    )
    assert content_data(kind, data) == content
    assert Entry.from_record(enc.record) == e
