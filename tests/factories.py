"""Test PKI and documents, generated fresh for each test (never pasted)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, text

from exchange.trust import ca, globalconf
from exchange.trust.keys import generate_key


@dataclass
class Signer:
    """A configuration-signing key with its certificate, under a root of its own."""

    instance: str
    at: datetime
    key: ec.EllipticCurvePrivateKey = field(default_factory=generate_key)

    def __post_init__(self) -> None:
        root_key = generate_key()
        root = ca.create_root(
            root_key, instance=self.instance, at=self.at, validity=timedelta(days=3650)
        )
        self.authority = ca.CertificateAuthority(key=root_key, certificate=root)
        self.certificate = self.authority.issue(
            public_key=self.key.public_key(),
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "configuration signing")]),
            profile=ca.Profile.CONFIGURATION_SIGNING,
            at=self.at,
            validity=timedelta(days=365),
        )

    def anchor(
        self, *, instance: str | None = None, url: str = "http://127.0.0.1:1/globalconf"
    ) -> globalconf.TrustAnchor:
        return globalconf.anchor_for(
            instance=instance or self.instance,
            configuration_url=url,
            certificates=[self.certificate],
        )

    def configuration(
        self,
        *,
        version: int = 1,
        at: datetime | None = None,
        validity: timedelta = timedelta(hours=1),
        instance: str | None = None,
    ) -> globalconf.GlobalConfiguration:
        at = at or self.at
        return globalconf.GlobalConfiguration(
            format_version=globalconf.FORMAT_VERSION,
            instance=instance or self.instance,
            version=version,
            generated_at=at,
            expires_at=at + validity,
            central_url="http://127.0.0.1:1",
            ca_certificates=[],
            member_classes=["GOV"],
            members=[
                globalconf.Member(id=f"{self.instance}/GOV/70000310", name="Population Register")
            ],
            gateways=[],
            revoked_serials=[],
        )

    def document(self, **kwargs: object) -> bytes:
        return globalconf.sign(self.configuration(**kwargs), self.key, self.certificate)  # type: ignore[arg-type]


@dataclass
class Instance:
    """An instance CA issuing member signing certificates, and configurations listing them."""

    at: datetime
    name: str = "EE"

    def __post_init__(self) -> None:
        key = generate_key()
        root = ca.create_root(key, instance=self.name, at=self.at, validity=timedelta(days=3650))
        self.authority = ca.CertificateAuthority(key=key, certificate=root)

    def signing(
        self, member: str, *, validity: timedelta = timedelta(days=365)
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = generate_key()
        subject = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, member)])
        cert = self.authority.issue(
            public_key=key.public_key(),
            subject=subject,
            profile=ca.Profile.SIGNING,
            at=self.at,
            validity=validity,
        )
        return key, cert

    def configuration(
        self, members: dict[str, list[x509.Certificate]], *, revoked: list[str] = ()
    ) -> globalconf.GlobalConfiguration:  # type: ignore[assignment]
        from exchange.trust.keys import certificate_pem

        return globalconf.GlobalConfiguration(
            format_version=globalconf.FORMAT_VERSION,
            instance=self.name,
            version=1,
            generated_at=self.at,
            expires_at=self.at + timedelta(hours=1),
            central_url="http://127.0.0.1:1",
            ca_certificates=[certificate_pem(self.authority.certificate)],
            member_classes=["GOV"],
            members=[
                globalconf.Member(
                    id=m, name=m, signing_certificates=[certificate_pem(c) for c in certs]
                )
                for m, certs in members.items()
            ],
            gateways=[],
            revoked_serials=list(revoked),
        )


@contextlib.contextmanager
def audit_store_unwritable(engine: Engine) -> Iterator[None]:
    """Make every write to the audit log's tables (the records and the health probe's) fail at
    the database, as a full disk would, for the block's duration."""
    writes = [("audit_records", "INSERT"), ("audit_probes", "INSERT"), ("audit_probes", "UPDATE")]
    if engine.dialect.name == "sqlite":
        block = [
            f"CREATE TRIGGER block_{n} BEFORE {event} ON {table}"
            " BEGIN SELECT RAISE(ABORT, 'x'); END"
            for n, (table, event) in enumerate(writes)
        ]
        unblock = [f"DROP TRIGGER block_{n}" for n in range(len(writes))]
    else:
        block = [
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'x'; END $$"
            " LANGUAGE plpgsql",
            *(
                f"CREATE TRIGGER block_{n} BEFORE {event} ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION refuse()"
                for n, (table, event) in enumerate(writes)
            ),
        ]
        unblock = [
            *(f"DROP TRIGGER block_{n} ON {table}" for n, (table, _) in enumerate(writes)),
            "DROP FUNCTION refuse()",
        ]
    with engine.begin() as connection:
        for statement in block:
            connection.execute(text(statement))
    try:
        yield
    finally:
        with engine.begin() as connection:
            for statement in unblock:
                connection.execute(text(statement))
