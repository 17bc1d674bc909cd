"""RFC 6962 Merkle tree against the published vectors (transparency-dev/merkle).

Vectors copied from transparency-dev/merkle ``testonly/constants.go`` and
``proof/verify_test.go``; the mutated negatives follow ``corruptInclusionProof``
and ``corruptConsistencyProof`` there.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.errors import ProofError
from marketplace.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)


def h(s: str) -> bytes:
    return bytes.fromhex(s)


LEAVES = [
    h(x)
    for x in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
ROOTS = [
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
# (leaf number, 1-based as in verify_test.go, tree size, proof)
INCLUSION = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (1, 1, []),
]
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    t = MerkleTree()
    for leaf in LEAVES:
        t.append_data(leaf)
    return t


def test_empty_root() -> None:
    assert EMPTY_ROOT.hex() == EMPTY
    assert MerkleTree().root().hex() == EMPTY


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_for_sizes_1_to_8(tree: MerkleTree, size: int) -> None:
    assert tree.root(size) == ROOTS[size - 1]


def test_roots_incremental() -> None:
    t = MerkleTree()
    for i, leaf in enumerate(LEAVES):
        t.append_data(leaf)
        assert t.root() == ROOTS[i]


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION)
def test_inclusion_vectors(tree: MerkleTree, leaf: int, size: int, proof: list[str]) -> None:
    index = leaf - 1
    path = [h(p) for p in proof]
    assert tree.inclusion_proof(index, size) == path
    lh = leaf_hash(LEAVES[index])
    root = ROOTS[size - 1]
    assert root_from_inclusion_proof(index, size, lh, path) == root
    verify_inclusion(index, size, lh, path, root)


def _corrupt_inclusion(
    index: int, size: int, proof: list[bytes], root: bytes, lh: bytes
) -> list[tuple[int, int, bytes, list[bytes], bytes, str]]:
    probes = [
        (index - 1, size, lh, proof, root, "leafIndex - 1"),
        (index + 1, size, lh, proof, root, "leafIndex + 1"),
        (index ^ 2, size, lh, proof, root, "leafIndex ^ 2"),
        (index, size * 2, lh, proof, root, "treeSize * 2"),
        (index, size // 2, lh, proof, root, "treeSize / 2"),
        (index, size, b"WrongLeaf", proof, root, "wrong leaf"),
        (index, size, lh, proof, EMPTY_ROOT, "empty root"),
        (index, size, lh, proof, SOME_HASH, "random root"),
        (index, size, lh, [*proof, b""], root, "trailing garbage"),
        (index, size, lh, [*proof, root], root, "trailing root"),
        (index, size, lh, [b"", *proof], root, "preceding garbage"),
        (index, size, lh, [root, *proof], root, "preceding root"),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 8]) + wrong[i][1:]
        probes.append((index, size, lh, wrong, root, f"modified proof[{i}] bit 3"))
    if proof:
        probes.append((index, size, lh, proof[:-1], root, "removed component"))
    if len(proof) > 1:
        probes.append((index, size, lh, [proof[0], SOME_HASH, *proof[1:]], root, "inserted"))
    return probes


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION)
def test_inclusion_mutated_negatives(leaf: int, size: int, proof: list[str]) -> None:
    index = leaf - 1
    path = [h(p) for p in proof]
    lh = leaf_hash(LEAVES[index])
    for i, s, leafh, pr, root, desc in _corrupt_inclusion(index, size, path, ROOTS[size - 1], lh):
        with pytest.raises(ProofError):
            verify_inclusion(i, s, leafh, pr, root)
            pytest.fail(f"accepted corrupted proof: {desc}")


def test_inclusion_single_entry() -> None:
    lh = leaf_hash(b"data")
    verify_inclusion(0, 1, lh, [], lh)
    for root, leaf in [(lh, b""), (b"", lh), (b"", b"")]:
        with pytest.raises(ProofError):
            verify_inclusion(0, 1, leaf, [], root)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (0, 1), (1, 0), (2, 1)])
def test_inclusion_invalid_probes(index: int, size: int) -> None:
    for leaf, root in [(SOME_HASH, b""), (b"", EMPTY_ROOT), (SOME_HASH, EMPTY_ROOT)]:
        with pytest.raises(ProofError):
            verify_inclusion(index, size, leaf, [], root)


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY)
def test_consistency_vectors(tree: MerkleTree, size1: int, size2: int, proof: list[str]) -> None:
    path = [h(p) for p in proof]
    assert tree.consistency_proof(size1, size2) == path
    verify_consistency(size1, size2, path, ROOTS[size1 - 1], ROOTS[size2 - 1])


@pytest.mark.parametrize(("size1", "size2", "proof"), [c for c in CONSISTENCY if c[2]])
def test_consistency_mutated_negatives(size1: int, size2: int, proof: list[str]) -> None:
    path = [h(p) for p in proof]
    r1, r2 = ROOTS[size1 - 1], ROOTS[size2 - 1]
    probes = [
        (size1 - 1, size2, r1, r2, path),
        (size1 + 1, size2, r1, r2, path),
        (size1 ^ 2, size2, r1, r2, path),
        (size1, size2 * 2, r1, r2, path),
        (size1, size2 // 2, r1, r2, path),
        (size1, size2, b"WrongRoot", r2, path),
        (size1, size2, r1, b"WrongRoot", path),
        (size1, size2, r2, r1, path),
        (size1, size2, r1, r2, []),
        (size1, size2, r1, r2, [*path, b""]),
        (size1, size2, r1, r2, [*path, r1]),
        (size1, size2, r1, r2, [*path, r2]),
        (size1, size2, r1, r2, [b"", *path]),
        (size1, size2, r1, r2, [r1, *path]),
        (size1, size2, r1, r2, [r2, *path]),
        (size1, size2, r1, r2, [path[0], *path]),
        (size1, size2, r1, r2, path[:-1]),
    ]
    for i in range(len(path)):
        wrong = list(path)
        wrong[i] = bytes([wrong[i][0] ^ 16]) + wrong[i][1:]
        probes.append((size1, size2, r1, r2, wrong))
    for n, (s1, s2, a, b, pr) in enumerate(probes):
        with pytest.raises(ProofError):
            verify_consistency(s1, s2, pr, a, b)
            pytest.fail(f"accepted corrupted consistency probe {n}")


ROOT1, ROOT2 = b"don't care 1", b"don't care 2"


@pytest.mark.parametrize(
    ("size1", "size2", "root1", "root2", "proof", "ok"),
    [
        (0, 0, ROOT1, ROOT2, [], False),
        (1, 1, ROOT1, ROOT2, [], False),
        (0, 0, ROOT1, ROOT1, [], True),
        (0, 1, ROOT1, ROOT2, [], True),
        (1, 1, ROOT2, ROOT2, [], True),
        (1, 0, ROOT1, ROOT2, [], False),
        (2, 1, ROOT1, ROOT2, [], False),
        (1, 2, ROOT1, ROOT2, [], False),
        (0, 0, EMPTY_ROOT, ROOT2, [], False),
        (1, 1, EMPTY_ROOT, ROOT2, [], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    ],
)
def test_consistency_edge_cases(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes], ok: bool
) -> None:
    if ok:
        verify_consistency(size1, size2, proof, root1, root2)
    else:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof, root1, root2)


def test_all_proofs_roundtrip_small_trees() -> None:
    for n in range(1, 34):
        t = MerkleTree()
        for i in range(n):
            t.append_data(i.to_bytes(2, "big"))
        for m in range(n):
            verify_inclusion(m, n, t.leaf(m), t.inclusion_proof(m), t.root())
        for m in range(n + 1):
            verify_consistency(m, n, t.consistency_proof(m, n), t.root(m), t.root(n))


def test_proof_length_is_logarithmic() -> None:
    t = MerkleTree()
    for i in range(5000):
        t.append(leaf_hash(i.to_bytes(4, "big")))
    assert max(len(t.inclusion_proof(i)) for i in range(0, 5000, 97)) <= 13
    assert len(t.consistency_proof(1234)) <= 2 * 13


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=70), max_size=12))
def test_extend_builds_the_same_tree_as_appending_one_by_one(chunks: list[int]) -> None:
    by_one, bulk = MerkleTree(), MerkleTree()
    for i, size in enumerate(chunks):
        leaves = [leaf_hash(i.to_bytes(4, "big") + bytes([j])) for j in range(size)]
        for leaf in leaves:
            by_one.append(leaf)
        bulk.extend(leaves)
        assert bulk.levels == by_one.levels
        assert bulk.root() == by_one.root()
