"""Splitting an integer amount exactly: one rounding rule for rewards and royalties."""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

__all__ = ["largest_remainder"]


def largest_remainder(total: int, weights: Mapping[str, float | int]) -> dict[str, int]:
    """Split ``total`` base units proportionally to ``weights``, exactly.

    Hamilton's largest-remainder method: everyone gets the floor of their
    exact quota, and the leftover units go one each to the largest fractional
    remainders; equal remainders go to the lexicographically smaller account
    id first, so ``100`` over weights ``1, 1, 1`` for ``a, b, c`` is
    ``34, 33, 33``. Quotas are computed with exact rationals (floats are
    converted exactly), so the result never depends on summation order.
    An empty mapping or all-zero weights return ``{}``: nothing is spent.
    """
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    exact: dict[str, Fraction] = {}
    for account, weight in weights.items():
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight of {account!r} must be finite and >= 0, got {weight}")
        exact[account] = Fraction(weight)
    weight_sum = sum(exact.values(), Fraction(0))
    if weight_sum == 0:
        return {}
    shares: dict[str, int] = {}
    remainders: list[tuple[Fraction, str]] = []
    for account in sorted(exact):
        quota = total * exact[account] / weight_sum
        floor = quota.numerator // quota.denominator
        shares[account] = floor
        remainders.append((quota - floor, account))
    leftover = total - sum(shares.values())
    remainders.sort(key=lambda item: (-item[0], item[1]))
    for _, account in remainders[:leftover]:
        shares[account] += 1
    return shares
