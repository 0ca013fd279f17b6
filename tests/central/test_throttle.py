"""The authority's open write endpoints, served on a real socket, refuse a flood with 429 and
``Retry-After`` in the usual error form (on the apply page, the error page in the visitor's
language), per client address and overall, and leave ordinary use alone."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from exchange.central.app import create_app
from exchange.central.service import Central
from exchange.central.settings import CentralSettings, RateLimits
from exchange.central.throttle import Buckets, client_of
from exchange.errors import InvalidRequest
from tests.browser import Browser
from tests.conftest import Clock
from tests.inprocess import LoopThread, listen
from tests.servers import exchange, free_port, serving

# Small on purpose: three at once from one address, five at once from all, nothing refilled
# until the test moves the clock.
LIMITS = RateLimits(per_client=1.0, per_client_burst=3, overall=1.0, overall_burst=5)


@dataclass
class Served:
    url: str
    clock: Clock
    central: Central

    def client(self, address: str = "127.0.0.1") -> httpx.Client:
        """A client whose connections leave from ``address`` (one of the loopback range)."""
        transport = httpx.HTTPTransport(local_address=address)
        return httpx.Client(base_url=self.url, transport=transport, timeout=30)


@pytest.fixture
def served(central: Central, central_settings: CentralSettings, clock: Clock) -> Iterator[Served]:
    settings = central_settings.model_copy(update={"port": free_port(), "rate_limit": LIMITS})
    app = create_app(settings, clock=clock)
    loop = LoopThread("central-throttle")
    listener = loop.run(listen(app, settings.port))
    yield Served(settings.url, clock, app.state.central)
    loop.run(listener.stop())
    loop.stop()


def application(number: int) -> dict[str, str]:
    return {"kind": "member", "id": f"EE/GOV/7100{number:04d}", "name": f"Agency {number}"}


def refused(answer: httpx.Response, detail: str) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.headers["retry-after"] == "1"
    assert answer.headers["x-road-error"] == "Client.QuotaExceeded"
    body = answer.json()
    assert body["type"] == "Client.QuotaExceeded"
    assert body["detail"] == detail
    assert "127.0.0" not in answer.text  # says nothing of how it counts whom


def test_a_flood_from_one_address_is_refused_and_others_are_served(served: Served) -> None:
    flooder, other = served.client("127.0.0.1"), served.client("127.0.0.2")
    for number in range(3):
        assert flooder.post("/applications", json=application(number)).status_code == 201
    refused(flooder.post("/applications", json=application(3)), "per-client")
    events = served.central.registry.events(limit=1000)
    assert sum(e.action == "application.submitted" for e in events) == 3  # none for the refused
    # Refused before its body is read: even a body the endpoint would refuse gets 429.
    refused(flooder.post("/applications", content=b"{not json"), "per-client")

    assert other.post("/applications", json=application(10)).status_code == 201
    served.clock.advance(timedelta(seconds=1))  # one token back for each
    assert flooder.post("/applications", json=application(4)).status_code == 201
    refused(flooder.post("/applications", json=application(5)), "per-client")
    counted = 'exchange_central_rate_limited_total{endpoint="applications",limit="per-client"} 3.0'
    assert counted in other.get("/metrics").text


def test_a_forwarded_for_header_does_not_change_whose_allowance_is_spent(tmp_path: Path) -> None:
    """``exchange central serve`` itself: X-Forwarded-For from loopback (where a local proxy
    passing the header on would send it from) is not believed, so naming other addresses
    neither dodges the sender's limit nor spends someone else's."""
    data = ["--data-dir", str(tmp_path / "central")]
    assert exchange("central", "init", "--instance", "EE", *data).returncode == 0
    port = free_port()
    # Nothing comes back while the test runs: three from an address, then refusals.
    env = {
        "EXCHANGE_CENTRAL_RATE_LIMIT_PER_CLIENT": "0.001",
        "EXCHANGE_CENTRAL_RATE_LIMIT_PER_CLIENT_BURST": "3",
    }
    url = f"http://127.0.0.1:{port}"
    command = ["central", "serve", *data, "--port", str(port)]
    log = tmp_path / "central.log"
    with (
        serving(command, health_url=f"{url}/health", env=env, log=log),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        answers = [
            client.post(
                "/applications",
                json=application(number),
                headers={"x-forwarded-for": f"198.51.100.{number}"},
            )
            for number in range(5)
        ]
        assert [a.status_code for a in answers] == [201, 201, 201, 429, 429]
        assert answers[3].json()["detail"] == "per-client"
        # The address named is not charged either: another sender naming the first one is
        # served from its own allowance.
        named = {"x-forwarded-for": "127.0.0.1"}
        other = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=url, transport=other, timeout=30) as second:
            served = second.post("/applications", json=application(9), headers=named)
            assert served.status_code == 201


def test_a_proxy_named_in_the_settings_has_its_forwarded_address_believed(tmp_path: Path) -> None:
    """Behind a reverse proxy the operator names (and only then), each client is the address
    the proxy puts last in X-Forwarded-For; anyone else naming addresses is still itself."""
    data = ["--data-dir", str(tmp_path / "central")]
    assert exchange("central", "init", "--instance", "EE", *data).returncode == 0
    port = free_port()
    env = {
        "EXCHANGE_CENTRAL_RATE_LIMIT_PER_CLIENT": "0.001",
        "EXCHANGE_CENTRAL_RATE_LIMIT_PER_CLIENT_BURST": "3",
        "EXCHANGE_CENTRAL_TRUSTED_PROXIES": "127.0.0.1",
    }
    url = f"http://127.0.0.1:{port}"
    command = ["central", "serve", *data, "--port", str(port)]
    log = tmp_path / "central.log"
    proxy, stranger = (
        httpx.HTTPTransport(local_address=address) for address in ("127.0.0.1", "127.0.0.2")
    )
    with (
        serving(command, health_url=f"{url}/health", env=env, log=log),
        httpx.Client(base_url=url, transport=proxy, timeout=30) as through_proxy,
        httpx.Client(base_url=url, transport=stranger, timeout=30) as direct,
    ):

        def post(client: httpx.Client, number: int, forwarded: str) -> int:
            headers = {"x-forwarded-for": forwarded}
            return client.post(
                "/applications", json=application(number), headers=headers
            ).status_code

        # Through the proxy: one client's four are limited, others are not charged for them.
        forged_then_real = "203.0.113.1, 198.51.100.7"  # the proxy appends the real peer
        assert [post(through_proxy, n, forged_then_real) for n in range(4)] == [201] * 3 + [429]
        assert post(through_proxy, 4, "198.51.100.8") == 201
        assert post(through_proxy, 5, "203.0.113.1") == 201
        # Not the proxy: what it names is not believed.
        assert [post(direct, n, f"192.0.2.{n}") for n in range(10, 14)] == [201] * 3 + [429]


def test_trusted_proxies_are_addresses_never_everyone() -> None:
    def load(proxies: str) -> CentralSettings:
        return CentralSettings.load(environ={"EXCHANGE_CENTRAL_TRUSTED_PROXIES": proxies})

    assert load("10.0.0.5, 2001:db8::/64").proxies == ("10.0.0.5", "2001:db8::/64")
    assert CentralSettings.load(environ={}).proxies == ()
    for wrong in ("*", "proxy.example.org"):
        with pytest.raises(InvalidRequest, match="trusted_proxies"):
            load(wrong)


def test_an_ipv6_host_counts_as_its_64_and_held_addresses_are_bounded() -> None:
    assert client_of("2001:db8:1:2:aaaa::1") == client_of("2001:db8:1:2:bbbb::2")
    assert client_of("2001:db8:1:3::1") != client_of("2001:db8:1:2::1")
    assert client_of("192.0.2.1") != client_of("192.0.2.2")
    # A dual-stack listener sees IPv4 peers as IPv4-mapped IPv6: each is its IPv4 address.
    assert client_of("::ffff:203.0.113.5") == client_of("203.0.113.5") == "203.0.113.5"
    assert client_of("::ffff:203.0.113.5") != client_of("::ffff:198.51.100.7")
    buckets = Buckets(rate=1.0, burst=1, capacity=2)
    assert buckets.take("a", 0.0) == 0
    assert buckets.take("a", 0.0) == 1.0  # empty: a second to wait
    buckets.take("b", 0.0)
    buckets.take("c", 0.0)  # a third address: the least recently seen, "a", is forgotten
    assert buckets.take("a", 0.0) == 0


def test_many_addresses_together_meet_the_overall_limit(served: Served) -> None:
    answers = [
        served.client(f"127.0.0.{host}").post("/applications", json=application(host))
        for host in range(1, 7)
    ]
    assert [a.status_code for a in answers[:5]] == [201] * 5
    refused(answers[5], "overall")


def test_enrolment_and_signed_catalogues_are_limited_each_on_their_own(served: Served) -> None:
    """Each endpoint has its buckets: a flood of one leaves the others open."""
    flooder = served.client()
    for _ in range(3):
        # Garbage past the limit's check: the endpoint's own refusals, counted all the same.
        assert flooder.post("/enrolment", content=b"{}").status_code == 400
        assert flooder.put("/catalogue/v1/services", content=b"{}").status_code == 400
    refused(flooder.post("/enrolment", content=b"{}"), "per-client")
    refused(flooder.put("/catalogue/v1/services", content=b"{}"), "per-client")
    assert flooder.post("/applications", json=application(1)).status_code == 201
    # What is read, not written, is not limited here.
    for _ in range(10):
        assert flooder.get("/globalconf").status_code == 200


def test_the_apply_form_refuses_a_flood_with_the_error_page_in_the_visitors_language(
    served: Served,
) -> None:
    browser = Browser(httpx.HTTPTransport(local_address="127.0.0.1"))
    browser.http.headers.update({"accept": "text/html", "accept-language": "fr"})
    form = browser.get(f"{served.url}/apply/")
    for number in range(3):
        fields = application(number)
        assert browser.submit(form, 'name="id"', **fields).status_code == 200
    flooded = browser.submit(form, 'name="id"', **application(3))
    assert flooded.status_code == 429
    assert flooded.headers["retry-after"] == "1"
    assert flooded.headers["x-road-error"] == "Client.QuotaExceeded"
    assert flooded.headers["content-type"].startswith("text/html")
    assert 'lang="fr"' in flooded.text
    assert "Trop de demandes" in flooded.text
    # The API's submissions and the form's share the address's allowance.
    refused(served.client().post("/applications", json=application(4)), "per-client")


def test_the_apply_form_is_refused_before_its_body_is_read(served: Served) -> None:
    """Past the allowance, a submission declaring a large form is answered at once: the server
    does not wait for a body it would refuse anyway."""
    flooder = served.client()
    for number in range(3):
        assert flooder.post("/applications", json=application(number)).status_code == 201
    port = int(served.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        head = "POST /apply/ HTTP/1.1\r\nHost: central\r\nAccept: text/html\r\n"
        head += "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n"
        sock.sendall(f"{head}\r\n".encode())  # and not a byte of the form
        answer = sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 429 ")
    assert "\r\nx-road-error: Client.QuotaExceeded\r\n" in answer
    assert "text/html" in answer.lower()
    # Within the allowance, the form's own cap still holds.
    other = served.client("127.0.0.2")
    huge = other.post("/apply/", content=b"x" * (65 * 1024), headers={"accept": "text/html"})
    assert huge.status_code == 413


def test_reading_applications_has_an_allowance_of_its_own(served: Served) -> None:
    """Guessing numbers and receipts, on the API or the page, meets a limit; it spends nothing
    of the allowance to apply, and applying spends nothing of it."""
    guesser = served.client()
    assert guesser.post("/applications", json=application(1)).status_code == 201
    wrong = {"authorization": "Receipt " + "A" * 43}
    for number in (1, 2):
        assert guesser.get(f"/applications/{number}", headers=wrong).status_code == 404
    assert guesser.get(f"/apply/1/{'A' * 43}").status_code == 404  # the page shares it
    refused(guesser.get("/applications/1", headers=wrong), "per-client")
    page = guesser.get(f"/apply/1/{'A' * 43}", headers={"accept": "text/html"})
    assert page.status_code == 429
    assert page.headers["content-type"].startswith("text/html")
    assert guesser.post("/applications", json=application(2)).status_code == 201
    counted = (
        'exchange_central_rate_limited_total{endpoint="application-reads",limit="per-client"} 2.0'
    )
    assert counted in guesser.get("/metrics").text
