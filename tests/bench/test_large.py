"""The large-document benchmark's options and its verdict against issue 17's target (no
document is streamed here)."""

from __future__ import annotations

from bench.large import Row, parse_args, report


def test_ten_and_a_hundred_mb_by_default_other_sizes_on_request() -> None:
    assert parse_args([]).sizes == [10, 100]
    assert parse_args(["--sizes", "1", "250"]).sizes == [1, 250]


def row(size_mb: int, growth_mb: float) -> Row:
    growth = {"consumer": 1.0, "provider": growth_mb}
    return Row(size_mb, 4.0, 1.0, growth, {"consumer": 140.0, "provider": 140.0})


def test_the_verdict_names_the_largest_growth_of_the_largest_size() -> None:
    met = report([row(10, 40.0), row(100, 2.5)])
    assert "| 100 MB | 4.00 s, 25 MB/s | 1.00 s, 100 MB/s |" in met
    assert "largest growth 2.5 MB, met." in met
    assert "largest growth 31.0 MB, NOT met." in report([row(100, 31.0)])
