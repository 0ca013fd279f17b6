from __future__ import annotations

import json

import pytest

from exchange.central.registry import check_gateway_address
from exchange.central.service import Central
from exchange.errors import Conflict, InvalidRequest, NotFound
from exchange.identifiers import GatewayId, MemberId, SubsystemId

POPULATION = MemberId.parse("EE/GOV/70000310")


def test_register_member_subsystem_and_gateway(central: Central) -> None:
    registry = central.registry
    registry.register_member(POPULATION, "Population Register", actor="alice")
    registry.register_subsystem(SubsystemId(POPULATION, "population-registry"), actor="alice")
    registry.register_gateway(GatewayId(POPULATION, "gw1"), "https://127.0.0.1:8443", actor="bob")
    [member] = registry.members()
    assert member.name == "Population Register"
    assert [s.identifier for s in member.subsystems] == ["EE/GOV/70000310/population-registry"]
    assert [(g.identifier, g.address) for g in member.gateways] == [
        ("EE/GOV/70000310/gw1", "https://127.0.0.1:8443")
    ]


def test_every_change_is_recorded_with_its_actor(central: Central) -> None:
    central.registry.register_member(POPULATION, "Population Register", actor="alice")
    central.registry.register_gateway(
        GatewayId(POPULATION, "gw1"), "https://gw.example.org", actor="bob"
    )
    events = [
        (e.actor, e.action, e.subject, json.loads(e.details)) for e in central.registry.events()
    ]
    assert events[-2:] == [
        ("alice", "member.registered", "EE/GOV/70000310", {"name": "Population Register"}),
        ("bob", "gateway.registered", "EE/GOV/70000310/gw1", {"address": "https://gw.example.org"}),
    ]


def test_duplicates_conflict_and_leave_no_event(central: Central) -> None:
    central.registry.register_member(POPULATION, "Population Register", actor="alice")
    before = len(central.registry.events())
    with pytest.raises(Conflict, match="already registered"):
        central.registry.register_member(POPULATION, "Again", actor="alice")
    assert len(central.registry.events()) == before


def test_unknown_member_class_and_foreign_instance_are_refused(central: Central) -> None:
    with pytest.raises(InvalidRequest, match="member class 'XYZ' is not defined in EE"):
        central.registry.register_member(MemberId("EE", "XYZ", "1"), "X", actor="a")
    with pytest.raises(InvalidRequest, match="instance 'FI'"):
        central.registry.register_member(MemberId("FI", "GOV", "1"), "X", actor="a")
    central.registry.add_member_class("EDU", "Schools and universities", actor="a")
    central.registry.register_member(MemberId("EE", "EDU", "1"), "University", actor="a")


def test_subsystem_and_gateway_need_a_registered_member(central: Central) -> None:
    with pytest.raises(NotFound, match="member EE/GOV/70000310 is not registered"):
        central.registry.register_subsystem(SubsystemId(POPULATION, "x"), actor="a")
    with pytest.raises(NotFound):
        central.registry.register_gateway(GatewayId(POPULATION, "gw"), "https://h", actor="a")


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "x" * 256])
def test_bad_member_names_are_refused(central: Central, name: str) -> None:
    with pytest.raises(InvalidRequest, match="member name"):
        central.registry.register_member(POPULATION, name, actor="a")


@pytest.mark.parametrize(
    "address",
    [
        "http://gw.example.org",
        "https://",
        "https://user:pw@gw.example.org",
        "https://gw.example.org/path",
        "https://gw.example.org?q=1",
        "https://gw.example.org:99999",
        "https://gw.example.org:0",
        "gw.example.org:443",
    ],
)
def test_bad_gateway_addresses_are_refused(address: str) -> None:
    with pytest.raises(InvalidRequest):
        check_gateway_address(address)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://gw.example.org", "https://gw.example.org"),
        ("https://[::1]:8443/", "https://[::1]:8443"),
    ],
)
def test_good_gateway_addresses(given: str, kept: str) -> None:
    assert check_gateway_address(given) == kept
