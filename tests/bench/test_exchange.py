"""The benchmark's options and its verdicts against the targets (no load is generated here)."""

from __future__ import annotations

from bench.exchange import (
    DIRECT,
    EXCHANGE,
    IDEMPOTENCY,
    NO_WITNESS,
    QUOTA,
    TARGETS,
    Row,
    costs,
    ocsp_lookup_us,
    parse_args,
    report,
)
from bench.load import Load


def test_wrk_and_ten_second_rows_by_default_the_python_driver_on_request() -> None:
    args = parse_args([])
    assert (args.driver, args.seconds, args.concurrency, args.no_postgres) == (
        "wrk",
        10,
        [1, 50],
        False,
    )
    assert parse_args(["--driver", "python", "--seconds", "2"]).driver == "python"


def test_one_worker_per_gateway_unpinned_by_default_more_and_pinned_on_request() -> None:
    assert (parse_args([]).workers, parse_args([]).cpus) == (1, None)
    args = parse_args(["--workers", "2", "--cpus", "0,1"])
    assert (args.workers, args.cpus) == (2, "0,1")


def rows(rate: float, p50_ms: float, cpu_ms: float) -> list[Row]:
    measured = []
    for clients in (1, 50):
        direct = Row(DIRECT, "SQLite", clients, Load(8000, 1, 0.2, 1, 0, 0.2), {}, {})
        exchange = Row(
            EXCHANGE,
            "SQLite",
            clients,
            Load(int(rate), 1, p50_ms, 9, 0, 0.1),
            {"consumer": cpu_ms / 2, "provider": cpu_ms / 2},
            {"consumer": 140, "provider": 150},
            direct,
        )
        measured += [direct, exchange]
    return measured


def verdicts(measured: list[Row]) -> dict[str, str]:
    return {target.describe(): target.check(measured)[1] for target in TARGETS}


def test_each_target_is_marked_met_or_not_and_a_missing_database_not_measured() -> None:
    met = verdicts(rows(rate=1100, p50_ms=3.1, cpu_ms=1.4))
    assert met["exchanges >= 1000/s, SQLite, 50 clients"] == "met"
    assert met["rate >= 0.120x direct, SQLite, 50 clients"] == "met"
    assert met["added p50 <= 3.00 ms, SQLite, 1 client"] == "met"
    assert met["gateway CPU per exchange <= 1.50 ms, SQLite, 50 clients"] == "met"
    assert met["exchanges >= 800/s, PostgreSQL, 50 clients"] == "not measured"
    missed = verdicts(rows(rate=900, p50_ms=3.3, cpu_ms=1.6))
    assert {missed[t] for t in missed if "SQLite" in t} == {"not met"}


def test_the_report_puts_the_targets_beside_the_figures() -> None:
    printed = report(rows(rate=471, p50_ms=5.7, cpu_ms=3.1), "wrk")
    assert "full exchange, SQLite" in printed
    assert "471/s  not met" in printed
    assert "3.10 ms  not met" in printed


def test_costs_are_off_by_default_and_each_variant_is_printed_beside_the_plain_exchange() -> None:
    assert not parse_args([]).costs
    assert parse_args(["--costs", "--seconds", "3"]).costs
    measured = rows(rate=300, p50_ms=5.0, cpu_ms=5.0)
    direct = measured[2]  # 50 clients
    for variant, cpu_ms, p50_ms in (
        (QUOTA, 5.2, 5.1),
        (IDEMPOTENCY, 5.5, 5.4),
        (NO_WITNESS, 4.9, 5.0),
    ):
        measured.append(
            Row(
                EXCHANGE,
                "SQLite",
                50,
                Load(290, 1, p50_ms, 9, 0, 0.1),
                {"consumer": cpu_ms / 2, "provider": cpu_ms / 2},
                {},
                direct,
                variant,
            )
        )
    printed = costs(measured, ocsp_us=2.0)
    lines = {line.split("  ")[0]: line for line in printed.splitlines()}
    assert "+0.20" in lines["full exchange, SQLite, with a quota"]
    assert "+0.50" in lines["full exchange, SQLite, with Idempotency-Key"]
    assert "-0.10" in lines["full exchange, SQLite, witnessing off"]
    assert "2.00 us per status lookup" in printed
    assert "0.0060 ms" in printed  # three lookups per exchange
    # The main table names the variants too.
    assert "full exchange, SQLite, with a quota" in report(measured, "wrk")


def test_the_ocsp_lookup_is_measured_on_a_verified_answer() -> None:
    assert 0 < ocsp_lookup_us(lookups=1000) < 1000
