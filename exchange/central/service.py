"""The central authority's parts, wired once per process (no HTTP here: the command line and
the app share it; the app adds the HTTP adapter, :mod:`exchange.central.app`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry

from exchange.central import files
from exchange.central.catalogue import SignedCatalogues
from exchange.central.certificates import Certificates
from exchange.central.dsd import Directory
from exchange.central.enrolment import Enrolments
from exchange.central.ocsp import Responders
from exchange.central.publisher import Publisher
from exchange.central.registry import Registry
from exchange.central.settings import CentralSettings
from exchange.central.witness import Witness, WitnessMetrics, load_signer
from exchange.db.engine import build_engine
from exchange.evidence.edm.schemaset import EdmSchemas
from exchange.trust.globalconf_client import utcnow


@dataclass(frozen=True)
class Central:
    """The authority's parts, wired once per process."""

    settings: CentralSettings
    material: files.AuthorityMaterial
    registry: Registry
    certificates: Certificates
    enrolments: Enrolments
    publisher: Publisher
    witness: Witness
    catalogues: SignedCatalogues
    metrics: CollectorRegistry  # what /metrics shows
    directory: Directory | None = None  # with the EDM material only


def build(settings: CentralSettings, *, clock: Callable[[], datetime] = utcnow) -> Central:
    settings = files.resolve(settings)
    material = files.load(settings)
    metrics = CollectorRegistry()
    registry = Registry(
        engine=build_engine(settings.db_url), instance=material.instance, clock=clock
    )
    certificates = Certificates(
        registry=registry,
        authority=material.authority,
        settings=settings,
        responders=(
            Responders(
                settings.data_dir,
                material.authority,
                instance=material.instance,
                validity=settings.ocsp_responder_validity,
                at=clock(),
            )
            if settings.ocsp_delegated
            else None
        ),
    )
    return Central(
        settings=settings,
        material=material,
        registry=registry,
        certificates=certificates,
        enrolments=Enrolments(
            registry=registry,
            certificates=certificates,
            validity=settings.enrolment_code_validity,
        ),
        publisher=Publisher(registry=registry, material=material, settings=settings),
        witness=Witness(
            registry=registry,
            authority=material.authority,
            signer=load_signer(
                settings.data_dir, material.authority, instance=material.instance, at=clock()
            ),
            metrics=WitnessMetrics(metrics),
        ),
        directory=(
            None
            if settings.edm_folder is None
            # Loaded once, here: a missing or broken folder stops the start with its reason.
            else Directory(registry=registry, schemas=EdmSchemas.load(settings.edm_folder))
        ),
        catalogues=SignedCatalogues(registry=registry, skew=timedelta(seconds=settings.clock_skew)),
        metrics=metrics,
    )
