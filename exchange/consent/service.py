"""One consent service's parts, wired once per process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx

from exchange.consent import files
from exchange.consent.settings import ConsentSettings
from exchange.consent.store import ConsentStore
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.identity.login import OidcLogin
from exchange.identity.tokens import KeySet, TokenValidator
from exchange.trust.globalconf_client import GlobalConfClient, utcnow
from exchange.trust.signed import Signer
from exchange.trust.view import relying_party


class ConsentService:
    def __init__(
        self,
        settings: ConsentSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        globalconf: GlobalConfClient | None = None,
        http: httpx.AsyncBaseTransport | None = None,
        blocking_http: httpx.BaseTransport | None = None,
    ) -> None:
        """``http`` and ``blocking_http`` (httpx) reach the identity provider: the network
        unless transports are injected (tests)."""
        self.settings = settings
        self.clock = clock
        key, certificate = files.load(settings.data_dir)
        self.trust = relying_party(
            anchor=settings.anchor, data_dir=settings.data_dir, clock=clock, globalconf=globalconf
        )
        self.globalconf = self.trust.client
        self.engine = build_engine(settings.db_url)
        migrate.upgrade("consent", self.engine)
        public = settings.public_url.rstrip("/")
        self.signer = Signer(key, certificate)
        self.store = ConsentStore(
            self.engine,
            name=settings.name,
            signer=self.signer,
            subject_key=files.secret(settings.data_dir, "subject.key"),
            status_url=public,
            jurisdiction=self.globalconf.anchor.instance,
            clock=clock,
        )
        identity = settings.identity
        self.login = OidcLogin(
            issuer=identity.issuer,
            client_id=identity.client_id,
            client_secret=identity.client_secret,
            redirect_uri=f"{public}/callback",
            transport=http,
            keys_transport=blocking_http,
        )
        # Citizens' own programs call the API with an ID token issued to this service.
        self.citizens = TokenValidator(
            issuer=identity.issuer.rstrip("/"),
            audience=identity.client_id,
            keys=KeySet(url=identity.jwks_url, transport=blocking_http),
        )
        self.session_secret = files.secret(settings.data_dir, "session.key")

    def close(self) -> None:
        self.engine.dispose()
