"""The services this gateway provides: declaration, connector, schema, catalogue entry.

Built at start-up from the settings file: connectors are created, schemas looked up and
OpenAPI documents read, so that nothing on the request path touches files. Services declared
from the console (:mod:`exchange.gateway.declared`) are installed and withdrawn while the
gateway runs; those of the settings file stay as the file says until a restart.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.base import Connector
from connectors.document import HttpDocumentConnector
from connectors.http import HttpConnector
from connectors.python import CallableConnector
from connectors.sql import SqlConnector
from exchange.errors import UnknownService
from exchange.gateway.settings import ConnectorSpec, EdmParty, GatewaySettings, ServiceSpec
from exchange.identifiers import MemberId, ServiceId, SubsystemId

if TYPE_CHECKING:
    from exchange.evidence.schemas import EvidenceSchema, EvidenceSchemas


def build_connector(
    spec: ConnectorSpec, parameters: tuple[str, ...], *, max_part_bytes: int
) -> Connector:
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
    if spec.type == "http" and spec.document is not None:
        if not spec.url:
            raise ValueError("an http connector needs url")
        return HttpDocumentConnector(
            url=spec.url,
            parameters=parameters,
            media_type=spec.document,
            max_bytes=max_part_bytes,
            connect_timeout=spec.connect_timeout,
            read_timeout=spec.timeout,
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
    # An EDM service's document distribution ([services.edm.document]), opened beside the
    # record its connector fetches.
    edm_document: HttpDocumentConnector | None = None

    async def close(self) -> None:
        await self.connector.close()
        if self.edm_document is not None:
            await self.edm_document.close()

    @property
    def document(self) -> str | None:
        """The media type of the document this service streams, if it streams one."""
        return self.spec.connector.document


def catalogue_entry(
    service: ServiceId, spec: ServiceSpec, provider: EdmParty | None = None
) -> dict[str, Any]:
    """A provided service as the central authority's catalogue lists it; an EDM service with
    its EDM classification and ``provider`` (this member as EDM names it), from which the
    authority answers Data Service Directory queries."""
    entry: dict[str, Any] = {
        "id": str(service),
        "evidence_type": spec.evidence_type,
        "description": spec.description,
        "consent_policy": spec.consent_policy,
        "methods": list(spec.methods),
        "parameters": list(spec.parameters),
    }
    if spec.edm is not None and provider is not None:
        entry["edm"] = {
            "evidence_type_classification": spec.edm.evidence_type_classification,
            "titles": dict(spec.edm.titles),
            "conforms_to": spec.edm.conforms_to,
            "transformations": list(spec.edm.transformations),
            "formats": list(spec.edm.formats),
            "about": spec.edm.about,
            "provider": provider.model_dump(),
        }
    return entry


def catalogue(
    settings: GatewaySettings, declared: Iterable[ServiceSpec] = ()
) -> dict[str, list[dict[str, Any]]]:
    """Catalogue entries by subsystem id, for every subsystem this gateway serves: the settings
    file's services and the ``declared`` ones (those enabled in the gateway's database)."""
    member = settings.gateway.member
    provider = None if settings.edm is None else settings.edm.provider
    entries: dict[str, list[dict[str, Any]]] = {
        str(SubsystemId(member, code)): [] for code in settings.subsystems
    }
    for spec in [*settings.services, *declared]:
        service = ServiceId(SubsystemId(member, spec.subsystem), spec.code, spec.version)
        entries.setdefault(str(service.subsystem), []).append(
            catalogue_entry(service, spec, provider)
        )
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
                            "content": {spec.connector.document: {}}
                            if spec.connector.document
                            else {"application/json": {}, "application/xml": {}},
                        }
                    },
                }
                for method in spec.methods
            }
        },
    }
    return json.dumps(document, indent=2).encode()


def local_service(
    member: MemberId, spec: ServiceSpec, schemas: EvidenceSchemas, *, max_part_bytes: int
) -> LocalService:
    """``spec`` ready to serve: its connector built, schema found, OpenAPI document read.
    ``ValueError`` (or ``NotFound`` for an unknown evidence type) when it cannot be served."""
    service = ServiceId(SubsystemId(member, spec.subsystem), spec.code, spec.version)
    openapi = spec.openapi.read_bytes() if spec.openapi else _generated_openapi(service, spec)
    return LocalService(
        id=service,
        spec=spec,
        schema=schemas.get(spec.evidence_type),
        connector=build_connector(
            spec.connector, tuple(spec.parameters), max_part_bytes=max_part_bytes
        ),
        openapi=openapi,
        edm_document=_edm_document(spec, max_part_bytes),
    )


def _edm_document(spec: ServiceSpec, max_part_bytes: int) -> HttpDocumentConnector | None:
    document = None if spec.edm is None else spec.edm.document
    if document is None:
        return None
    return HttpDocumentConnector(
        url=document.url,
        parameters=tuple(spec.parameters),
        media_type=document.media_type,
        max_bytes=max_part_bytes,
        connect_timeout=document.connect_timeout,
        read_timeout=document.timeout,
    )


# Seconds a withdrawn or replaced connector stays open for the requests already using it.
RETIRE_AFTER = 120.0


class ServiceTable:
    def __init__(
        self,
        services: dict[str, LocalService],
        *,
        member: MemberId | None = None,
        schemas_dir: Path | None = None,
        max_part_bytes: int = 0,
    ) -> None:
        self._services = services
        self._fixed = frozenset(services)  # the settings file's: never replaced while running
        self._member, self._schemas_dir = member, schemas_dir
        self._schemas: EvidenceSchemas | None = None
        self._max_part_bytes = max_part_bytes  # for declared services, as the settings say
        self._retiring: set[asyncio.Task[None]] = set()

    @classmethod
    def build(
        cls,
        *,
        member: MemberId,
        specs: list[ServiceSpec],
        schemas_dir: Path,
        max_part_bytes: int,
    ) -> ServiceTable:
        """The services of ``specs``, each with its evidence schema from ``schemas_dir``."""
        table = cls({}, member=member, schemas_dir=schemas_dir, max_part_bytes=max_part_bytes)
        services: dict[str, LocalService] = {}
        for spec in specs:
            built = table.prepare(spec)
            key = cls.key(built.id)
            if key in services:
                raise ValueError(f"service {key} is declared twice")
            services[key] = built
        table._services, table._fixed = services, frozenset(services)
        return table

    def _evidence_schemas(self) -> EvidenceSchemas:
        """The schema folder, loaded at the first service to build: a gateway that provides
        nothing (a consumer's) never loads one, which spares it xmlschema and a compiled
        schema (~17 MB of its memory)."""
        if self._schemas is None:
            if self._schemas_dir is None:
                raise ValueError("this service table takes no declared services")
            from exchange.evidence.schemas import EvidenceSchemas

            self._schemas = EvidenceSchemas.load(self._schemas_dir)
        return self._schemas

    def prepare(self, spec: ServiceSpec) -> LocalService:
        """``spec`` built for :meth:`install` (``ValueError`` if it cannot be served)."""
        if self._member is None:
            raise ValueError("this service table takes no declared services")
        return local_service(
            self._member, spec, self._evidence_schemas(), max_part_bytes=self._max_part_bytes
        )

    def evidence_types(self) -> list[str]:
        return self._evidence_schemas().types() if self._schemas_dir is not None else []

    def fixed(self, key: str) -> bool:
        """Whether ``key`` (``SUBSYSTEM-ID/SERVICE``) is the settings file's."""
        return key in self._fixed

    def install(self, service: LocalService) -> None:
        """Serve ``service`` from now on, in place of any declared one of the same key."""
        key = self.key(service.id)
        if key in self._fixed:
            raise ValueError(f"service {key} is declared in the settings file")
        # A new dict, swapped in whole: a request finds the old service or the new, never a mix.
        self._retire(self._services.get(key))
        self._services = {**self._services, key: service}

    def withdraw(self, key: str) -> None:
        """Stop serving the declared service ``key``: asked for, it is now unknown."""
        if key in self._fixed or key not in self._services:
            return
        self._retire(self._services[key])
        self._services = {k: v for k, v in self._services.items() if k != key}

    def _retire(self, service: LocalService | None) -> None:
        if service is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: nothing can be using it
            return
        task = loop.create_task(_close_later(service, RETIRE_AFTER))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

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
        for task in list(self._retiring):
            task.cancel()
        for service in self._services.values():
            await service.close()


async def _close_later(service: LocalService, delay: float) -> None:
    try:
        await asyncio.sleep(delay)
    finally:
        await service.close()
