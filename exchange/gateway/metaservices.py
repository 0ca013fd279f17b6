"""X-Road REST metadata services: ``listMethods``, ``allowedMethods``, ``getOpenAPI`` (answered
by the provider gateway for its subsystems) and ``listClients`` (answered by any gateway from the
global configuration)."""

from __future__ import annotations

import json
from typing import Any

from exchange.errors import InvalidRequest
from exchange.gateway.services import LocalService, ServiceTable
from exchange.identifiers import ServiceId, SubsystemId, check_segment
from exchange.trust.globalconf import GlobalConfiguration

Answer = tuple[str, bytes]  # (content type, body)


def _service_entry(service: LocalService) -> dict[str, Any]:
    member = service.id.member
    return {
        "object_type": "SERVICE",
        "xroad_instance": member.instance,
        "member_class": member.member_class,
        "member_code": member.member_code,
        "subsystem_code": service.id.subsystem.subsystem_code,
        "service_code": service.id.service_code,
        "service_version": service.id.version,
        "service_type": "OPENAPI" if service.spec.openapi else "REST",
        "endpoint_list": [{"method": method, "path": "/*"} for method in service.spec.methods],
    }


def list_methods(
    services: ServiceTable, subsystem: SubsystemId, allowed: set[str] | None = None
) -> Answer:
    entries = [
        _service_entry(s)
        for s in services.of_subsystem(subsystem)
        if allowed is None or f"{s.id.subsystem}/{s.id.service_code}" in allowed
    ]
    return "application/json", json.dumps({"service": entries}).encode()


def get_openapi(
    services: ServiceTable, subsystem: SubsystemId, parameters: dict[str, str]
) -> Answer:
    code = parameters.get("serviceCode")
    if not code:
        raise InvalidRequest(
            "getOpenAPI needs the serviceCode query parameter", detail="serviceCode"
        )
    service = services.get(ServiceId(subsystem, code))
    document = service.openapi
    kind = "application/json" if document.lstrip().startswith(b"{") else "text/yaml"
    return kind, document


def list_clients(configuration: GlobalConfiguration, instance: str | None) -> Answer:
    if instance is not None:
        check_segment(instance, "xRoadInstance")
    members: list[dict[str, Any]] = []
    for member in configuration.members:
        instance_code, member_class, member_code = member.id.split("/")
        if instance is not None and instance != instance_code:
            continue
        base = {
            "xroad_instance": instance_code,
            "member_class": member_class,
            "member_code": member_code,
        }
        members.append({"id": {"object_type": "MEMBER", **base}, "name": member.name})
        for code in member.subsystems:
            members.append(
                {
                    "id": {"object_type": "SUBSYSTEM", **base, "subsystem_code": code},
                    "name": member.name,
                }
            )
    return "application/json", json.dumps({"member": members}).encode()
