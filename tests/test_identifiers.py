from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.errors import InvalidIdentifier
from exchange.identifiers import GatewayId, MemberId, ServiceId, SubsystemId, parse_client

ALLOWED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'()+,-.=?"
segment = st.text(alphabet=ALLOWED, min_size=1, max_size=40).filter(lambda s: s not in {".", ".."})


def test_service_round_trip_with_and_without_version() -> None:
    text = "EE/GOV/70000310/population-registry/birth-certificate"
    service = ServiceId.parse(text)
    assert service.member == MemberId("EE", "GOV", "70000310")
    assert service.subsystem.subsystem_code == "population-registry"
    assert service.version is None
    assert str(service) == text
    assert str(ServiceId.parse(text + "/v1")) == text + "/v1"
    assert ServiceId.parse(text + "/v1").version == "v1"


def test_client_is_member_or_subsystem() -> None:
    assert isinstance(parse_client("EE/GOV/70000310"), MemberId)
    sub = parse_client("EE/GOV/70000310/portal")
    assert isinstance(sub, SubsystemId)
    assert sub.instance == "EE"


def test_gateway_round_trip() -> None:
    assert str(GatewayId.parse("EE/COM/12345678/gw-1")) == "EE/COM/12345678/gw-1"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("EE/GOV/7000%2F310/sub", "'%' is not allowed; percent-encoded characters are not decoded"),
        ("EE/GOV/70000310/sub%20x", "'%' is not allowed"),
        ("EE/GOV/700 00310/sub", "control or space character U+0020"),
        ("EE/GOV/70000310/sub\tx", "control or space character U+0009"),
        ("EE/GOV/70000310/sub\x00", "control or space character U+0000"),
        ("EE/GOV/70000310/sub_x", "character '_' is not allowed"),
        ("EE/GOV/70000310/sub;x", "character ';' is not allowed"),
        ("EE/GOV/70000310/sub\\x", "character '\\\\' is not allowed"),
        ("EE/GOV/70000310/sub:x", "character ':' is not allowed"),
        ("ЕE/GOV/70000310/sub", "non-ASCII character U+0415"),  # Cyrillic capital IE
        ("EE/ＧOV/70000310/sub", "non-ASCII character U+FF27"),  # fullwidth G
        ("EE/GOV/70000310/sub\u200b", "non-ASCII character U+200B"),  # zero-width space
        ("EE/GOV/70000310/..", "must not be '..'"),
        ("EE/GOV/70000310/.", "must not be '.'"),
        ("EE//70000310/sub", "member class is empty"),
        ("EE/GOV/70000310/", "subsystem code is empty"),
        ("EE/GOV/70000310/sub/extra", "has 5 segments; expected 4"),
        ("EE/GOV", "has 2 segments; expected 4"),
    ],
)
def test_rejected_subsystem_ids_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        SubsystemId.parse(text)
    assert fragment in caught.value.message
    assert caught.value.status == 400
    assert caught.value.xroad_type == "Client.InvalidIdentifier"


def test_error_names_the_position_of_the_bad_character() -> None:
    with pytest.raises(InvalidIdentifier, match=r"member code '70%41': .* \(position 2\)"):
        MemberId.parse("EE/GOV/70%41")


def test_segment_length_limit() -> None:
    assert MemberId("EE", "GOV", "x" * 255).member_code == "x" * 255
    with pytest.raises(InvalidIdentifier, match="256 characters long"):
        MemberId("EE", "GOV", "x" * 256)


def test_service_segment_counts() -> None:
    for text in ["EE/GOV/1/sub", "EE/GOV/1/sub/code/v1/more"]:
        with pytest.raises(InvalidIdentifier, match="expected 5 or 6"):
            ServiceId.parse(text)


def test_nothing_is_normalised() -> None:
    # Case is significant and kept; no trimming happens anywhere.
    assert str(MemberId.parse("ee/gov/ABC")) == "ee/gov/ABC"
    with pytest.raises(InvalidIdentifier):
        MemberId.parse(" EE/GOV/1")


@given(segment, segment, segment, segment, segment)
def test_any_allowed_service_round_trips(a: str, b: str, c: str, d: str, e: str) -> None:
    text = f"{a}/{b}/{c}/{d}/{e}"
    assert str(ServiceId.parse(text)) == text


@given(segment, st.characters().filter(lambda ch: ch not in ALLOWED and ch != "/"), segment)
def test_any_disallowed_character_is_rejected(head: str, bad: str, tail: str) -> None:
    with pytest.raises(InvalidIdentifier):
        MemberId("EE", "GOV", head + bad + tail)


def test_the_same_text_gives_the_same_identifier() -> None:
    text = "EE/GOV/70000310/population-registry/birth-certificate"
    assert ServiceId.parse(text) is ServiceId.parse(text)
    assert parse_client("EE/GOV/70000310/portal") is parse_client("EE/GOV/70000310/portal")
    assert parse_client("EE/GOV/70000310") == MemberId.parse("EE/GOV/70000310")
    # Kept answers are per kind: a member's text read as a client is a MemberId, as a service
    # it is refused.
    with pytest.raises(InvalidIdentifier, match="has 3 segments"):
        ServiceId.parse("EE/GOV/70000310")


@pytest.mark.parametrize(
    "parse", [MemberId.parse, SubsystemId.parse, ServiceId.parse, GatewayId.parse, parse_client]
)
def test_refused_text_is_refused_every_time(parse: object) -> None:
    for _ in range(3):
        with pytest.raises(InvalidIdentifier):
            parse("EE/GOV/7000%2F310/sub/svc")  # type: ignore[operator]
        with pytest.raises(InvalidIdentifier, match="must be text"):
            parse(["EE", "GOV", "70000310"])  # type: ignore[operator]


def test_text_that_merely_compares_equal_is_parsed_itself() -> None:
    class Lying(str):
        """Equal to, and hashed like, a valid id it does not spell."""

        def __eq__(self, other: object) -> bool:
            return other == "EE/GOV/70000310" or str.__eq__(self, other)

        def __hash__(self) -> int:
            return hash("EE/GOV/70000310")

    assert MemberId.parse("EE/GOV/70000310") == MemberId("EE", "GOV", "70000310")
    with pytest.raises(InvalidIdentifier):
        MemberId.parse(Lying("EE/GOV/7000 0310"))


def test_kept_identifiers_are_bounded() -> None:
    from exchange import identifiers

    for n in range(identifiers.PARSED_KEPT + 50):
        MemberId.parse(f"EE/GOV/{n}")
    kept = identifiers._member.cache_info()  # type: ignore[attr-defined]
    assert kept.currsize == kept.maxsize == identifiers.PARSED_KEPT
    assert str(MemberId.parse("EE/GOV/0")) == "EE/GOV/0"  # dropped, then read again
