"""``Retry-After`` read one way wherever an answer is waited out or passed on."""

from __future__ import annotations

import pytest

from exchange.http import retry_after


@pytest.mark.parametrize("value", ["1", "3600", "0042", "999999999"])
def test_whole_seconds_on_a_429_are_an_instruction(value: str) -> None:
    assert retry_after(429, value) == int(value)


def test_a_zero_is_waited_as_one_second() -> None:
    assert retry_after(429, "0") == 1


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "Wed, 02 Dec 2026 12:00:00 GMT",  # the date form: not honoured, as this tree sends seconds
        "1.5",
        "-1",
        "+1",
        " 1",
        "\u00b2",  # a digit to str.isdigit(), not to HTTP
        "1" * 10,
    ],
)
def test_anything_else_is_no_instruction(value: str | None) -> None:
    assert retry_after(429, value) is None


@pytest.mark.parametrize("status", [200, 503, 500])
def test_the_header_means_nothing_outside_a_429(status: int) -> None:
    assert retry_after(status, "5") is None
