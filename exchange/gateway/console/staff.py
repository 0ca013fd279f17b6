"""Who may do what in the console: roles, the rights they give, and the signed-in staff member.

============  ========  =======  ======
right         operator  auditor  viewer
============  ========  =======  ======
``view``      yes       yes      yes     overview, access rights, certificates, change log
``monitor``   yes       yes              operations figures and their query API
``audit``               yes              audit browser, verification, export
``change``    yes                        grant and revoke access rights
============  ========  =======  ======

Operators change the gateway but do not hold the audit trail of what it did; auditors read and
export it but change nothing. Someone who needs both holds both roles.

A staff member is known from a session (a browser signed in at the issuer) or, for programs
(monitoring systems), from an ID token of the same issuer and client sent as a bearer token.
Roles come only from the token's role claim, mapped by ``[console.roles]``: a claim value not
listed there gives nothing, and a token that gives no role signs nobody in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from exchange.errors import AccessDenied
from exchange.gateway.settings import ConsoleSpec
from exchange.web.languages import N_

Right = Literal["view", "monitor", "audit", "change"]
RIGHTS: dict[str, frozenset[Right]] = {
    "operator": frozenset({"view", "monitor", "change"}),
    "auditor": frozenset({"view", "monitor", "audit"}),
    "viewer": frozenset({"view"}),
}
ROLE_NAMES = (N_("operator"), N_("auditor"), N_("viewer"))  # as pages show them
SESSION_KEY = "staff"


@dataclass(frozen=True, slots=True)
class Staff:
    subject: str
    name: str
    roles: tuple[str, ...]
    expires: int  # Unix time the session ends

    @property
    def actor(self) -> str:
        """How the change log names this member's changes."""
        return f"console:{self.subject}"

    def may(self, right: Right) -> bool:
        return any(right in RIGHTS.get(role, ()) for role in self.roles)

    def require(self, right: Right) -> None:
        if not self.may(right):
            raise AccessDenied(
                f"your roles ({', '.join(self.roles)}) do not allow this ({right})", detail=right
            )


def roles_of(claims: Mapping[str, Any], spec: ConsoleSpec) -> tuple[str, ...]:
    """The console roles an ID token's claims give (none if its role claim lists none known)."""
    raw = claims.get(spec.role_claim)
    values: Sequence[object] = (
        [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    )
    found = {
        role for value in values if isinstance(value, str) for role in spec.roles.get(value, [])
    }
    return tuple(sorted(found))


def from_claims(claims: Mapping[str, Any], spec: ConsoleSpec, *, until: int) -> Staff:
    roles = roles_of(claims, spec)
    if not roles:
        raise AccessDenied("your sign-in gives you no role in this gateway's console")
    subject = str(claims["sub"])
    return Staff(subject, str(claims.get("name") or subject), roles, until)


def remember(session: dict[str, Any], staff: Staff) -> None:
    session[SESSION_KEY] = {
        "sub": staff.subject,
        "name": staff.name,
        "roles": list(staff.roles),
        "exp": staff.expires,
    }


def signed_in(session: dict[str, Any], *, at: datetime) -> Staff | None:
    raw = session.get(SESSION_KEY)
    if not isinstance(raw, dict) or int(raw.get("exp", 0)) <= at.timestamp():
        session.pop(SESSION_KEY, None)
        return None
    return Staff(str(raw["sub"]), str(raw["name"]), tuple(raw["roles"]), int(raw["exp"]))
