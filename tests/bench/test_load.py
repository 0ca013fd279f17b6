"""Reading wrk's report: the figures the benchmark prints come from these lines."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from typing import ClassVar

import pytest

from bench.load import DRIVERS, FRESH, cpu_seconds, family, parse_wrk

REPORT = """\
Running 10s test @ http://127.0.0.1:18765/births?person=EE38001085718
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.22ms    1.87ms  14.04ms   86.53%
    Req/Sec     8.28k   183.85     9.28k    70.00%
  Latency Distribution
     50%  950.00us
     75%    2.94ms
     90%    4.61ms
     99%    1.02s
  82780 requests in 10.00s, 12.36MB read
Requests/sec:   8278.00
Transfer/sec:      1.24MB
"""


def test_answers_duration_and_percentiles_in_their_units() -> None:
    load = parse_wrk(REPORT, generator_cpu=2.5)
    assert (load.answered, load.seconds, load.errors) == (82780, 10.0, 0)
    assert load.p50_ms == pytest.approx(0.95)
    assert load.p99_ms == pytest.approx(1020)
    assert load.rate == pytest.approx(8278)
    assert load.generator_cpu == 2.5


def test_refused_answers_and_socket_errors_are_errors_and_not_counted_as_answered() -> None:
    failing = REPORT.replace(
        "Requests/sec",
        "  Non-2xx or 3xx responses: 80\n"
        "  Socket errors: connect 1, read 2, write 3, timeout 4\nRequests/sec",
    )
    load = parse_wrk(failing)
    assert load.answered == 82700
    assert load.errors == 90


def test_a_report_without_figures_is_refused() -> None:
    with pytest.raises(ValueError, match="unexpected output from wrk"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_a_process_and_its_children_are_measured_together() -> None:
    """A gateway with workers is a parent and its children: CPU is read over all of them."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert set(family(os.getpid())) >= {os.getpid(), child.pid}
        assert cpu_seconds(os.getpid(), children=True) >= cpu_seconds(os.getpid())
    finally:
        child.kill()
        child.wait()


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers 200 and keeps each request's headers."""

    seen: ClassVar[list[dict[str, str]]] = []
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers.items()))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_: object) -> None:
        pass


@pytest.mark.parametrize("driver", sorted(DRIVERS))
def test_a_fresh_header_has_a_new_value_on_every_request(driver: str) -> None:
    if driver == "wrk" and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed")
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/x"
        measured = DRIVERS[driver](url, {"X-Kept": "same", "Idempotency-Key": FRESH}, 2, 1)
    finally:
        server.shutdown()
        server.server_close()
    keys = [headers["Idempotency-Key"] for headers in _Recorder.seen]
    assert measured.answered > 10
    assert len(keys) == len(set(keys)) == len(_Recorder.seen)
    assert FRESH not in keys
    assert {headers["X-Kept"] for headers in _Recorder.seen} == {"same"}
