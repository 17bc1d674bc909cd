"""RFC 6962 / RFC 9162 Merkle tree: hashes, proofs and their verification.

Leaf hash ``SHA-256(0x00 || data)``, node hash ``SHA-256(0x01 || left || right)``,
the root of the empty tree is ``SHA-256("")``. The tree keeps every *perfect*
subtree hash by level (``levels[h][i]`` covers leaves ``[i*2^h, (i+1)*2^h)``),
so an append is amortised O(1) and an inclusion or consistency proof for any
historical tree size costs O(log n) lookups. Verification follows RFC 9162
§2.1.3.2 and §2.1.4.2 and is tested against the published vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from marketplace.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "MerkleTree",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only RFC 6962 tree over leaf hashes."""

    def __init__(self) -> None:
        self.levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self.levels[0])

    def append(self, leaf: bytes) -> None:
        """Append a leaf *hash* (use :func:`leaf_hash` on the raw data first)."""
        levels = self.levels
        levels[0].append(leaf)
        h = 0
        while len(levels[h]) % 2 == 0:
            row = levels[h]
            if h + 1 == len(levels):
                levels.append([])
            levels[h + 1].append(node_hash(row[-2], row[-1]))
            h += 1

    def extend(self, leaves: list[bytes]) -> None:
        """Append many leaf hashes at once (the same tree as appending them in turn).

        Level by level, only the pairs the new leaves complete are hashed, in
        one comprehension per level instead of a loop per leaf: the bulk
        append path adds a chunk of leaves at a time.
        """
        levels = self.levels
        row = levels[0]
        start = len(row)
        row.extend(leaves)
        h = 0
        sha256 = hashlib.sha256
        while True:
            # Level h+1 holds one node per complete pair of level h, so the
            # first pair that may be new starts at the even index below start.
            lo, hi = start & ~1, len(row) & ~1
            if lo >= hi:
                break
            if h + 1 == len(levels):
                levels.append([])
            parent = levels[h + 1]
            start = len(parent)
            parent.extend(
                [sha256(b"\x01" + row[i] + row[i + 1]).digest() for i in range(lo, hi, 2)]
            )
            row = parent
            h += 1

    def append_data(self, data: bytes) -> None:
        """Append raw leaf data."""
        self.append(leaf_hash(data))

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        return self.levels[0][index]

    def _subtree(self, start: int, size: int) -> bytes:
        if size & (size - 1) == 0:
            h = size.bit_length() - 1
            return self.levels[h][start >> h]
        k = _split(size)
        return node_hash(self._subtree(start, k), self._subtree(start + k, size - k))

    def _check_size(self, size: int | None) -> int:
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise ValueError(f"tree size {n} outside 0..{self.size}")
        return n

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the first ``size`` leaves (default: all)."""
        n = self._check_size(size)
        return EMPTY_ROOT if n == 0 else self._subtree(0, n)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 PATH(index, D[0:size]): audit path, leaf side first."""
        n = self._check_size(size)
        if not 0 <= index < n:
            raise ValueError(f"leaf index {index} outside tree of size {n}")
        path: list[bytes] = []
        start = 0
        # Walk down from the root, collecting siblings, then reverse.
        while n > 1:
            k = _split(n)
            if index < k:
                path.append(self._subtree(start + k, n - k))
                n = k
            else:
                path.append(self._subtree(start, k))
                start += k
                index -= k
                n -= k
        path.reverse()
        return path

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """RFC 9162 PROOF(size1, D[0:size2])."""
        n = self._check_size(size2)
        if not 0 <= size1 <= n:
            raise ValueError(f"old size {size1} outside 0..{n}")
        if size1 in (0, n):
            return []
        proof: list[bytes] = []
        m, start, complete = size1, 0, True
        while m != n:
            k = _split(n)
            if m <= k:
                proof.append(self._subtree(start + k, n - k))
                n = k
            else:
                proof.append(self._subtree(start, k))
                start += k
                m -= k
                n -= k
                complete = False
        if not complete:
            proof.append(self._subtree(start, n))
        proof.reverse()
        return proof


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} has {len(value)} bytes, expected {HASH_SIZE}")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Recompute the root from an inclusion proof (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} outside tree of size {size}")
    _check_hash(leaf, "leaf hash")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check_hash(p, "proof element")
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows leaf ``index`` under ``root``."""
    _check_hash(root, "root")
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise :class:`ProofError` unless tree ``size2`` extends tree ``size1``.

    RFC 9162 §2.1.4.2."""
    if not 0 <= size1 <= size2:
        raise ProofError(f"sizes {size1} -> {size2} go backwards")
    if size1 == size2:
        if proof:
            raise ProofError("proof must be empty for equal sizes")
        if root1 != root2:
            raise ProofError("equal sizes but different roots")
        return
    if size1 == 0:
        if proof:
            raise ProofError("proof must be empty from the empty tree")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    _check_hash(root1, "old root")
    _check_hash(root2, "new root")
    for p in proof:
        _check_hash(p, "proof element")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != root1:
        raise ProofError("consistency proof does not lead to the old root")
    if sr != root2:
        raise ProofError("consistency proof does not lead to the new root")
