"""One seed, one tree of random generators.

Every source of randomness in a run is a named child of the scenario seed, so a
component's stream does not shift when another component draws more or fewer
numbers. Names are hashed (not enumerated in call order), which keeps streams
stable when code is added or reordered.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def _name_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")


class SeedTree:
    """A node in the seed tree: ``SeedTree(42).child("client-003").numpy("round", 4)``."""

    __slots__ = ("_path", "_seed")

    def __init__(self, seed: int, _path: tuple[int, ...] = ()) -> None:
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self._seed = int(seed)
        self._path = _path

    @property
    def seed(self) -> int:
        """The root seed of the tree."""
        return self._seed

    def child(self, *names: str | int) -> SeedTree:
        """A sub-tree named by ``names`` (strings or integers such as a round)."""
        keys = tuple(_name_key(str(n)) for n in names)
        return SeedTree(self._seed, self._path + keys)

    def sequence(self) -> np.random.SeedSequence:
        """The numpy ``SeedSequence`` at this node."""
        return np.random.SeedSequence(entropy=self._seed, spawn_key=self._path)

    def numpy(self, *names: str | int) -> np.random.Generator:
        """A fresh numpy ``Generator`` for the child named by ``names``."""
        return np.random.default_rng(self.child(*names).sequence())

    def integer(self, *names: str | int) -> int:
        """A 63-bit integer seed for libraries that take one (sklearn, Opacus, torch)."""
        state = self.child(*names).sequence().generate_state(2, dtype=np.uint32)
        return (int(state[0]) << 31) ^ int(state[1])

    def torch(self, *names: str | int) -> torch.Generator:
        """A seeded CPU ``torch.Generator`` for the child named by ``names``."""
        gen = torch.Generator(device="cpu")
        gen.manual_seed(self.integer(*names))
        return gen
