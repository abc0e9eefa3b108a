"""Allocating a payment to a contract's installments, oldest open one first."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Due:
    no: int
    due: str  # YYYY-MM-DD sorts as it reads
    amount: int
    paid: int

    @property
    def open(self) -> int:
        return max(0, self.amount - self.paid)


@dataclass(frozen=True, slots=True)
class Allocation:
    parts: tuple[tuple[int, int], ...]  # (installment no, amount)
    leftover: int  # more than everything still open

    @property
    def allocated(self) -> int:
        return sum(part for _, part in self.parts)


def allocate(amount: int, installments: Iterable[Due]) -> Allocation:
    """Spread ``amount`` over open installments by due date, then number.

    The parts always sum to ``amount - leftover``; no installment is paid past
    its amount. What remains after every installment is the leftover, which the
    caller refuses or keeps as credit by policy.
    """
    if amount <= 0:
        raise ValueError("amount must be positive")
    parts = []
    remaining = amount
    for item in sorted(installments, key=lambda d: (d.due, d.no)):
        if remaining == 0:
            break
        take = min(item.open, remaining)
        if take:
            parts.append((item.no, take))
            remaining -= take
    return Allocation(tuple(parts), remaining)
