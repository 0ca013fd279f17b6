"""A gateway publishes its services to the central catalogue signed with its member's key, with no
token of the authority's: only its own member's subsystems, only with a live, unrevoked signing
certificate, only fresh and only once. Each publication is in the authority's change log with
the gateway as actor. Sent over the authority's real listening socket."""

from __future__ import annotations

import http.server
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from exchange.central.files import read_admin_token
from exchange.gateway import publishing
from exchange.gateway.node import Gateway
from exchange.gateway.publishing import Publication
from exchange.gateway.settings import GatewaySettings
from exchange.identifiers import SubsystemId
from exchange.sample import federation
from exchange.trust.catalogue import CATALOGUE_TYPE, sign_catalogue
from exchange.trust.keys import build_csr, generate_key, serial_hex
from exchange.trust.signed import Signer
from tests.gateway.conftest import Roles, build_roles
from tests.gateway.test_console import console, signed_in

CODE = "signed-copy"
SERVICE = f"{federation.POPULATION_REGISTRY}/{CODE}"


def central_url(roles: Roles) -> str:
    return roles.roles.central.settings.url


def entry(code: str = CODE, subsystem: object = federation.POPULATION_REGISTRY) -> dict[str, Any]:
    return {
        "id": f"{subsystem}/{code}",
        "evidence_type": "residence-record",
        "consent_policy": "public",
        "description": "a copy, published signed",
        "methods": ["GET"],
        "parameters": ["person"],
    }


def signed(
    gateway: Gateway,
    *,
    at: datetime,
    subsystem: object = federation.POPULATION_REGISTRY,
    services: list[dict[str, Any]] | None = None,
    signer: Signer | None = None,
) -> str:
    return sign_catalogue(
        signer or gateway.signer,
        gateway=str(gateway.id),
        subsystem=str(subsystem),
        services=[entry(subsystem=subsystem)] if services is None else services,
        at=at,
    )


def send(roles: Roles, catalogue: str) -> httpx.Response:
    """The signed catalogue to the authority, as a gateway sends it: no bearer token."""
    return httpx.put(
        f"{central_url(roles)}/catalogue/v1/services", json={"catalogue": catalogue}, timeout=30
    )


def listed(roles: Roles) -> set[str]:
    return {s.identifier for s in roles.roles.central.registry.services()}


def newest_event(roles: Roles) -> dict[str, Any]:
    token = read_admin_token(roles.layout.central)
    events = httpx.get(
        f"{central_url(roles)}/api/v1/events",
        params={"limit": 1000},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()
    newest: dict[str, Any] = events[-1]
    return newest


def refused(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["type"] == f"Client.{kind}", body
    assert set(body) == {"type", "message", "detail"}
    return body


def publish(roles: Roles, settings: GatewaySettings | None = None, **waiting: Any) -> Publication:
    """The provider's catalogues, as ``exchange gateway publish`` sends them."""
    provider = roles.provider
    return publishing.publish(
        settings or provider.settings,
        provider.declared.enabled(),
        central_url=central_url(roles),
        signer=provider.signer,
        clock=roles.clock,
        **waiting,
    )


def test_a_gateway_publishes_its_own_catalogue_signed(roles: Roles) -> None:
    provider = roles.provider
    done = publish(roles)
    assert done.published == {str(federation.POPULATION_REGISTRY): len(provider.settings.services)}
    assert done.refused == {}
    assert f"{federation.RESIDENCE_RECORD}/v1" in listed(roles)
    event = newest_event(roles)
    assert event["action"] == "services.published"
    assert event["actor"] == f"gateway:{provider.id}"
    assert event["subject"] == str(federation.POPULATION_REGISTRY)

    # The catalogue anyone gets with the configuration lists it too.
    roles.roles.refresh()
    shown = {s["id"] for s in provider.trust.view().configuration.services}
    assert f"{federation.RESIDENCE_RECORD}/v1" in shown


def test_a_gateway_cannot_publish_another_members_subsystem(roles: Roles) -> None:
    portal_gateway = roles.roles.consumer  # of the portal's member, not the population register's
    before = listed(roles)
    body = refused(send(roles, signed(portal_gateway, at=roles.clock())), 403, "AccessDenied")
    assert body["detail"] == str(federation.POPULATION_REGISTRY)
    assert SERVICE not in listed(roles)
    assert listed(roles) == before


def test_a_replayed_or_stale_catalogue_is_refused(roles: Roles) -> None:
    provider, now = roles.provider, roles.clock()
    catalogue = signed(provider, at=now)
    assert send(roles, catalogue).status_code == 200
    assert SERVICE in listed(roles)
    refused(send(roles, catalogue), 409, "DuplicateMessage")

    skew = timedelta(seconds=roles.roles.central.settings.clock_skew)
    for at in (now - skew - timedelta(seconds=5), now + skew + timedelta(seconds=5)):
        refused(send(roles, signed(provider, at=at, services=[])), 400, "StaleMessage")
    # Fresh but older than the catalogue published: would roll the catalogue back.
    older = signed(provider, at=now - timedelta(seconds=5), services=[])
    refused(send(roles, older), 400, "StaleMessage")
    assert SERVICE in listed(roles)  # none of these changed it


def test_a_signature_by_no_member_certificate_is_refused(roles: Roles) -> None:
    """Nor forged, nor of another type: every refusal before any claim is read."""
    key = generate_key()
    # A certificate the instance CA never issued, signed by the key itself.
    name = build_csr(key, "not a member").subject
    now = datetime.now(UTC)
    self_made = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    catalogue = signed(roles.provider, at=roles.clock(), signer=Signer(key, self_made))
    body = refused(send(roles, catalogue), 400, "InvalidSignature")
    assert "unknown" in body["message"]
    # A consent service's key is a signing certificate of the instance too, but signs no message.
    consent_key = roles.roles.consent.signer
    body = refused(
        send(roles, signed(roles.provider, at=roles.clock(), signer=consent_key)),
        400,
        "InvalidSignature",
    )
    assert "unknown" in body["message"]
    # The member's certificate named, another key signing.
    forged = Signer(generate_key(), roles.provider.keys.signing_certificate)
    refused(
        send(roles, signed(roles.provider, at=roles.clock(), signer=forged)),
        400,
        "InvalidSignature",
    )
    # The member's key, another kind of message (a request signature is not a catalogue).
    other_kind = roles.provider.signer.sign({"subsystem": "x", "iat": 0}, "exchange-request+jws")
    refused(send(roles, other_kind), 400, "InvalidSignature")
    refused(send(roles, "not.a.jws"), 400, "InvalidSignature")


def test_a_revoked_signing_certificate_publishes_nothing(fresh_roles: Roles) -> None:
    roles, provider = fresh_roles, fresh_roles.provider
    serial = serial_hex(provider.keys.signing_certificate.serial_number)
    roles.roles.central.certificates.revoke(serial, "keyCompromise", actor="test")
    body = refused(send(roles, signed(provider, at=roles.clock())), 400, "InvalidSignature")
    assert "revoked" in body["message"]
    assert SERVICE not in listed(roles)
    done = publish(roles)
    assert done.published == {}
    assert "revoked" in done.refused[str(federation.POPULATION_REGISTRY)]
    # The console's operator is told why, in the authority's words; nothing is published.
    olga = signed_in(roles, "olga")
    pressed = olga.submit(olga.get(f"{console(roles)}/services"), 'id="publish"')
    assert pressed.status_code == 502
    assert "revoked" in pressed.text
    assert 'id="done"' not in pressed.text
    olga.close()
    assert SERVICE not in listed(roles)


def test_a_refused_subsystem_does_not_stop_the_others(fresh_roles: Roles) -> None:
    """A subsystem the authority does not know beside the registered one: the registered one
    is still published, and the refusal names the one refused. (A federation of its own: the
    module's authority never refills its rate limit, as its clock stands still.)"""
    roles, provider = fresh_roles, fresh_roles.provider
    archive = SubsystemId(federation.POPULATION, "population-archive")
    unknown = provider.settings.services[0].model_copy(update={"subsystem": archive.subsystem_code})
    settings = provider.settings.model_copy(
        update={"services": [unknown, *provider.settings.services]}
    )
    done = publish(roles, settings)
    assert done.published == {str(federation.POPULATION_REGISTRY): len(provider.settings.services)}
    assert list(done.refused) == [str(archive)]
    assert str(archive) in done.refused[str(archive)]


def test_an_authority_lost_midway_leaves_earlier_refusals_as_they_were(roles: Roles) -> None:
    provider = roles.provider
    archive = SubsystemId(federation.POPULATION, "population-archive")
    unknown = provider.settings.services[0].model_copy(update={"subsystem": archive.subsystem_code})
    settings = provider.settings.model_copy(
        update={"services": [unknown, *provider.settings.services]}
    )
    answers = iter([httpx.Response(403, json={"message": "not a subsystem of yours"})])

    def authority(request: httpx.Request) -> httpx.Response:
        try:
            return next(answers)
        except StopIteration:
            raise httpx.ConnectError("connection refused", request=request) from None

    done = publish(roles, settings, transport=httpx.MockTransport(authority))
    assert done.published == {}
    # The registry's subsystem is sent first (the settings name it), the archive after.
    assert done.refused[str(federation.POPULATION_REGISTRY)] == "not a subsystem of yours"
    assert "cannot be reached" in done.refused[str(archive)]


def test_the_authoritys_rate_limit_is_waited_out_and_the_catalogue_signed_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # One catalogue at once from an address, one more a second later.
    monkeypatch.setenv("EXCHANGE_CENTRAL_RATE_LIMIT_PER_CLIENT", "1")
    monkeypatch.setenv("EXCHANGE_CENTRAL_RATE_LIMIT_PER_CLIENT_BURST", "1")
    with build_roles(tmp_path / "federation") as roles:
        provider, slept = roles.provider, []

        def sleep(seconds: float) -> None:  # the authority's clock moves as the publisher waits
            slept.append(seconds)
            roles.clock.advance(timedelta(seconds=seconds))

        expected = {str(federation.POPULATION_REGISTRY): len(provider.settings.services)}
        assert publish(roles, sleep=sleep).published == expected
        assert slept == []
        roles.clock.advance(timedelta(seconds=0.5))
        # 429, Retry-After 1: waited out, signed anew (not a replay).
        again = publish(roles, sleep=sleep)
        assert (again.published, again.refused, slept) == (expected, {}, [1.0])
        # Past what the caller would wait: refused, saying when to try again.
        refused = publish(roles, sleep=sleep, max_wait=0)
        assert refused.published == {}
        reason = refused.refused[str(federation.POPULATION_REGISTRY)]
        assert reason.endswith("(try again in 1 s)"), reason


@pytest.mark.parametrize(
    "retry_after",
    [b"0", b"\xb2", b"9" * 5000, b"1.5", b"-1", b"1234567"],
    ids=["0", "latin1", "long", "dot", "neg", "past-the-bound"],
)
def test_a_proxy_answering_429_with_a_strange_retry_after_ends_in_a_refusal(
    roles: Roles, retry_after: bytes
) -> None:
    """Something before the authority (a proxy) answers every catalogue 429 with a Retry-After
    the authority never sends: publishing waits a bounded time and says so, never loops or
    crashes."""
    answered: list[str] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            answered.append(self.path)
            body = b'{"message": "slow down"}'
            self.send_response(429)
            self.send_header("Retry-After", retry_after.decode("latin-1"))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    slept: list[float] = []
    try:
        provider = roles.provider
        done = publishing.publish(
            provider.settings,
            provider.declared.enabled(),
            central_url=f"http://127.0.0.1:{server.server_address[1]}",
            signer=provider.signer,
            clock=roles.clock,
            sleep=slept.append,
            max_wait=3,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert done.published == {}
    assert "slow down" in done.refused[str(federation.POPULATION_REGISTRY)]
    assert sum(slept) <= 3
    assert len(answered) <= 4
    if retry_after == b"0":
        assert slept == [1, 1, 1]  # a zero is waited as a second, within the bound
    elif retry_after == b"1234567":  # longer than the bound: refused at once, saying when
        assert (slept, len(answered)) == ([], 1)
        assert "(try again in 1234567 s)" in done.refused[str(federation.POPULATION_REGISTRY)]
    else:  # no instruction: refused at the first answer, nothing waited
        assert (slept, len(answered)) == ([], 1)


def test_the_same_catalogue_sent_at_once_is_published_once(roles: Roles) -> None:
    """A replay racing the original: the database's unique digest decides, not the first look."""
    catalogue = signed(roles.provider, at=roles.clock() + timedelta(seconds=1), services=[])
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(
            r.status_code for r in pool.map(lambda _: send(roles, catalogue), range(6))
        )
    assert statuses == [200, 409, 409, 409, 409, 409]


def test_of_two_catalogues_racing_the_later_signed_stays(roles: Roles) -> None:
    """Whichever commits first, a catalogue signed earlier never replaces one signed later."""
    for round_ in range(4):
        at = roles.clock() + timedelta(seconds=5 + 2 * round_)
        earlier = signed(roles.provider, at=at, services=[entry(f"race-old-{round_}")])
        later = signed(roles.provider, at=at + timedelta(seconds=1), services=[entry("race-new")])
        with ThreadPoolExecutor(max_workers=2) as pool:
            old, new = pool.map(lambda c: send(roles, c), (earlier, later))
        assert new.status_code == 200, new.text
        assert old.status_code in (200, 400), old.text  # first, or refused as stale
        now_listed = listed(roles)
        assert f"{federation.POPULATION_REGISTRY}/race-new" in now_listed
        assert f"{federation.POPULATION_REGISTRY}/race-old-{round_}" not in now_listed


def test_a_malformed_catalogue_is_refused_and_changes_nothing(roles: Roles) -> None:
    # Signed after every catalogue this module published: refused for its form, not as stale.
    provider, now = roles.provider, roles.clock() + timedelta(seconds=30)
    before = listed(roles)
    no_time = provider.signer.sign({"gateway": str(provider.id), "subsystem": "x"}, CATALOGUE_TYPE)
    refused(send(roles, no_time), 400, "InvalidRequest")
    refused(
        send(roles, signed(provider, at=now, subsystem="no-subsystem")), 400, "InvalidIdentifier"
    )
    bad_policy = {**entry("bad-policy"), "consent_policy": "whatever"}
    refused(send(roles, signed(provider, at=now, services=[bad_policy])), 400, "InvalidRequest")
    elsewhere = entry("elsewhere", subsystem=federation.CITIZEN_PORTAL)
    refused(send(roles, signed(provider, at=now, services=[elsewhere])), 400, "InvalidRequest")
    assert listed(roles) == before
