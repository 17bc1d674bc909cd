"""ALIE against the authors' code (moranant/attacking_distributed_learning, DriftAttack).

Vectors: tests/fixtures/references/alie.json, made by alie_vectors.py in a scratch
environment. The reference crafts a *gradient* ``mean(g) − z·std(g)``; our colluders send
the weights of one SGD step, ``w_g − η·g_i``, so the crafted weights must be
``w_g − η·(mean(g) − z·std(g))`` — the same step the authors' server would take.
"""

from __future__ import annotations

import numpy as np
import pytest

from agents import ALIEAttack
from agents.coalition import ALIEParams
from tests.fixtures.references._reference import read_vectors

VECTORS = read_vectors("alie.json")["cases"]


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_crafted_weights_take_the_authors_crafted_step(case: dict) -> None:
    glob = np.asarray(case["global"])
    grads = np.asarray(case["grads"])
    lr = case["lr"]
    members = tuple(f"client-{i:03d}" for i in range(len(grads)))
    subs = {c: [glob - lr * g] for c, g in zip(members, grads, strict=True)}
    subs["client-999"] = [glob + 1.0]  # an honest client, passed through untouched
    attack = ALIEAttack(ALIEParams(members=members, z=case["z"]))

    out = attack.apply(1, subs, [glob], np.random.default_rng(0))

    expected = glob - lr * np.asarray(case["crafted_grad"])
    for member in members:
        np.testing.assert_allclose(out[member][0], expected, rtol=0, atol=1e-12)
    assert out["client-999"][0] is subs["client-999"][0]
