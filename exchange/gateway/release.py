"""Release policies: when a provider may ask its registry, and how it obtains what it releases.

A service declares one policy (``public``, ``legal-basis`` or ``consent``) and may add
``preview``. Each policy is a small object with one interface, in the manner of composable
verification policies:

- :meth:`ReleasePolicy.admit` checks, before the registry is asked anything, that the request
  may be answered at all; it raises a precise :class:`~exchange.errors.Error` to refuse and
  notes in the record on what grounds it admitted (legal basis, consent);
- :meth:`ReleasePolicy.obtain` obtains the evidence to release: it asks the registry, after
  whatever the release itself needs (a consent use spent, the citizen's approval). A previewed
  document (an EDM PDF) is opened and checked against what the person approved before the
  approval and the use are spent, so that a release refused there costs the person neither.

Preview is a composition, not a branch: :class:`Previewed` wraps the consent policy and takes
over :meth:`~ReleasePolicy.obtain` whenever the service or the citizen's consent asks for a
preview (:mod:`exchange.gateway.preview`).

What is *not* checked here: the request's signature, replay and access rights (admission,
:mod:`exchange.gateway.admission`), and the evidence schema (the provider validates whatever is
released).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.base import Document, Evidence
from exchange.consent.artefact import Consent
from exchange.errors import (
    AccessDenied,
    InternalError,
    InvalidEvidence,
    InvalidRequest,
    PreviewRefused,
    PreviewRequired,
    ServiceFailed,
    ServiceTimeout,
    ServiceUnavailable,
)
from exchange.evidence.edm.query import Unresolved
from exchange.gateway.access import Grant
from exchange.gateway.consent import ConsentCheck
from exchange.gateway.preview import PreviewedDocument, Previews, query_digest
from exchange.gateway.records import ExchangeRecord
from exchange.gateway.services import LocalService
from exchange.gateway.xroad import XRoadHeaders
from exchange.trust.view import TrustView

InThread = Callable[..., Awaitable[Any]]

# The registry gave no answer about the person: an error, a reply that could not be read, no
# answer in time, unreachable. A consent use spent on such a request is given back. "No record"
# (NotFound) and a record that is not valid evidence are answers: their use stays spent, or a
# one-use consent could be used to probe without end.
REGISTRY_FAULTS = (ServiceFailed, ServiceTimeout, ServiceUnavailable)


@dataclass(slots=True)
class Release:
    """One admitted request on its way to the registry: what a policy decides on."""

    view: TrustView
    record: ExchangeRecord
    service: LocalService
    grant: Grant
    xroad: XRoadHeaders
    parameters: dict[str, str]
    body: bytes
    # Asks the registry, timing it in the record; a document service's document comes opened.
    fetch: Callable[[], Awaitable[Evidence | Document]]
    consent: Consent | None = None  # set by the consent policy once the artefact verified
    # An EDM request's PreviewLocation: the preview it returns to, which must be the one held.
    preview_location: str | None = None
    # An EDM request for a document distribution (a PDF): what the registry declares of the
    # document, for the person to preview; once approved, the registry's document opened and
    # found to be the one previewed (else refused); and that document, for the answer.
    describe: Callable[[], Awaitable[PreviewedDocument]] | None = None
    open_previewed: Callable[[PreviewedDocument], Awaitable[Document]] | None = None
    document: Document | None = None


class ReleasePolicy(Protocol):
    async def admit(self, release: Release) -> None:
        """Raise to refuse ``release`` before the registry is asked."""

    async def obtain(self, release: Release) -> Evidence | Document:
        """The evidence to release, once admitted."""


class Public:
    """Anyone the access rights let in gets the evidence."""

    async def admit(self, release: Release) -> None:
        return None

    async def obtain(self, release: Release) -> Evidence | Document:
        return await release.fetch()


class LegalBasis(Public):
    """Released on a legal basis that the client's access right declares, for a stated
    purpose; both are recorded."""

    async def admit(self, release: Release) -> None:
        if not release.grant.legal_basis:
            raise AccessDenied(
                f"{release.xroad.client} holds no declared legal basis for "
                f"{release.record.service}",
                detail="legal-basis",
            )
        if not release.xroad.purpose:
            raise InvalidRequest(
                "this service needs the purpose of the request (X-Exchange-Purpose)",
                detail="X-Exchange-Purpose",
            )
        release.record.legal_basis = release.grant.legal_basis


class ConsentGiven:
    """Released only under the person's consent: a genuine artefact covering exactly this
    request (:mod:`exchange.gateway.consent`), live, with a use spent on release."""

    def __init__(self, consents: ConsentCheck) -> None:
        self.consents = consents

    async def admit(self, release: Release) -> None:
        if release.body:
            # The person is named in the query and checked against the consent; a body the
            # registry might read another person from is not accepted.
            raise InvalidRequest("a service released under consent takes no request body")
        record = release.record
        consent = self.consents.verify(
            release.xroad.consent,
            view=release.view,
            client=str(release.xroad.client),
            service=record.service,
            evidence_type=release.service.spec.evidence_type,
            purpose=release.xroad.purpose,
            subject=record.subject,
            user_id=release.xroad.user_id,
        )
        release.consent = consent
        record.consent, record.legal_basis = consent.jti, consent.purpose.legal_basis

    async def obtain(self, release: Release) -> Evidence | Document:
        consent, record, consents = _consent(release), release.record, self.consents
        await consents.spend(
            consent, view=release.view, message_id=record.message_id, service=record.service
        )
        try:
            return await release.fetch()
        except InvalidEvidence:  # an answer about the person after all: the use stays spent
            raise
        except REGISTRY_FAULTS:
            await consents.give_back(
                consent, view=release.view, message_id=record.message_id, service=record.service
            )
            raise


class Previewed:
    """A consent policy whose evidence the person sees and approves before it is released,
    when the service says so (``always``) or the person's consent does."""

    def __init__(
        self, inner: ConsentGiven, *, previews: Previews, in_thread: InThread, always: bool
    ) -> None:
        self.inner = inner
        self.previews = previews
        self.in_thread = in_thread
        self.always = always

    async def admit(self, release: Release) -> None:
        await self.inner.admit(release)

    async def obtain(self, release: Release) -> Evidence | Document:
        consent = _consent(release)
        if not (self.always or consent.preview):
            return await self.inner.obtain(release)
        if release.service.document is not None:  # never held whole, so never shown first
            raise AccessDenied(
                "the person's consent asks to preview this evidence, and a document service "
                "cannot show its document before it is released",
                detail="preview",
            )
        previews, record = self.previews, release.record
        if previews.spec is None:
            raise ServiceUnavailable("this provider cannot show previews to citizens")
        query = query_digest(release.parameters)
        held = await self.in_thread(
            previews.find,
            consent_id=consent.jti,
            client=record.client,
            service=record.service,
            query=query,
        )
        consents = self.inner.consents
        if release.preview_location is not None and (
            held is None or previews.url(held.id) != release.preview_location
        ):
            raise Unresolved(
                "the preview this request returns to is not held here (expired, released or "
                "of another request)",
                detail="PreviewLocation",
            )
        if held is None:
            await consents.ensure_live(
                consent, view=release.view, message_id=record.message_id, service=record.service
            )
            evidence = await release.fetch()
            if isinstance(evidence, Document):  # refused above; a wiring error if it comes
                await evidence.close()
                raise InternalError("a document reached a preview")
            release.service.schema.to_json(evidence)  # nothing that would fail the schema is shown
            document = None if release.describe is None else await release.describe()
            preview_id = await self.in_thread(
                previews.hold,
                consent_id=consent.jti,
                client=record.client,
                service=record.service,
                query=query,
                subject=consent.sub,
                evidence=dict(evidence),
                document=document,
            )
            raise PreviewRequired(
                "the person wants to see this evidence before it is sent; send them to the "
                "preview page (detail), then ask again",
                detail=previews.url(preview_id),
            )
        if held.decision is None:
            raise PreviewRequired(
                "the person has not yet approved this evidence; send them to the preview page "
                "(detail), then ask again",
                detail=previews.url(held.id),
            )
        if held.decision != "approved":
            raise PreviewRefused("the person looked at this evidence and refused to share it")
        if (release.describe is None) != (held.document is None):
            raise Unresolved(
                "the preview this request returns to is of another distribution of the evidence",
                detail="PreviewLocation",
            )
        opened = await self._open_previewed(release, held.document)
        try:
            # Claimed first: of two retries racing for one approval, only one may spend a use.
            released: Evidence = await self.in_thread(previews.release, held.id)
            await consents.spend(
                consent, view=release.view, message_id=record.message_id, service=record.service
            )
        except BaseException:
            if opened is not None:
                await opened.close()
            raise
        release.document = opened
        return released

    @staticmethod
    async def _open_previewed(release: Release, held: str | None) -> Document | None:
        """The document the person approved (``held``: its facts), if the evidence is one,
        opened before the approval and a consent use are spent: a document changed, gone or
        out of reach refuses this request and leaves both for a retry once it is right."""
        previewed = PreviewedDocument.from_json(held)
        if previewed is None:
            return None
        if release.open_previewed is None:  # set wherever describe is (checked just before)
            raise InternalError("a previewed document cannot be opened")
        return await release.open_previewed(previewed)


def _consent(release: Release) -> Consent:
    if release.consent is None:  # admit() sets it; obtain() without admit() is a wiring error
        raise InternalError("a consent release was not admitted")
    return release.consent


def policy_for(
    service: LocalService, *, consents: ConsentCheck, previews: Previews, in_thread: InThread
) -> ReleasePolicy:
    """The policy ``service`` declares, composed with preview where it applies."""
    declared = service.spec.consent_policy
    if declared == "public":
        return Public()
    if declared == "legal-basis":
        return LegalBasis()
    # A consent may ask for a preview even where the service does not: always composed.
    return Previewed(
        ConsentGiven(consents),
        previews=previews,
        in_thread=in_thread,
        always=service.spec.preview,
    )
