"""Witnessed tree heads: the central authority countersigns each gateway's heads and refuses
(and reports) a head that forks a log it has seen."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sqlalchemy import Engine, event, select, update
from sqlalchemy.orm import Session

from audit import bundle
from audit.heads import HeadKeeper
from audit.log import AuditLog
from audit.models import AuditRecord, TreeHead
from audit.receipt import head_document, verify_receipt
from audit.witness import verify_cosignature
from exchange.central.service import build as build_central
from exchange.central.witness import MAX_CHAINS_PER_GATEWAY
from exchange.db.engine import build_engine, sqlite_url
from exchange.gateway import files
from exchange.gateway.node import Gateway
from exchange.gateway.peerwitnessing import PeerWitnessing
from exchange.gateway.witnessing import Witnessing
from tests.browser import Browser
from tests.gateway.conftest import MARI, RESIDENCE, Roles
from tests.gateway.test_usage import usage
from tests.servers import exchange


def exchanges(roles: Roles, count: int) -> None:
    for _ in range(count):  # a refusal is audited like any exchange, and is cheap
        assert roles.call(f"{RESIDENCE}?person={MARI}").status_code in (200, 403, 404)


def witness_url(roles: Roles) -> str:
    return roles.roles.central.settings.url + "/witness/v1"


def signed_and_witnessed(roles: Roles, gateway: Gateway) -> TreeHead:
    roles.roles.run(gateway.heads.sign_now())
    head = roles.roles.run(gateway.witnessing.submit_pending())
    assert head is not None
    return head


def ca_of(gateway: Gateway) -> x509.Certificate:
    pem = gateway.trust.view().configuration.ca_certificates[0]
    return x509.load_pem_x509_certificate(pem.encode())


def test_heads_are_witnessed_and_the_countersignature_verifies(
    fresh_roles: Roles, tmp_path: Path
) -> None:
    roles, provider = fresh_roles, fresh_roles.provider
    exchanges(roles, 2)
    first = signed_and_witnessed(roles, provider)
    assert first.cosignature is not None
    assert provider.witnessing.state == "ok"
    exchanges(roles, 3)
    second = signed_and_witnessed(roles, provider)  # with a consistency proof from the first
    assert second.size > first.size
    assert second.cosignature is not None
    cosignature = json.loads(second.cosignature)
    verify_cosignature(
        cosignature,
        chain=second.chain,
        size=second.size,
        root=second.root,
        head_signature=second.signature,
        ca=ca_of(provider),
    )
    held = roles.http.get(f"{witness_url(roles)}/heads", params={"chain": second.chain}).json()
    assert (held["size"], held["root"]) == (second.size, second.root)
    # The countersignature is plain ECDSA P-256 over SHA-256: openssl checks it.
    signing_input, _, raw = cosignature["signature"].rpartition(".")
    signature = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    certificate = x509.load_pem_x509_certificate(cosignature["certificate"].encode())
    (tmp_path / "data").write_bytes(signing_input.encode())
    (tmp_path / "sig.der").write_bytes(encode_dss_signature(r, s))
    (tmp_path / "witness.pub").write_bytes(
        certificate.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    checked = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", "witness.pub", "-signature", "sig.der", "data"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "Verified OK" in checked.stdout, checked.stderr
    health = roles.http.get(f"http://127.0.0.1:{roles.ports.provider_consumer}/health").json()
    assert health["witness"] == "ok"


def fork_on_a_copy(roles: Roles, tmp_path: Path) -> Witnessing:
    """A copy of the provider's database whose unwitnessed last record is rewritten and whose
    history is signed anew with the member's key, as whoever holds both could."""
    provider = roles.provider
    forged, engine = forged_copy(roles, tmp_path)
    return Witnessing(
        audit=forged,
        engine=engine,
        configuration=lambda: provider.trust.view().configuration,
        interval=5,
        transport=roles.roles._blocking,
    )


def forged_copy(roles: Roles, tmp_path: Path) -> tuple[AuditLog, Engine]:
    """The forged log of :func:`fork_on_a_copy`, its new head signed, and its database."""
    provider = roles.provider
    copy = tmp_path / "copy.db"
    source = sqlite3.connect(provider.settings.data_dir / "gateway.db")
    target = sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.close()
    engine = build_engine(sqlite_url(copy))
    chain = provider.audit.chain
    with Session(engine) as session:
        last = session.scalar(
            select(AuditRecord)
            .where(AuditRecord.chain == chain)
            .order_by(AuditRecord.seq.desc())
            .limit(1)
        )
        assert last is not None
        record = json.loads(last.body)
        record["status"] = 404 if record["status"] != 404 else 200  # what happened is changed
        session.execute(
            update(AuditRecord)
            .where(AuditRecord.chain == chain, AuditRecord.seq == last.seq)
            .values(body=json.dumps(record, sort_keys=True, separators=(",", ":")).encode())
        )
        session.commit()
    forged = AuditLog(
        engine, chain=chain, key=files.audit_key(provider.settings), clock=roles.roles.clock
    )
    keeper = HeadKeeper(
        audit=forged,
        engine=engine,
        signer=provider.signer,
        configuration=lambda: provider.trust.view().configuration,
        clock=roles.roles.clock,
        interval=5,
        every=1000,
        transport=roles.roles._blocking,
    )
    roles.roles.run(keeper.sign_now())
    return forged, engine


def test_a_forked_log_is_refused_and_reported(fresh_roles: Roles, tmp_path: Path) -> None:
    roles, provider = fresh_roles, fresh_roles.provider
    exchanges(roles, 2)
    signed_and_witnessed(roles, provider)
    exchanges(roles, 2)  # records no head covers yet
    forked = fork_on_a_copy(roles, tmp_path)
    honest = signed_and_witnessed(roles, provider)  # the witness sees the real history first
    assert honest.cosignature is not None
    refused = roles.roles.run(forked.submit_pending())
    assert refused is not None
    assert refused.cosignature is None
    assert forked.state == "refused"
    assert forked.refusal is not None
    assert forked.refusal["type"] == "Client.AuditLogForked"
    # The authority reports it: the list, health and metrics.
    forks = roles.http.get(f"{witness_url(roles)}/forks").json()
    assert [(f["chain"], f["presented"]["size"]) for f in forks] == [
        (provider.audit.chain, honest.size)
    ]
    assert forks[0]["witnessed"]["root"] == honest.root != forks[0]["presented"]["root"]
    central = roles.roles.central.settings.url
    health = roles.http.get(f"{central}/health").json()
    assert health["witness"] == {"status": "FORK DETECTED", "forks": 1}
    metrics = roles.http.get(f"{central}/metrics").text
    assert "exchange_witness_forks 1.0" in metrics
    assert 'exchange_witness_heads_total{outcome="forked"} 1.0' in metrics
    # And a restarted authority still holds the latest heads and the fork.
    again = build_central(roles.roles.central.settings, clock=roles.roles.clock)
    assert again.witness.fork_count() == 1
    held = again.witness.latest(provider.audit.chain)
    assert held is not None
    assert held["root"] == honest.root


def post(roles: Roles, body: dict[str, Any]) -> httpx.Response:
    return roles.http.post(f"{witness_url(roles)}/heads", json=body)


def test_bad_signatures_unknown_chains_and_stale_proofs_are_refused(fresh_roles: Roles) -> None:
    roles, provider = fresh_roles, fresh_roles.provider
    exchanges(roles, 2)
    first = signed_and_witnessed(roles, provider)
    exchanges(roles, 2)
    second = roles.roles.run(provider.heads.sign_now())
    document = {k: head_document(second)[k] for k in ("chain", "size", "root", "signature")}
    proof = [p.hex() for p in provider.audit.tree.consistency_proof(first.size, second.size)]
    # A root other than the signed one: the signature does not cover it; no alarm.
    forged = post(roles, {"head": document | {"root": "00" * 32}, "from_size": first.size})
    assert forged.status_code == 400
    assert forged.json()["type"] == "Client.InvalidSignature"
    # Signed by another member's key for this chain.
    other = roles.roles.consumer.signer.sign(
        {"chain": second.chain, "size": second.size, "root": second.root, "at": "2026-12-01"},
        "exchange-treehead+jws",
    )
    assert post(roles, {"head": document | {"signature": other}}).status_code == 400
    # A chain of no registered gateway.
    unknown = document | {"chain": "EE/GOV/70000310/nope/1"}
    assert post(roles, {"head": unknown}).status_code == 403
    # A proof from a size the witness does not hold: try again from the one it names.
    stale = post(roles, {"head": document, "from_size": 1, "proof": proof})
    assert stale.status_code == 409
    assert stale.json()["type"] == "Client.StaleConsistencyProof"
    assert stale.json()["detail"] == str(first.size)
    assert roles.http.get(f"{roles.roles.central.settings.url}/health").json()["witness"] == {
        "status": "ok",
        "forks": 0,
    }
    accepted = post(roles, {"head": document, "from_size": first.size, "proof": proof})
    assert accepted.status_code == 200, accepted.text


def test_a_witness_that_is_down_is_tried_again_later(fresh_roles: Roles) -> None:
    roles, provider = fresh_roles, fresh_roles.provider
    exchanges(roles, 2)
    with roles.roles.loopback.down(roles.roles.central.settings.url):
        head = signed_and_witnessed(roles, provider)
        assert head.cosignature is None
        assert provider.witnessing.state == "unreachable"
        exchanges(roles, 2)  # exchanges go on meanwhile
        roles.roles.run(provider.heads.sign_now())
    head = roles.roles.run(provider.witnessing.submit_pending())
    assert head is not None
    assert head.cosignature is not None
    assert provider.witnessing.state == "ok"
    metrics = roles.http.get(f"http://127.0.0.1:{roles.ports.provider_consumer}/metrics").text
    assert 'exchange_witness_submissions_total{outcome="unreachable"} 1.0' in metrics


def test_verify_reports_witnessed_heads_and_receipts_carry_them(fresh_roles: Roles) -> None:
    roles, provider = fresh_roles, fresh_roles.provider
    config = str(roles.layout.provider)
    exchanges(roles, 2)
    roles.roles.run(provider.heads.sign_now())  # not yet witnessed
    unwitnessed = exchange("audit", "verify", "-c", config, "--require-witness")
    assert unwitnessed.returncode == 1
    assert "no witness countersignature" in unwitnessed.stderr
    head = roles.roles.run(provider.witnessing.submit_pending())
    assert head is not None
    checked = exchange("audit", "verify", "-c", config, "--require-witness")
    assert checked.returncode == 0, checked.stderr
    assert "1 witnessed (the newest head is witnessed)" in checked.stdout
    proof = roles.http.get(
        f"http://127.0.0.1:{roles.ports.provider_consumer}/audit/records/0/proof"
    ).json()
    assert proof["head"]["cosignature"] is not None
    anchors = bundle.anchors(
        provider.trust.view().configuration, head.chain, [provider.signer.certificate]
    )
    assert verify_receipt(proof, anchors=anchors).witnessed
    old = proof | {"head": {k: v for k, v in proof["head"].items() if k != "cosignature"}}
    assert verify_receipt(old, anchors=anchors).ok  # receipts from before stay valid
    forged = proof | {
        "head": proof["head"] | {"cosignature": {"signature": "x", "certificate": ""}}
    }
    assert not verify_receipt(forged, anchors=anchors).ok


def head_at(signature: str) -> datetime:
    payload = signature.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return datetime.fromisoformat(claims["at"])


def signed_head(gateway: Gateway, chain: str, size: int, root: str, at: datetime) -> dict[str, Any]:
    claims = {"chain": chain, "size": size, "root": root, "at": at.isoformat()}
    signature = gateway.signer.sign(claims, "exchange-treehead+jws")
    return {"chain": chain, "size": size, "root": root, "signature": signature}


def test_replayed_old_heads_are_stale_and_leave_no_trace(fresh_roles: Roles) -> None:
    roles, provider = fresh_roles, fresh_roles.provider
    exchanges(roles, 2)
    first = signed_and_witnessed(roles, provider)
    # Old signed heads are public: the witness serves them back.
    held = roles.http.get(f"{witness_url(roles)}/heads", params={"chain": first.chain}).json()
    old = {k: held[k] for k in ("chain", "size", "root", "signature")}
    exchanges(roles, 2)
    second = signed_and_witnessed(roles, provider)
    latest = roles.http.get(f"{witness_url(roles)}/heads", params={"chain": first.chain}).json()
    for _ in range(3):
        replayed = post(roles, {"head": old})
        assert replayed.status_code == 409
        assert replayed.json()["type"] == "Client.StaleConsistencyProof"
        assert replayed.json()["detail"] == str(second.size)
    # The latest head again: its countersignature as held, nothing written anew.
    again = post(roles, {"head": {k: latest[k] for k in old}, "from_size": second.size})
    assert again.status_code == 200, again.text
    assert again.json()["cosignature"] == latest["cosignature"]
    # The same size and root signed anew, no later: a repeat too, stale, not recorded.
    resigned = signed_head(
        provider, second.chain, second.size, second.root, head_at(second.signature)
    )
    assert post(roles, {"head": resigned}).json()["type"] == "Client.StaleConsistencyProof"
    after = roles.http.get(f"{witness_url(roles)}/heads", params={"chain": first.chain}).json()
    assert after == latest
    assert roles.http.get(f"{witness_url(roles)}/forks").json() == []
    central = roles.roles.central.settings.url
    assert roles.http.get(f"{central}/health").json()["witness"] == {"status": "ok", "forks": 0}
    metrics = roles.http.get(f"{central}/metrics").text
    assert 'exchange_witness_heads_total{outcome="stale"} 4.0' in metrics
    # Signed again later (a restarted gateway re-signs its current size): countersigned, held.
    later = signed_head(
        provider,
        second.chain,
        second.size,
        second.root,
        head_at(second.signature) + timedelta(seconds=1),
    )
    accepted = post(roles, {"head": later})
    assert accepted.status_code == 200, accepted.text
    now_held = roles.http.get(f"{witness_url(roles)}/heads", params={"chain": first.chain}).json()
    assert now_held["signature"] == later["signature"]
    assert roles.http.get(f"{witness_url(roles)}/forks").json() == []


def test_a_rollback_signed_later_is_a_fork_recorded_once(fresh_roles: Roles) -> None:
    roles, provider = fresh_roles, fresh_roles.provider
    exchanges(roles, 2)
    first = signed_and_witnessed(roles, provider)
    exchanges(roles, 2)
    second = signed_and_witnessed(roles, provider)
    # The member's key signs the older state again, after the newer one: a rolled back log.
    later = head_at(second.signature) + timedelta(seconds=1)
    rolled_back = signed_head(provider, first.chain, first.size, first.root, later)
    for _ in range(3):
        refused = post(roles, {"head": rolled_back})
        assert refused.status_code == 409
        assert refused.json()["type"] == "Client.AuditLogForked"
    forks = roles.http.get(f"{witness_url(roles)}/forks").json()
    assert [(f["presented"]["size"], f["witnessed"]["size"]) for f in forks] == [
        (first.size, second.size)
    ]
    central = roles.roles.central.settings.url
    assert roles.http.get(f"{central}/health").json()["witness"]["forks"] == 1


def test_a_countersignature_that_does_not_verify_is_not_kept(fresh_roles: Roles) -> None:
    roles, provider = fresh_roles, fresh_roles.provider
    exchanges(roles, 2)
    first = signed_and_witnessed(roles, provider)
    assert first.cosignature is not None
    inner = roles.roles._blocking

    def witness(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":  # a genuine cosignature, of another head
            return httpx.Response(200, json={"cosignature": json.loads(first.cosignature or "")})
        return inner.handle_request(request)

    outcomes: list[str] = []
    lying = Witnessing(
        audit=provider.audit,
        engine=provider.engine,
        configuration=lambda: provider.trust.view().configuration,
        interval=5,
        transport=httpx.MockTransport(witness),
        outcome=outcomes.append,
    )
    exchanges(roles, 2)
    roles.roles.run(provider.heads.sign_now())
    head = roles.roles.run(lying.submit_pending())
    assert head is not None
    assert head.cosignature is None
    with Session(provider.engine) as session:
        stored = session.get(TreeHead, (head.chain, head.size))
        assert stored is not None
        assert stored.cosignature is None
    assert lying.state == "refused"
    assert lying.refusal is not None
    assert lying.refusal["type"] == "Client.InvalidSignature"
    assert outcomes == ["refused"]


def test_chains_must_name_a_replica_and_are_capped_per_gateway(fresh_roles: Roles) -> None:
    roles, provider = fresh_roles, fresh_roles.provider
    gateway_id = provider.settings.id
    at = roles.roles.clock()
    bad = signed_head(provider, f"{gateway_id}/a b", 1, "11" * 32, at)
    assert post(roles, {"head": bad}).status_code == 403
    for i in range(MAX_CHAINS_PER_GATEWAY):
        made = post(roles, {"head": signed_head(provider, f"{gateway_id}/r{i}", 1, "11" * 32, at)})
        assert made.status_code == 200, made.text
    one_more = post(roles, {"head": signed_head(provider, f"{gateway_id}/r-x", 1, "11" * 32, at)})
    assert one_more.status_code == 403
    assert "chains" in one_more.json()["message"]
    # Chains already held go on.
    again = signed_head(provider, f"{gateway_id}/r0", 1, "11" * 32, at + timedelta(seconds=1))
    assert post(roles, {"head": again}).status_code == 200  # signed again later: held


def records_of(roles: Roles, citizen: str = MARI) -> list[dict[str, Any]]:
    """The citizen's usages with their receipts, as the portal fetches them."""
    found = usage(
        roles, "/v1/records", token=roles.id_token(citizen), user=citizen, userCode=citizen
    )
    assert found.status_code == 200, found.text
    usages: list[dict[str, Any]] = found.json()["usages"]
    return usages


def test_receipts_carry_the_newest_witnessed_head_or_say_witnessing_is_pending(
    fresh_roles: Roles, tmp_path: Path
) -> None:
    roles, provider = fresh_roles, fresh_roles.provider
    config = str(roles.layout.provider)
    anchors = bundle.anchors(
        provider.trust.view().configuration, provider.audit.chain, [provider.signer.certificate]
    )
    asked = {"X-Road-UserId": MARI}
    assert roles.call(f"{RESIDENCE}?person={MARI}", headers=asked).status_code == 200
    first = signed_and_witnessed(roles, provider)
    assert roles.call(f"{RESIDENCE}?person={MARI}", headers=asked).status_code == 200
    newer = roles.roles.run(provider.heads.sign_now())  # signed, not yet witnessed
    assert newer.size > first.size
    newest, older = records_of(roles)
    # The older access is proven against the witnessed head, not the newer unwitnessed one.
    assert older["receipt"]["witness"] == "countersigned"
    assert older["receipt"]["size"] == first.size
    assert verify_receipt(older["receipt"], anchors=anchors).witnessed
    # The newer one is covered only by the unwitnessed head: proven, and said to be pending.
    assert newest["receipt"]["witness"] == "pending"
    assert newest["receipt"]["size"] == newer.size
    pending = verify_receipt(newest["receipt"], anchors=anchors)
    assert pending.ok
    assert not pending.witnessed
    # The gateway's own proof endpoint picks the same heads.
    consumer = f"http://127.0.0.1:{roles.ports.provider_consumer}"
    seq = older["receipt"]["seq"]
    proven = roles.http.get(f"{consumer}/audit/records/{seq}/proof").json()
    assert (proven["size"], proven["witness"]) == (first.size, "countersigned")
    # A citizen who kept the pending receipt is told to fetch it again.
    kept = tmp_path / "receipts.json"
    kept.write_text(json.dumps([newest["receipt"]]))
    roles.roles.run(provider.witnessing.submit_pending())
    refused = exchange("audit", "verify", "-c", config, "--heads", str(kept), "--require-witness")
    assert refused.returncode == 1
    assert f"record {newest['receipt']['seq']} carries no witness countersignature" in (
        refused.stderr
    )
    # Once the witness has countersigned, a later fetch gets the witnessed head.
    again, _ = records_of(roles)
    assert again["receipt"]["witness"] == "countersigned"
    assert again["receipt"]["size"] == newer.size
    assert verify_receipt(again["receipt"], anchors=anchors).witnessed
    kept.write_text(json.dumps([again["receipt"]]))
    checked = exchange("audit", "verify", "-c", config, "--heads", str(kept), "--require-witness")
    assert checked.returncode == 0, checked.stderr
    assert "1 kept heads checked" in checked.stdout
    # A kept receipt whose countersignature was tampered with proves nothing.
    forged = again["receipt"] | {
        "head": again["receipt"]["head"] | {"cosignature": {"signature": "x", "certificate": ""}}
    }
    kept.write_text(json.dumps([forged]))
    bad = exchange("audit", "verify", "-c", config, "--heads", str(kept))
    assert bad.returncode == 1
    assert "countersignature does not verify" in bad.stderr


def test_the_portal_says_whether_the_witness_has_countersigned(fresh_roles: Roles) -> None:
    roles, provider = fresh_roles, fresh_roles.provider
    asked = {"X-Road-UserId": MARI}
    assert roles.call(f"{RESIDENCE}?person={MARI}", headers=asked).status_code == 200
    roles.roles.run(provider.heads.sign_now())
    portal = f"http://127.0.0.1:{roles.ports.portal}"
    browser = Browser(roles.roles.loopback.blocking())
    try:
        browser.sign_in(browser.get(f"{portal}/login?then=/usage"), MARI)
        listed = browser.get(f"{portal}/usage")
        assert "witness countersignature pending" in listed.text
        verified = browser.submit(listed, 'name="seq"')
        shown = verified.text.split('id="verification"')[1].split("</div>")[0]
        assert "Verified:" in shown
        assert 'id="witness-pending"' in shown
        roles.roles.run(provider.witnessing.submit_pending())
        # Checked again, the receipt is fetched anew and carries the countersignature.
        again = browser.submit(browser.get(f"{portal}/usage"), 'name="seq"')
        shown = again.text.split('id="verification"')[1].split("</div>")[0]
        assert "independent audit witness has countersigned" in shown
        assert 'id="witness-pending"' not in shown
        assert "witness countersignature pending" not in again.text
    finally:
        browser.close()


def with_peer_witness(roles: Roles) -> tuple[Gateway, Gateway]:
    """The consumer's gateway (another member) witnessing the provider's, which submits its
    heads to it besides the authority."""
    witness = roles.roles.restart(
        "consumer", roles.roles.consumer.settings.model_copy(update={"audit_peer_witness": True})
    )
    provider = roles.roles.restart(
        "provider",
        roles.roles.provider.settings.model_copy(
            update={"audit_peer_witnesses": [witness.settings.id]}
        ),
    )
    return witness, provider


def test_a_peer_gateway_witnesses_heads_and_verify_can_require_two_witnesses(
    fresh_roles: Roles,
) -> None:
    roles = fresh_roles
    witness, provider = with_peer_witness(roles)
    peer, config = witness.settings.id, str(roles.layout.provider)
    exchanges(roles, 2)
    first = signed_and_witnessed(roles, provider)
    head = roles.roles.run(provider.peer_witnessing.submit_pending())
    assert head is not None
    assert provider.peer_witnessing.states == {peer: "ok"}
    assert head.peer_cosignatures is not None
    assert set(json.loads(head.peer_cosignatures)) == {peer}
    exchanges(roles, 2)
    signed_and_witnessed(roles, provider)  # the peer gets a consistency proof from the first
    second = roles.roles.run(provider.peer_witnessing.submit_pending())
    assert second is not None
    assert second.size > first.size
    assert second.peer_cosignatures is not None
    assert peer in json.loads(second.peer_cosignatures)
    both = exchange("audit", "verify", "-c", config, "--require-witness", "--witnesses", "2")
    assert both.returncode == 0, both.stderr
    assert "(the newest head is witnessed by 2)" in both.stdout
    three = exchange("audit", "verify", "-c", config, "--require-witness", "--witnesses", "3")
    assert three.returncode == 1
    assert "2 of the 3 witness countersignatures required" in three.stderr
    # Receipts carry both, and count them.
    proof = roles.http.get(
        f"http://127.0.0.1:{roles.ports.provider_consumer}/audit/records/0/proof"
    ).json()
    anchors = bundle.anchors(
        provider.trust.view().configuration, second.chain, [provider.signer.certificate]
    )
    assert verify_receipt(proof, anchors=anchors).witnesses == 2
    # A peer cosignature filed under another gateway, or altered, fails the receipt.
    moved = proof["head"]["peer_cosignatures"][peer]
    misfiled = proof | {
        "head": proof["head"] | {"peer_cosignatures": {provider.settings.id: moved}}
    }
    assert not verify_receipt(misfiled, anchors=anchors).ok
    health = roles.http.get(f"http://127.0.0.1:{roles.ports.provider_consumer}/health").json()
    assert health["peer_witnesses"] == {peer: "ok"}
    # A gateway does not witness its own member's logs, nor a chain of no registered gateway.
    peer_url = f"https://127.0.0.1:{roles.ports.consumer_tls}/witness/v1"
    own = signed_head(witness, f"{witness.settings.id}/r0", 1, "11" * 32, roles.roles.clock())
    refused = roles.http.post(f"{peer_url}/heads", json={"head": own})
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"] == "Server.ServerProxy.AccessDenied"
    # An older head sent again is stale (old heads are public), not a fork.
    old = {k: head_document(first)[k] for k in ("chain", "size", "root", "signature")}
    stale = roles.http.post(f"{peer_url}/heads", json={"head": old})
    assert stale.status_code == 409, stale.text
    assert stale.json()["type"] == "Server.ServerProxy.StaleConsistencyProof"
    assert roles.http.get(f"{peer_url}/forks").json() == []
    # The same size signed anew (a restart) is a new JWS: no countersignature carries over.
    resigned = roles.roles.run(provider.heads.sign_now())
    assert resigned.size == second.size
    with Session(provider.engine) as session:
        stored = session.get(TreeHead, (resigned.chain, resigned.size))
        assert stored is not None
        assert (stored.cosignature, stored.peer_cosignatures) == (None, None)
    after = exchange("audit", "verify", "-c", config)
    assert after.returncode == 0, after.stderr


def test_a_fork_is_refused_and_reported_by_a_peer_witness(
    fresh_roles: Roles, tmp_path: Path
) -> None:
    roles = fresh_roles
    witness, provider = with_peer_witness(roles)
    peer = witness.settings.id
    exchanges(roles, 2)
    roles.roles.run(provider.heads.sign_now())
    assert roles.roles.run(provider.peer_witnessing.submit_pending()) is not None
    exchanges(roles, 2)  # records no head covers yet
    forged, engine = forged_copy(roles, tmp_path)
    roles.roles.run(provider.heads.sign_now())
    honest = roles.roles.run(provider.peer_witnessing.submit_pending())
    assert honest is not None
    assert honest.peer_cosignatures is not None  # the peer saw the real history first
    forking = PeerWitnessing(
        audit=forged,
        engine=engine,
        peers=[peer],
        view=provider.trust.view,
        transport=provider.transport,
        tls=provider.outbound_ssl,
        interval=5,
    )
    refused = roles.roles.run(forking.submit_pending())
    assert refused is not None
    assert refused.peer_cosignatures is None
    assert forking.states == {peer: "refused"}
    assert forking.refusals[peer]["type"] == "Server.ServerProxy.AuditLogForked"
    # The peer witness reports it: the list, health and metrics.
    peer_url = f"https://127.0.0.1:{roles.ports.consumer_tls}/witness/v1"
    forks = roles.http.get(f"{peer_url}/forks").json()
    assert [(f["chain"], f["presented"]["size"]) for f in forks] == [
        (provider.audit.chain, honest.size)
    ]
    assert forks[0]["witnessed"]["root"] == honest.root != forks[0]["presented"]["root"]
    consumer = f"http://127.0.0.1:{roles.ports.consumer_consumer}"
    health = roles.http.get(f"{consumer}/health").json()
    assert health["peer_witness"] == {"status": "FORK DETECTED", "forks": 1}
    metrics = roles.http.get(f"{consumer}/metrics").text
    assert 'exchange_peer_witness_heads_total{outcome="forked"} 1.0' in metrics
    # The same evidence sent again is refused, and kept once.
    again = roles.roles.run(forking.submit_pending())
    assert again is not None
    assert forking.states == {peer: "refused"}
    assert len(roles.http.get(f"{peer_url}/forks").json()) == 1
    # Off by default: a gateway that is no peer witness serves no such routes.
    provider_peer = f"https://127.0.0.1:{roles.ports.provider_tls}/witness/v1/forks"
    assert roles.http.get(provider_peer).status_code == 404


def test_a_head_signed_anew_while_the_witness_answers_keeps_no_countersignature_of_the_old(
    fresh_roles: Roles,
) -> None:
    """Two processes may sign heads of one chain (``exchange audit head`` beside ``serve``): the
    witness's countersignature of the old head, stored while the same size is signed anew, must
    not end up beside the new head's signature."""
    roles, provider = fresh_roles, fresh_roles.provider
    exchanges(roles, 2)
    old = roles.roles.run(provider.heads.sign_now())
    answered: list[TreeHead] = []

    def witness_answers_first(_c: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        writes_head = (
            statement.lstrip()
            .upper()
            .startswith(("UPDATE AUDIT_TREE_HEADS", "INSERT INTO AUDIT_TREE_HEADS"))
        )
        if writes_head and not answered:
            answered.append(old)  # the witness's own write below is not the one awaited
            answered.append(provider.witnessing._submit(old))

    event.listen(provider.engine, "before_cursor_execute", witness_answers_first)
    try:
        new = roles.roles.run(provider.heads.sign_now())
    finally:
        event.remove(provider.engine, "before_cursor_execute", witness_answers_first)
    assert answered[-1].cosignature is not None  # the old head was countersigned meanwhile
    assert (new.size, new.chain) == (old.size, old.chain)
    with Session(provider.engine) as session:
        stored = session.get(TreeHead, (new.chain, new.size))
        assert stored is not None
        assert stored.signature == new.signature != old.signature
        assert (stored.cosignature, stored.peer_cosignatures) == (None, None)
    verified = exchange("audit", "verify", "-c", str(roles.layout.provider))
    assert verified.returncode == 0, verified.stderr
    witnessed = roles.roles.run(provider.witnessing.submit_pending())  # the new one, later
    assert witnessed is not None
    assert witnessed.signature == new.signature
    assert witnessed.cosignature is not None
    assert exchange("audit", "verify", "-c", str(roles.layout.provider)).returncode == 0


def test_a_head_signed_anew_while_a_peer_answers_keeps_no_peer_countersignature_of_the_old(
    fresh_roles: Roles,
) -> None:
    roles = fresh_roles
    witness, provider = with_peer_witness(roles)
    exchanges(roles, 2)
    old = roles.roles.run(provider.heads.sign_now())
    signed_anew: list[TreeHead] = []

    def signed_anew_first(_c: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE AUDIT_TREE_HEADS") and not signed_anew:
            signed_anew.append(roles.roles.run(provider.heads.sign_now()))  # in another thread

    event.listen(provider.engine, "before_cursor_execute", signed_anew_first)
    try:
        roles.roles.run(provider.peer_witnessing.submit_pending())
    finally:
        event.remove(provider.engine, "before_cursor_execute", signed_anew_first)
    assert signed_anew
    assert signed_anew[0].signature != old.signature
    with Session(provider.engine) as session:
        stored = session.get(TreeHead, (old.chain, old.size))
        assert stored is not None
        assert stored.signature == signed_anew[0].signature
        assert stored.peer_cosignatures is None
    assert exchange("audit", "verify", "-c", str(roles.layout.provider)).returncode == 0
    witnessed = roles.roles.run(provider.peer_witnessing.submit_pending())  # the new one, later
    assert witnessed is not None
    assert witnessed.peer_cosignatures is not None
    assert set(json.loads(witnessed.peer_cosignatures)) == {witness.settings.id}
