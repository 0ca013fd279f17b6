"""The audit log on a real database: group commit, tamper detection at the right position,
an unwritable store refusing cleanly, signed heads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from audit import bundle
from audit.heads import HeadKeeper
from audit.log import AuditEntry, AuditLog, canonical
from audit.verify import Anchors, Head, verify
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.errors import LoggingFailed
from exchange.trust.keys import serial_hex
from exchange.trust.signed import Signer
from tests.conftest import NOW, Clock, database_down, terminate_connections
from tests.factories import Instance, audit_store_unwritable

CHAIN = "EE/GOV/70000310/gw1/1"
MEMBER = "EE/GOV/70000310"


def entry(n: int) -> AuditEntry:
    return AuditEntry(
        side="provider",
        message_id=f"m-{n}",
        client="EE/GOV/70000001/citizen-portal",
        service="EE/GOV/70000310/population-registry/birth-certificate",
        status=200,
        fault=None,
        purpose="study-grant",
        legal_basis=None,
        consent=None,
        peer="EE/GOV/70000001/gw1",
        request_digest=f"r{n}",
        response_digest=f"s{n}",
        request_signature=None,
        request_claims_digest=None,
        response_signature=None,
    )


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = build_engine(database_url)
    migrate.upgrade("gateway", made)
    yield made
    made.dispose()


@pytest.fixture
def instance() -> Instance:
    return Instance(at=NOW - timedelta(days=1))


def make_log(engine: Engine, clock: Clock, key: bytes = b"k" * 32) -> AuditLog:
    return AuditLog(engine, chain=CHAIN, key=key, clock=clock)


async def fill(log: AuditLog, count: int, subject: str | None = "EE38001085718") -> list[int]:
    return list(
        await asyncio.gather(*(log.append(entry(n), subject=subject) for n in range(count)))
    )


def check(engine: Engine, anchors: Anchors) -> object:
    return verify(CHAIN, bundle.stored(engine, CHAIN), bundle.heads(engine, CHAIN), anchors)


def anchors_for(instance: Instance, cert: object) -> Anchors:
    return Anchors(ca=instance.authority.certificate, signing=[cert])  # type: ignore[list-item]


async def signed_head(
    engine: Engine, log: AuditLog, instance: Instance, clock: Clock
) -> tuple[Anchors, HeadKeeper]:
    key, cert = instance.signing(MEMBER)
    keeper = HeadKeeper(
        audit=log,
        engine=engine,
        signer=Signer(key, cert),
        configuration=lambda: instance.configuration({MEMBER: [cert]}),
        clock=clock,
        interval=60,
        every=1000,
    )
    await keeper.sign_now()
    return anchors_for(instance, cert), keeper


async def test_concurrent_appends_share_commits_and_stay_in_order(
    engine: Engine, clock: Clock, instance: Instance
) -> None:
    log = make_log(engine, clock)
    seqs = await fill(log, 300)
    assert sorted(seqs) == list(range(300))
    anchors, _ = await signed_head(engine, log, instance, clock)
    report = check(engine, anchors)
    assert report.ok, report.problem  # type: ignore[attr-defined]
    assert (report.records, report.heads) == (300, 1)  # type: ignore[attr-defined]
    with engine.connect() as connection:
        subjects = {
            row[0] for row in connection.execute(text("SELECT DISTINCT subject FROM audit_records"))
        }
    assert len(subjects) == 1
    assert "EE38001085718" not in next(iter(subjects))  # stored only as a keyed hash
    await log.close()


async def test_restart_continues_the_same_chain(
    engine: Engine, clock: Clock, instance: Instance
) -> None:
    first = make_log(engine, clock)
    await fill(first, 5)
    await first.close()
    again = make_log(engine, clock)
    assert await again.append(entry(99), subject=None) == 5
    anchors, _ = await signed_head(engine, again, instance, clock)
    assert check(engine, anchors).ok  # type: ignore[attr-defined]
    await again.close()


def tamper(engine: Engine, statements: list[str]) -> None:
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


def flip_byte(engine: Engine, seq: int) -> None:
    with engine.begin() as connection:
        body = connection.execute(
            text("SELECT body FROM audit_records WHERE seq = :s"), {"s": seq}
        ).scalar_one()
        data = bytearray(body)
        data[data.index(b'"m-') + 3] ^= 0x01  # one byte of the message id
        connection.execute(
            text("UPDATE audit_records SET body = :b WHERE seq = :s"), {"b": bytes(data), "s": seq}
        )


@pytest.mark.parametrize(
    ("damage", "position"),
    [
        (lambda e: flip_byte(e, 7), 7),
        (lambda e: flip_byte(e, 19), 19),  # the last record: only the signed head pins it
        (lambda e: tamper(e, ["DELETE FROM audit_records WHERE seq = 12"]), 12),
        (
            lambda e: tamper(
                e,
                [
                    "UPDATE audit_records SET seq = -1 WHERE seq = 4",
                    "UPDATE audit_records SET seq = 4 WHERE seq = 5",
                    "UPDATE audit_records SET seq = 5 WHERE seq = -1",
                ],
            ),
            4,
        ),
        (lambda e: tamper(e, ["DELETE FROM audit_records WHERE seq >= 15"]), 15),
        # The columns the usage view finds records by: hiding one from its person is found.
        (lambda e: tamper(e, ["UPDATE audit_records SET listed = false WHERE seq = 9"]), 9),
        # A release passed off as a refused attempt, among the attempts a member can flood.
        (lambda e: tamper(e, ["UPDATE audit_records SET released = false WHERE seq = 6"]), 6),
        (lambda e: tamper(e, ["UPDATE audit_records SET subject = NULL WHERE seq = 3"]), 3),
        (lambda e: tamper(e, ["UPDATE audit_records SET subject = 'other' WHERE seq = 11"]), 11),
    ],
    ids=[
        "flip-byte",
        "flip-byte-last",
        "delete-row",
        "reorder-rows",
        "truncate",
        "unlist",
        "unrelease",
        "drop-subject",
        "other-subject",
    ],
)
async def test_tampering_is_found_at_its_position(
    engine: Engine, clock: Clock, instance: Instance, damage: object, position: int
) -> None:
    log = make_log(engine, clock)
    await fill(log, 20)
    anchors, _ = await signed_head(engine, log, instance, clock)
    assert check(engine, anchors).ok  # type: ignore[attr-defined]
    damage(engine)  # type: ignore[operator]
    report = check(engine, anchors)
    assert report.problem is not None  # type: ignore[attr-defined]
    assert report.problem.position == position, report.problem  # type: ignore[attr-defined]
    await log.close()


async def test_head_signed_by_another_member_is_refused(
    engine: Engine, clock: Clock, instance: Instance
) -> None:
    log = make_log(engine, clock)
    await fill(log, 3)
    key, cert = instance.signing("EE/GOV/70000001")
    keeper = HeadKeeper(
        audit=log,
        engine=engine,
        signer=Signer(key, cert),
        configuration=lambda: instance.configuration({}),
        clock=clock,
        interval=60,
        every=1000,
    )
    await keeper.sign_now()
    _, member_cert = instance.signing(MEMBER)
    report = check(engine, anchors_for(instance, member_cert))
    assert report.problem is not None  # type: ignore[attr-defined]
    assert "not signed by a known key" in report.problem.message  # type: ignore[attr-defined]
    await log.close()


async def test_unwritable_store_refuses_cleanly_and_loses_nothing(
    engine: Engine, clock: Clock, instance: Instance
) -> None:
    log = make_log(engine, clock)
    await fill(log, 3)
    with audit_store_unwritable(engine):
        results = await asyncio.gather(
            *(log.append(entry(n), subject=None) for n in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, LoggingFailed) for r in results)
        assert not log.writable
        assert not await log.probe()
    assert await log.probe()  # a write commits again (the probe writes only its own table)
    assert log.writable
    assert await log.append(entry(50), subject=None) == 3  # the chain goes on where it stood
    anchors, _ = await signed_head(engine, log, instance, clock)
    report = check(engine, anchors)
    assert report.ok, report.problem  # type: ignore[attr-defined]
    assert report.records == 4  # type: ignore[attr-defined]
    await log.close()


async def test_subject_hash_is_keyed(engine: Engine, clock: Clock) -> None:
    one, other = make_log(engine, clock, b"a" * 32), make_log(engine, clock, b"b" * 32)
    assert one.subject_hash("EE38001085718") == one.subject_hash("EE38001085718")
    assert one.subject_hash("EE38001085718") != other.subject_hash("EE38001085718")
    assert one.subject_hash(None) is None
    assert json.loads(json.dumps(one.subject_hash("x")))


async def test_first_record_and_odd_heads_are_reported_not_crashed(
    engine: Engine, clock: Clock, instance: Instance
) -> None:
    log = make_log(engine, clock)
    await fill(log, 4)
    anchors, _ = await signed_head(engine, log, instance, clock)
    with engine.begin() as connection:
        body = connection.execute(text("SELECT body FROM audit_records WHERE seq = 0")).scalar_one()
        forged = body.replace(b'"prev":"' + b"0" * 64, b'"prev":"' + b"1" * 64)
        connection.execute(text("UPDATE audit_records SET body = :b WHERE seq = 0"), {"b": forged})
    report = check(engine, anchors)
    assert report.problem is not None  # type: ignore[attr-defined]
    assert report.problem.position == 0  # type: ignore[attr-defined]
    heads = [Head(CHAIN, 4.0, "00", "x.y.z", None)]  # type: ignore[arg-type]
    odd = verify(CHAIN, [], heads, anchors)
    assert odd.problem is not None
    await log.close()


async def test_head_by_a_revoked_certificate_is_refused(
    engine: Engine, clock: Clock, instance: Instance
) -> None:
    log = make_log(engine, clock)
    await fill(log, 3)
    anchors, _ = await signed_head(engine, log, instance, clock)
    revoked = Anchors(
        ca=anchors.ca,
        signing=anchors.signing,
        revoked=frozenset(serial_hex(c.serial_number) for c in anchors.signing),
    )
    report = check(engine, revoked)
    assert report.problem is not None  # type: ignore[attr-defined]
    assert "may not sign it" in report.problem.message  # type: ignore[attr-defined]
    await log.close()


async def test_a_connection_the_server_cut_is_replaced_and_an_outage_refuses(
    database_url: str, engine: Engine, clock: Clock, instance: Instance
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("a database server that cuts connections: PostgreSQL")
    log = make_log(engine, clock)
    assert await log.append(entry(0), subject=None) == 0
    terminate_connections(database_url)  # the writer's kept connection is dead now
    assert await log.append(entry(1), subject=None) == 1  # on a fresh one, nothing refused
    with database_down(database_url):
        with pytest.raises(LoggingFailed):
            await log.append(entry(2), subject=None)
        assert not log.writable
    assert await log.append(entry(3), subject=None) == 2  # the chain goes on where it stood
    anchors, _ = await signed_head(engine, log, instance, clock)
    report = check(engine, anchors)
    assert report.ok, report.problem  # type: ignore[attr-defined]
    assert report.records == 3  # type: ignore[attr-defined]
    await log.close()


record_values = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()


@settings(max_examples=300)
@given(st.dictionaries(st.text(), record_values, max_size=8))
def test_a_record_body_is_the_canonical_json_it_always_was(record: dict[str, object]) -> None:
    """The chain hashes these bytes: their spelling must never change."""
    as_before = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        expected = as_before.encode()
    except UnicodeEncodeError:  # a lone surrogate: refused, then as now
        with pytest.raises(TypeError):
            canonical(record)
        return
    assert canonical(record) == expected
