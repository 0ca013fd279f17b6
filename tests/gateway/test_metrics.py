"""A gateway's metrics as /metrics shows them: every exchange counted, labels from closed sets."""

from __future__ import annotations

from exchange.gateway.metrics import GatewayMetrics

SERVICE = "EE/GOV/1/registry/birth-certificate"


def observe(metrics: GatewayMetrics, service: str, status: int, error: str | None = None) -> None:
    metrics.observe(
        side="producer",
        service=service,
        known=frozenset({SERVICE}),
        status=status,
        error_type=error,
        seconds=0.003,
    )


def value(metrics: GatewayMetrics, line_start: str) -> float:
    lines = metrics.exposition().decode().splitlines()
    found = [line for line in lines if line.startswith(line_start)]
    assert len(found) == 1, (line_start, found)
    return float(found[0].rsplit(" ", 1)[1])


def test_every_exchange_is_counted_under_its_labels() -> None:
    metrics = GatewayMetrics()
    for _ in range(3):
        observe(metrics, SERVICE, 200)
    observe(metrics, SERVICE, 404, "Server.ServerProxy.NotFound")
    observe(metrics, "EE/GOV/1/registry/made-up", 400, "Client.Made.Up")
    ok = f'exchange_requests_total{{service="{SERVICE}",side="producer",status="200"}}'
    assert value(metrics, ok) == 3
    missing = f'exchange_requests_total{{service="{SERVICE}",side="producer",status="404"}}'
    assert value(metrics, missing) == 1
    assert value(metrics, 'exchange_requests_total{service="other"') == 1
    not_found = 'exchange_errors_total{side="producer",type="Server.ServerProxy.NotFound"}'
    assert value(metrics, not_found) == 1
    assert value(metrics, 'exchange_errors_total{side="producer",type="other"}') == 1
    assert value(metrics, 'exchange_request_seconds_count{side="producer"}') == 5


def test_the_labelled_series_kept_at_hand_stay_bounded() -> None:
    metrics = GatewayMetrics()
    for status in range(100, 100 + GatewayMetrics.KEPT + 50):  # a peer may send any status
        observe(metrics, SERVICE, status)
    assert 0 < len(metrics.kept) < GatewayMetrics.KEPT  # it was full, and began again
    observe(metrics, SERVICE, 200)
    ok = f'exchange_requests_total{{service="{SERVICE}",side="producer",status="200"}}'
    assert value(metrics, ok) == 2
