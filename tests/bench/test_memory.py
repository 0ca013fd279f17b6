"""The memory benchmark's readings and its verdict against the target (no federation here)."""

from __future__ import annotations

import os

from bench.memory import Reading, reading, report


def test_a_reading_is_this_process_resident_memory_and_its_peak() -> None:
    now = reading(os.getpid())
    assert 5 < now.rss <= now.peak


def readings(consumer: float, provider: float) -> dict[str, Reading]:
    return {
        "consumer": Reading(consumer, consumer),
        "provider": Reading(provider, provider),
        "baseline": Reading(400, 400),  # never judged: it is no gateway
    }


def test_the_target_is_judged_on_the_largest_gateway_with_the_most_records() -> None:
    small = (0, [("started", readings(170, 170))])  # fewer records: shown, not judged
    met = (1_000_000, [("started", readings(120, 130)), ("after", readings(140, 150))])
    assert report([small, met]).endswith("largest measured 150 MB  met")
    missed = (1_000_000, [("started", readings(120, 130)), ("after", readings(140, 151))])
    assert report([small, missed]).endswith("largest measured 151 MB  not met")
