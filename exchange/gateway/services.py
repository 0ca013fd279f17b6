"""The services this gateway provides: declaration, connector, schema, catalogue entry.

Built once at start-up from the settings file: connectors are created, schemas looked up and
OpenAPI documents read, so that nothing on the request path touches files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.base import Connector
from connectors.http import HttpConnector
from connectors.python import CallableConnector
from connectors.sql import SqlConnector
from exchange.errors import UnknownService
from exchange.gateway.settings import ConnectorSpec, GatewaySettings, ServiceSpec
from exchange.identifiers import MemberId, ServiceId, SubsystemId

if TYPE_CHECKING:
    from exchange.evidence.schemas import EvidenceSchema


def build_connector(spec: ConnectorSpec, parameters: tuple[str, ...]) -> Connector:
    if spec.type == "sql":
        if not spec.url or not spec.query:
            raise ValueError("an sql connector needs url and query")
        return SqlConnector(
            url=spec.url,
            query=spec.query,
            parameters=parameters,
            fields=spec.fields,
            json_columns=spec.json_columns,
            timeout=spec.timeout,
        )
    if spec.type == "http":
        if not spec.url:
            raise ValueError("an http connector needs url")
        return HttpConnector(
            url=spec.url,
            parameters=parameters,
            fields=spec.fields,
            connect_timeout=spec.connect_timeout,
            read_timeout=spec.timeout,
            max_bytes=spec.max_bytes,
        )
    if not spec.target:
        raise ValueError("a python connector needs target = 'module:function'")
    return CallableConnector(target=spec.target, parameters=parameters, timeout=spec.timeout)


@dataclass(frozen=True)
class LocalService:
    id: ServiceId
    spec: ServiceSpec
    schema: EvidenceSchema
    connector: Connector
    openapi: bytes


def catalogue_entry(service: ServiceId, spec: ServiceSpec) -> dict[str, Any]:
    """A provided service as the central authority's catalogue lists it."""
    return {
        "id": str(service),
        "evidence_type": spec.evidence_type,
        "description": spec.description,
        "consent_policy": spec.consent_policy,
        "methods": list(spec.methods),
        "parameters": list(spec.parameters),
    }


def catalogue(settings: GatewaySettings) -> dict[str, list[dict[str, Any]]]:
    """Catalogue entries by subsystem id, for every subsystem this gateway serves."""
    member = settings.gateway.member
    entries: dict[str, list[dict[str, Any]]] = {
        str(SubsystemId(member, code)): [] for code in settings.subsystems
    }
    for spec in settings.services:
        service = ServiceId(SubsystemId(member, spec.subsystem), spec.code, spec.version)
        entries.setdefault(str(service.subsystem), []).append(catalogue_entry(service, spec))
    return entries


def _generated_openapi(service: ServiceId, spec: ServiceSpec) -> bytes:
    parameters = [
        {"name": p, "in": "query", "required": True, "schema": {"type": "string"}}
        for p in spec.parameters
    ]
    document = {
        "openapi": "3.0.3",
        "info": {
            "title": str(service),
            "version": spec.version or "1",
            "description": spec.description,
        },
        "paths": {
            "/": {
                method.lower(): {
                    "summary": f"{spec.evidence_type} evidence",
                    "parameters": parameters,
                    "responses": {
                        "200": {
                            "description": "the evidence",
                            "content": {"application/json": {}, "application/xml": {}},
                        }
                    },
                }
                for method in spec.methods
            }
        },
    }
    return json.dumps(document, indent=2).encode()


class ServiceTable:
    def __init__(self, services: dict[str, LocalService]) -> None:
        self._services = services

    @classmethod
    def build(
        cls, *, member: MemberId, specs: list[ServiceSpec], schemas_dir: Path
    ) -> ServiceTable:
        """The services of ``specs``, each with its evidence schema from ``schemas_dir``."""
        services: dict[str, LocalService] = {}
        if not specs:
            # A gateway that provides nothing (a consumer's) never loads a schema: xmlschema
            # and a compiled schema would take ~17 MB of its memory for nothing.
            return cls(services)
        from exchange.evidence.schemas import EvidenceSchemas

        schemas = EvidenceSchemas.load(schemas_dir)
        for spec in specs:
            service = ServiceId(SubsystemId(member, spec.subsystem), spec.code, spec.version)
            key = f"{service.subsystem}/{spec.code}"
            if key in services:
                raise ValueError(f"service {key} is declared twice")
            openapi = (
                spec.openapi.read_bytes() if spec.openapi else _generated_openapi(service, spec)
            )
            services[key] = LocalService(
                id=service,
                spec=spec,
                schema=schemas.get(spec.evidence_type),
                connector=build_connector(spec.connector, tuple(spec.parameters)),
                openapi=openapi,
            )
        return cls(services)

    @property
    def keys(self) -> frozenset[str]:
        """``SUBSYSTEM-ID/SERVICE`` of every service provided here."""
        return frozenset(self._services)

    def items(self) -> list[tuple[str, LocalService]]:
        return list(self._services.items())

    @staticmethod
    def key(service: ServiceId) -> str:
        """What the table knows ``service`` by: ``SUBSYSTEM-ID/SERVICE``, any version."""
        return f"{service.subsystem}/{service.service_code}"

    def find(self, service: ServiceId) -> LocalService | None:
        return self._services.get(self.key(service))

    def get(self, service: ServiceId) -> LocalService:
        found = self._services.get(self.key(service))
        if found is None:
            raise UnknownService(f"service {service} is not provided here", detail=str(service))
        return found

    def of_subsystem(self, subsystem: SubsystemId) -> list[LocalService]:
        return [s for s in self._services.values() if s.id.subsystem == subsystem]

    async def close(self) -> None:
        for service in self._services.values():
            await service.connector.close()
