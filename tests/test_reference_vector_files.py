"""The scripts in tests/fixtures/references/ store their vectors through one helper
(``write_reference_vectors``): it names the script that made them from the script's own
path, so a copied script cannot claim another's vectors, and it writes every stored
file byte for byte as the scripts wrote it by hand before (checked here on the stored
outputs, since the references themselves run only in a scratch environment)."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.references._reference import HERE, encode_vectors, reference_payload

STORED = sorted(p.name for p in HERE.glob("*.json") if '"generator"' in p.read_text("utf-8"))


def test_every_vector_file_with_a_generator_is_covered() -> None:
    assert STORED == [
        "byzfl.json",
        "cgsv.json",
        "flce.json",
        "foolsgold.json",
        "gtg.json",
        "pydvl.json",
        "yuma.json",
    ]


@pytest.mark.parametrize("name", STORED)
def test_the_helper_rewrites_each_stored_vector_file_byte_for_byte(name: str) -> None:
    text = (HERE / name).read_text(encoding="utf-8")
    stored = json.loads(text)
    script = HERE / name.replace(".json", "_vectors.py")
    source = script.read_text(encoding="utf-8")
    assert "write_reference_vectors(" in source and '"generator"' not in source
    data = {k: v for k, v in stored.items() if k not in ("reference", "generator")}
    payload = reference_payload(str(script), stored["reference"], **data)
    assert payload["generator"] == f"tests/fixtures/references/{script.name}"
    compact = text.count("\n") == 1
    assert encode_vectors(payload, compact=compact) == text
