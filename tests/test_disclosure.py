"""The disclosure rule of public figures and the month ranges they are asked for."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exchange.disclosure import Month, Months, median_of, published
from exchange.errors import InvalidRequest

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("count", "shown"),
    [(0, 0), (1, "<5"), (4, "<5"), (5, 5), (7, 5), (8, 10), (12, 10), (13, 15), (100, 100)],
)
def test_small_counts_are_withheld_and_the_rest_rounded(count: int, shown: object) -> None:
    assert published(count) == shown


def test_no_difference_of_published_counts_pins_a_withheld_one() -> None:
    # A total and its parts, each published: whatever the withheld part is (1-4), every other
    # value it could take is consistent with what is shown.
    for total in range(5, 60):
        for withheld in range(1, 5):
            shown_total, shown_rest = published(total), published(total - withheld)
            if not isinstance(shown_rest, int) or shown_rest == 0:
                continue
            possible = {
                w
                for w in range(1, 5)
                for t in range(max(5, total - 4), total + 5)
                if published(t) == shown_total and published(t - w) == shown_rest
            }
            assert len(possible) > 1, (total, withheld)


def test_a_median_needs_five_values() -> None:
    assert median_of([1, 2, 3, 4]) is None
    assert median_of([5, 1, 3, 2, 4]) == 3
    assert median_of([1, 2, 3, 4, 5, 6]) == 3.5


def test_ranges_default_to_the_last_twelve_months() -> None:
    months = Months.parse(None, None, now=NOW)
    assert (str(months.first), str(months.last)) == ("2026-01", "2026-12")
    assert len(list(months)) == 12
    across = Months.parse("2025-11", "2026-02", now=NOW)
    assert [str(m) for m in across] == ["2025-11", "2025-12", "2026-01", "2026-02"]
    assert Month(2026, 12).next() == Month(2027, 1)
    assert Month(2026, 1).minus(1) == Month(2025, 12)


@pytest.mark.parametrize(
    ("first", "last", "detail"),
    [
        ("2026-1", None, "from"),
        ("2026-13", None, "from"),
        ("２026-01", None, "from"),
        (None, "2026-12-01", "to"),
        ("2026-06", "2026-05", "from"),
        ("2024-12", "2026-12", "from"),
        ("1969-12", "1970-01", "from"),
        ("1999-12", "2000-01", "from"),
        ("2026-01", "2027-01", "to"),
        (None, "9999-12", "to"),
        ("9999-11", "9999-12", "to"),
    ],
)
def test_malformed_ranges_are_refused(first: str | None, last: str | None, detail: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        Months.parse(first, last, now=NOW)
    assert refused.value.detail == detail


def test_a_range_ends_no_later_than_the_current_month() -> None:
    with pytest.raises(InvalidRequest) as refused:
        Months.parse(None, "9999-12", now=NOW)
    assert "after the current month" in refused.value.message
    assert str(Months.parse("2000-01", "2001-12", now=NOW).first) == "2000-01"
