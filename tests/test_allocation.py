"""Allocation: oldest open installment first, parts sum to the amount."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kiosk.allocation import Due, allocate

dues = st.lists(
    st.builds(
        lambda no, month, amount, paid_share: Due(
            no, f"2026-{month:02d}-01", amount, amount * paid_share // 4
        ),
        st.integers(1, 60),
        st.integers(1, 12),
        st.integers(1, 10**9),
        st.integers(0, 4),
    ),
    max_size=12,
    unique_by=lambda d: d.no,
)


@given(st.integers(1, 10**12), dues)
def test_allocation_parts_sum_and_never_overpay(amount: int, items: list[Due]) -> None:
    split = allocate(amount, items)
    by_no = {d.no: d for d in items}

    assert split.allocated + split.leftover == amount
    assert all(part > 0 for _, part in split.parts)
    for no, part in split.parts:
        assert part <= by_no[no].open
    # Leftover only once everything open is paid.
    if split.leftover:
        assert split.allocated == sum(d.open for d in items)


@given(st.integers(1, 10**12), dues)
def test_allocation_pays_oldest_first(amount: int, items: list[Due]) -> None:
    split = allocate(amount, items)
    order = sorted((d for d in items if d.open), key=lambda d: (d.due, d.no))
    paid = dict(split.parts)
    # Every installment before the last one touched is paid in full.
    touched = [d for d in order if d.no in paid]
    if touched:
        last = order.index(touched[-1])
        for d in order[:last]:
            assert paid.get(d.no) == d.open
        assert [d.no for d in order[: last + 1]] == [no for no, _ in split.parts]


def test_partial_payment_splits_across_two() -> None:
    items = [Due(2, "2026-11-01", 500, 0), Due(1, "2026-10-01", 500, 200)]
    split = allocate(600, items)
    assert split.parts == ((1, 300), (2, 300))
    assert split.leftover == 0


def test_overpayment_is_leftover() -> None:
    split = allocate(1500, [Due(1, "2026-10-01", 1000, 0)])
    assert split.parts == ((1, 1000),)
    assert split.leftover == 500
