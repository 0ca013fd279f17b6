"""X-Road compatible identifiers for members, subsystems, services and gateways.

Textual forms, segments separated by ``/``::

    member      INSTANCE/CLASS/MEMBER
    subsystem   INSTANCE/CLASS/MEMBER/SUBSYSTEM
    service     INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/VERSION]
    gateway     INSTANCE/CLASS/MEMBER/GATEWAY

Every segment is 1 to 255 characters from ``A-Z a-z 0-9 ' ( ) + , - . = ?`` and is neither ``.``
nor ``..``. Anything else is rejected with :class:`~exchange.errors.InvalidIdentifier` naming the
part, the character and its position. Nothing is ever normalised: ``%2F`` is not decoded, case is
kept, look-alike Unicode letters are refused rather than folded.

Identifiers are immutable, and every exchange parses the same few clients and services again:
``parse`` keeps the last :data:`PARSED_KEPT` identifiers it read, keyed by their exact text, and
hands out the same object for the same text. Text that is refused is never kept, so it is
checked, and refused, each time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from exchange.errors import InvalidIdentifier

MAX_SEGMENT_LENGTH = 255
PARSED_KEPT = 4096  # per kind: far more than the members, clients and services an instance has
_ALLOWED = re.compile(r"[A-Za-z0-9'()+,\-.=?]+")
_ALLOWED_SET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'()+,-.=?")


def check_segment(value: str, part: str) -> str:
    """Return ``value`` unchanged if it is a valid identifier segment, else raise."""
    if not value:
        raise InvalidIdentifier(f"{part} is empty", detail=part)
    if len(value) > MAX_SEGMENT_LENGTH:
        raise InvalidIdentifier(
            f"{part} is {len(value)} characters long; at most {MAX_SEGMENT_LENGTH} are allowed",
            detail=part,
        )
    if _ALLOWED.fullmatch(value) is None:
        position, char = next((i, c) for i, c in enumerate(value) if c not in _ALLOWED_SET)
        if char == "%":
            why = "'%' is not allowed; percent-encoded characters are not decoded"
        elif not char.isascii():
            why = f"non-ASCII character U+{ord(char):04X} is not allowed"
        elif not char.isprintable() or char.isspace():
            why = f"control or space character U+{ord(char):04X} is not allowed"
        else:
            why = f"character {char!r} is not allowed"
        raise InvalidIdentifier(f"{part} {value!r}: {why} (position {position})", detail=part)
    if value in {".", ".."}:
        raise InvalidIdentifier(f"{part} must not be {value!r}", detail=part)
    return value


def _split(text: str, kind: str, counts: tuple[int, ...]) -> list[str]:
    if not isinstance(text, str):
        raise InvalidIdentifier(f"{kind} identifier must be text", detail=kind)
    parts = text.split("/")
    if len(parts) not in counts:
        expected = " or ".join(str(c) for c in counts)
        raise InvalidIdentifier(
            f"{kind} identifier {text!r} has {len(parts)} segments; expected {expected}",
            detail=kind,
        )
    return parts


_Parsed = TypeVar("_Parsed")


def _kept(parse: Callable[[str], _Parsed]) -> Callable[[str], _Parsed]:
    """``parse``, its answers kept for the exact text (a ``str``, nothing that merely compares
    equal to one); anything else goes to ``parse`` itself, which refuses it."""
    cached = functools.lru_cache(maxsize=PARSED_KEPT)(parse)

    @functools.wraps(parse)
    def parsed(text: str) -> _Parsed:
        return cached(text) if type(text) is str else parse(text)

    parsed.cache_info = cached.cache_info  # type: ignore[attr-defined]
    return parsed


def unversioned(service: str) -> str:
    """A service id as text without its version (its first five segments). Not validated: for
    comparing ids that were, or are about to be, checked elsewhere."""
    return "/".join(service.split("/")[:5])


@dataclass(frozen=True, slots=True)
class MemberId:
    instance: str
    member_class: str
    member_code: str

    def __post_init__(self) -> None:
        check_segment(self.instance, "instance")
        check_segment(self.member_class, "member class")
        check_segment(self.member_code, "member code")

    @staticmethod
    def parse(text: str) -> MemberId:
        return _member(text)

    def __str__(self) -> str:
        return f"{self.instance}/{self.member_class}/{self.member_code}"


@dataclass(frozen=True, slots=True)
class SubsystemId:
    member: MemberId
    subsystem_code: str

    def __post_init__(self) -> None:
        check_segment(self.subsystem_code, "subsystem code")

    @staticmethod
    def parse(text: str) -> SubsystemId:
        return _subsystem(text)

    @property
    def instance(self) -> str:
        return self.member.instance

    def __str__(self) -> str:
        return f"{self.member}/{self.subsystem_code}"


ClientId = MemberId | SubsystemId


@_kept
def parse_client(text: str) -> ClientId:
    """Parse a client: a member (3 segments) or one of its subsystems (4 segments)."""
    parts = _split(text, "client", (3, 4))
    member = MemberId(*parts[:3])
    return member if len(parts) == 3 else SubsystemId(member, parts[3])


def member_of(client: ClientId) -> MemberId:
    return client.member if isinstance(client, SubsystemId) else client


@dataclass(frozen=True, slots=True)
class ServiceId:
    subsystem: SubsystemId
    service_code: str
    version: str | None = None

    def __post_init__(self) -> None:
        check_segment(self.service_code, "service code")
        if self.version is not None:
            check_segment(self.version, "service version")

    @staticmethod
    def parse(text: str) -> ServiceId:
        return _service(text)

    @property
    def member(self) -> MemberId:
        return self.subsystem.member

    def __str__(self) -> str:
        tail = f"/{self.version}" if self.version is not None else ""
        return f"{self.subsystem}/{self.service_code}{tail}"


@dataclass(frozen=True, slots=True)
class GatewayId:
    """A member's gateway (X-Road: security server), e.g. ``EE/GOV/70000310/gw1``."""

    member: MemberId
    gateway_code: str

    def __post_init__(self) -> None:
        check_segment(self.gateway_code, "gateway code")

    @staticmethod
    def parse(text: str) -> GatewayId:
        return _gateway(text)

    def __str__(self) -> str:
        return f"{self.member}/{self.gateway_code}"


@_kept
def _member(text: str) -> MemberId:
    instance, member_class, member_code = _split(text, "member", (3,))
    return MemberId(instance, member_class, member_code)


@_kept
def _subsystem(text: str) -> SubsystemId:
    instance, member_class, member_code, code = _split(text, "subsystem", (4,))
    return SubsystemId(MemberId(instance, member_class, member_code), code)


@_kept
def _service(text: str) -> ServiceId:
    parts = _split(text, "service", (5, 6))
    subsystem = SubsystemId(MemberId(*parts[:3]), parts[3])
    return ServiceId(subsystem, parts[4], parts[5] if len(parts) == 6 else None)


@_kept
def _gateway(text: str) -> GatewayId:
    instance, member_class, member_code, code = _split(text, "gateway", (4,))
    return GatewayId(MemberId(instance, member_class, member_code), code)
