"""The certificates page's actions: generate the keys and their requests, download a request,
enrol with the authority's one-time code (:mod:`exchange.gateway.enrolment`). Shared by the
console of a running gateway (renewal: new certificates for the keys it has) and the setup
console of one that has no certificates yet (:mod:`exchange.gateway.console.setup`).

Each action is written to the gateway's change log with the staff member as its actor; the
code itself is never logged (it is a credential until used, and useless after).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.responses import Response

from exchange.errors import Conflict, InvalidRequest
from exchange.gateway import changes, enrolment
from exchange.gateway.enrolment import Installed
from exchange.gateway.settings import GatewaySettings
from exchange.web.pages import HEADERS
from exchange.web.staff import Staff

MAX_CODE = 64


@dataclass(frozen=True, slots=True)
class Enrolling:
    settings: GatewaySettings
    engine: Engine
    clock: Callable[[], datetime]
    transport: httpx.BaseTransport | None = None  # to the central authority; the network
    central: str | None = None  # its URL; by default the trust anchor's

    def state(self) -> enrolment.State:
        return enrolment.state(self.settings)

    def generate(self, who: Staff) -> list[str]:
        """Both key pairs and requests, where absent; :class:`Conflict` if both exist."""
        if self.state().keys >= set(enrolment.NAMES):
            raise Conflict("this gateway has its keys already; they are not replaced here")
        made = [path.stem for path in enrolment.generate(self.settings)]
        self._record(who, "keys.generated", {"keys": made})
        return made

    def enrol(self, code: str, who: Staff) -> list[Installed]:
        code = code.strip()
        if not code or len(code) > MAX_CODE:
            raise InvalidRequest("type the enrolment code the authority gave you", detail="code")
        installed = enrolment.enrol(
            self.settings, code, central=self.central, transport=self.transport
        )
        self._record(
            who,
            "certificates.enrolled",
            {i.name: {"serial": i.serial, "not_after": i.not_after.isoformat()} for i in installed},
        )
        return installed

    def _record(self, who: Staff, action: str, detail: dict[str, object]) -> None:
        with Session(self.engine) as session:
            changes.record(
                session,
                at=self.clock(),
                actor=who.actor,
                action=action,
                target=self.settings.id,
                detail=detail,
            )
            session.commit()


def request_file(settings: GatewaySettings, name: str) -> Response:
    """The CSR ``name`` as a file to save (a request is no secret; its key stays here)."""
    pem = enrolment.request(settings, name)
    filename = f"{settings.id.replace('/', '_')}-{name}.csr"
    return Response(
        pem,
        media_type="application/pkcs10",
        headers={**HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'},
    )
