"""The seed tree: named, stable, independent streams."""

from __future__ import annotations

import numpy as np

from simulation.rng import SeedTree


def test_same_name_same_stream_other_name_other_stream() -> None:
    t = SeedTree(7)
    a = t.numpy("client", 3).random(5)
    assert np.array_equal(a, SeedTree(7).numpy("client", 3).random(5))
    assert not np.array_equal(a, t.numpy("client", 4).random(5))
    assert not np.array_equal(a, SeedTree(8).numpy("client", 3).random(5))


def test_children_do_not_depend_on_draw_order() -> None:
    t = SeedTree(1)
    t.numpy("data").random(1000)  # drawing elsewhere must not shift other streams
    assert t.integer("x") == SeedTree(1).integer("x")
    assert t.child("a").integer("b") == SeedTree(1).integer("a", "b")


def test_torch_generator_is_seeded() -> None:
    g1, g2 = SeedTree(3).torch("init"), SeedTree(3).torch("init")
    import torch

    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
