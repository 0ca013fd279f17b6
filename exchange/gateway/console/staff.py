"""Who may do what in the console: roles, the rights they give, and the signed-in staff member.

============  ========  =======  ======
right         operator  auditor  viewer
============  ========  =======  ======
``view``      yes       yes      yes     overview, services, access rights, certificates and
                                         their requests, change log
``monitor``   yes       yes              operations figures and their query API
``audit``               yes              audit browser, verification, export
``change``    yes                        declare, edit, disable, enable, test and publish
                                         services; grant and revoke access rights; generate
                                         the keys, enrol with the authority's one-time code
============  ========  =======  ======

Operators change the gateway but do not hold the audit trail of what it did; auditors read and
export it but change nothing. Someone who needs both holds both roles.

A staff member is known from a session (a browser signed in at the issuer) or, for programs
(monitoring systems), from an ID token of the same issuer and client sent as a bearer token.
Roles come only from the token's role claim, mapped by ``[console.roles]``
(:mod:`exchange.web.staff`, shared with the central authority's console).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from exchange.gateway.settings import ConsoleSpec
from exchange.web import staff as shared
from exchange.web.staff import Staff

Right = Literal["view", "monitor", "audit", "change"]
RIGHTS: dict[str, frozenset[str]] = {
    "operator": frozenset({"view", "monitor", "change"}),
    "auditor": frozenset({"view", "monitor", "audit"}),
    "viewer": frozenset({"view"}),
}
remember = shared.remember

__all__ = ["RIGHTS", "Right", "Staff", "from_claims", "remember", "signed_in"]


def from_claims(claims: Mapping[str, Any], spec: ConsoleSpec, *, until: int) -> Staff:
    return shared.from_claims(claims, spec, RIGHTS, until=until, where="this gateway's console")


def signed_in(session: dict[str, Any], *, at: datetime) -> Staff | None:
    return shared.signed_in(session, RIGHTS, at=at.timestamp())
