"""What public figures may say: small counts withheld, the rest rounded, over a bounded range.

Every published count goes through :func:`published`:

- 0 is shown as 0 (nothing happened; no one is behind it);
- 1 to 4 are shown as ``"<5"``, never as the number (primary suppression);
- 5 and above are rounded to the nearest multiple of 5 (7 is 5, 8 is 10).

Rounding is what keeps a suppressed cell from being worked out by subtraction. Counts that
add up to one another (a month's exchanges by consumer and the same month's by purpose, a
total and its parts) are each rounded from the true count, so each is off by up to 2; a
difference of published figures is off by up to 2 per figure in it, which covers every value
a suppressed cell could take. What stays possible is a bound (see docs/public-figures.md).

A median is published only over at least :data:`THRESHOLD` values (:func:`median_of`).

:class:`Months` is the one way a request names its range: whole UTC months, at most
:data:`MAX_MONTHS` of them, from :data:`FIRST_YEAR` to the current month, so that every query is
bounded by time (and no month arithmetic leaves the years a date can hold).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from exchange.errors import InvalidRequest

THRESHOLD = 5  # counts below this are withheld
BASE = 5  # counts at or above it are rounded to a multiple of this
SUPPRESSED = "<5"
MAX_MONTHS = 24
DEFAULT_MONTHS = 12
FIRST_YEAR = 2000  # no figures before it; also keeps month arithmetic within datetime's years

Published = int | str


def published(count: int) -> Published:
    """``count`` as it may be published: 0, ``"<5"``, or rounded to the nearest 5."""
    if count < 0:
        raise ValueError("a count is never negative")
    if count == 0:
        return 0
    if count < THRESHOLD:
        return SUPPRESSED
    return (count + BASE // 2) // BASE * BASE


def median_of(values: Sequence[float]) -> float | None:
    """The median of ``values``, or None when there are too few to publish one."""
    if len(values) < THRESHOLD:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


@dataclass(frozen=True, slots=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str, name: str) -> Month:
        found = _MONTH.fullmatch(text)
        if found is None or int(found[1]) < FIRST_YEAR:
            raise InvalidRequest(
                f"{name} must be a month as YYYY-MM from {FIRST_YEAR}-01, e.g. 2026-01",
                detail=name,
            )
        return cls(int(found[1]), int(found[2]))

    @classmethod
    def of(cls, at: datetime) -> Month:
        at = at.astimezone(UTC)
        return cls(at.year, at.month)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def minus(self, months: int) -> Month:
        index = self.year * 12 + self.month - 1 - months
        return Month(index // 12, index % 12 + 1)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True, slots=True)
class Months:
    """A range of whole months, ``first`` to ``last`` inclusive."""

    first: Month
    last: Month

    @classmethod
    def parse(cls, first: str | None, last: str | None, *, now: datetime) -> Months:
        """The range a request names (``from``, ``to``; by default the last 12 months up to
        ``now``'s); a 400 for a malformed, reversed or too long range, or one that ends after
        the current month."""
        current = Month.of(now)
        given = Month.parse(first, "from") if first is not None else None
        end = Month.parse(last, "to") if last is not None else current
        if end > current:
            raise InvalidRequest(f"to must not be after the current month, {current}", detail="to")
        start = given if given is not None else end.minus(DEFAULT_MONTHS - 1)
        if start > end:
            raise InvalidRequest("from must not be after to", detail="from")
        span = (end.year - start.year) * 12 + end.month - start.month + 1
        if span > MAX_MONTHS:
            raise InvalidRequest(f"a range covers at most {MAX_MONTHS} months", detail="from")
        return cls(start, end)

    def __iter__(self) -> Iterator[Month]:
        month = self.first
        while month <= self.last:
            yield month
            month = month.next()

    def query(self) -> dict[str, str]:
        return {"from": str(self.first), "to": str(self.last)}
