"""The console's routes under ``/console``: each names the one right it needs (:data:`ROUTES`);
signing in and out (:data:`PUBLIC`) need none.

A page asked without a signed-in staff member redirects to sign-in; the query API answers 401
(it also takes a staff ID token as a bearer token, for monitoring systems). A staff member whose
roles lack the right gets 403. Forms that change anything carry the session's CSRF token, and
every answer carries the pages' security headers (no script, no framing).
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from exchange import web
from exchange.errors import Error, InternalError, InvalidRequest, NotFound, ServiceFailed
from exchange.gateway import changes, declared, files, models, publishing
from exchange.gateway.access import METHODS
from exchange.gateway.changes import ChangeLog
from exchange.gateway.console import auditing, certificates, host, operations, services, staff
from exchange.gateway.console.enrolling import Enrolling, request_file
from exchange.gateway.console.staff import Right, Staff
from exchange.gateway.node import Gateway
from exchange.gateway.records import opmon_fields
from exchange.gateway.settings import ConsoleSpec, GatewaySettings, ServiceSpec
from exchange.identity.login import OidcLogin
from exchange.web import staff as shared_staff
from exchange.web.charts import bars, columns
from exchange.web.languages import N_, gettext

PREFIX = "/console"
CONSOLE = N_("Gateway console")  # the site's name beside the gateway's
WINDOWS = (15, 60, 360, 1440)  # minutes the operations page offers
MAX_WINDOW = timedelta(days=31)
MAX_API_RECORDS = 10_000


@dataclass(frozen=True, slots=True)
class Guard:
    method: str
    path: str  # below PREFIX
    right: Right
    name: str  # the handler's
    api: bool = False


ROUTES: tuple[Guard, ...] = (
    Guard("GET", "/", "view", "overview"),
    Guard("GET", "/access", "view", "access"),
    Guard("POST", "/access/grant", "change", "grant"),
    Guard("POST", "/access/revoke", "change", "revoke"),
    Guard("GET", "/services", "view", "service_list"),
    Guard("GET", "/services/new", "change", "service_new"),
    Guard("GET", "/services/edit", "change", "service_edit_page"),
    Guard("POST", "/services/declare", "change", "service_declare"),
    Guard("POST", "/services/edit", "change", "service_edit"),
    Guard("POST", "/services/disable", "change", "service_disable"),
    Guard("POST", "/services/enable", "change", "service_enable"),
    Guard("POST", "/services/test", "change", "service_test"),
    Guard("POST", "/services/publish", "change", "service_publish"),
    Guard("GET", "/changes", "view", "change_log"),
    Guard("GET", "/certificates", "view", "certificate_list"),
    Guard("POST", "/certificates/keys", "change", "generate_keys"),
    Guard("GET", "/certificates/signing.csr", "view", "signing_request"),
    Guard("GET", "/certificates/tls.csr", "view", "tls_request"),
    Guard("POST", "/certificates/enrol", "change", "enrol"),
    Guard("GET", "/operations", "monitor", "operations_page"),
    Guard("GET", "/api/figures", "monitor", "figures_api", api=True),
    Guard("GET", "/api/operational-data", "monitor", "records_api", api=True),
    Guard("GET", "/audit", "audit", "audit_records"),
    Guard("GET", "/audit/verify", "audit", "audit_verify"),
    Guard("POST", "/audit/export", "audit", "audit_export"),
)
PUBLIC = (("GET", "/login"), ("GET", "/callback"), ("POST", "/logout"))

Handler = shared_staff.Handler


def _moment(raw: str | None, name: str) -> datetime | None:
    """A time given as Unix seconds or ISO 8601 (UTC if no offset is given)."""
    if raw is None or raw == "":
        return None
    try:
        if raw.isdigit():
            return datetime.fromtimestamp(int(raw), UTC)
        parsed = datetime.fromisoformat(raw)
    except (ValueError, OverflowError) as exc:
        raise InvalidRequest(f"{name} must be Unix seconds or ISO 8601", detail=name) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def create_console_app(gateway: Gateway, *, login: OidcLogin) -> ASGIApp:
    """The console of ``gateway`` (mounted at :data:`PREFIX` on its consumer listener)."""
    spec = gateway.settings.console
    clock = gateway.clock
    pages = web.Pages("exchange.gateway.console")
    kept_changes = ChangeLog(gateway.engine)
    data_dir, anchor_file = gateway.settings.data_dir, gateway.settings.anchor
    enrolling = Enrolling(
        settings=gateway.settings,
        engine=gateway.engine,
        clock=clock,
        transport=gateway.blocking_http,
    )

    def site() -> str:
        try:
            member = gateway.trust.view().configuration.member(str(gateway.member))
        except Error:
            member = None
        name = member.name if member else str(gateway.member)
        return f"{name} · {gettext(CONSOLE)}"

    def page(template: str, request: Request, who: Staff, **context: Any) -> Response:
        return pages.page(
            template,
            site=site(),
            staff=who,
            csrf=web.csrf_token(request.session),
            prefix=PREFIX,
            signout_path=f"{PREFIX}/logout",
            **context,
        )

    async def bearer(request: Request) -> Staff | None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return None
        if gateway.staff_tokens is None:
            raise InternalError("the console has no staff token validator")
        claims = await gateway.in_thread(
            gateway.staff_tokens.validate, header[7:].strip(), at=clock()
        )
        return staff.from_claims(claims, spec, until=int(claims["exp"]))

    async def signed_in(request: Request) -> Staff | None:
        return staff.signed_in(request.session, at=clock())

    async def signed_in_or_bearer(request: Request) -> Staff | None:
        return staff.signed_in(request.session, at=clock()) or await bearer(request)

    def guarded(guard: Guard, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        return shared_staff.guarded(
            handler,
            right=guard.right,
            prefix=PREFIX,
            who=signed_in_or_bearer if guard.api else signed_in,
            api=guard.api,
            keep_query=True,
        )

    # Pages and the query API

    async def overview(request: Request, who: Staff, _: FormData | None) -> Response:
        status, health = await gateway.health()
        view = gateway.trust.view()
        shown = await gateway.in_thread(
            certificates.shown,
            data_dir,
            gateway=gateway.settings.id,
            member=str(gateway.member),
            configuration=view.configuration,
            at=clock(),
        )
        return page(
            "overview.html",
            request,
            who,
            gateway_id=gateway.settings.id,
            replica=gateway.settings.replica,
            healthy=status == 200,
            health=health,
            configuration=view.configuration,
            records=gateway.audit.tree.size,
            warnings=[c for c in shown if c.warning],
        )

    async def access(request: Request, who: Staff, _: FormData | None) -> Response:
        grants = await gateway.in_thread(gateway.access.grants)
        groups = await gateway.in_thread(gateway.access.groups)
        served = [*gateway.settings.services, *await gateway.in_thread(gateway.declared.enabled)]
        services = sorted(f"{gateway.member}/{s.subsystem}/{s.code}" for s in served)
        return page(
            "access.html",
            request,
            who,
            grants=grants,
            groups=groups,
            services=services,
            methods=sorted(METHODS),
            done=request.query_params.get("done"),
        )

    def field(form: FormData | None, name: str) -> str:
        value = form.get(name, "") if form is not None else ""
        return value.strip() if isinstance(value, str) else ""

    async def grant(request: Request, who: Staff, form: FormData | None) -> Response:
        await gateway.in_thread(
            gateway.access.grant,
            service=field(form, "service"),
            subject=field(form, "subject"),
            method=field(form, "method"),
            path=field(form, "path"),
            legal_basis=field(form, "legal_basis") or None,
            actor=who.actor,
        )
        return RedirectResponse(f"{PREFIX}/access?done=granted", status_code=303)

    async def revoke(request: Request, who: Staff, form: FormData | None) -> Response:
        await gateway.in_thread(
            gateway.access.revoke,
            service=field(form, "service"),
            subject=field(form, "subject"),
            method=field(form, "method"),
            path=field(form, "path"),
            actor=who.actor,
        )
        return RedirectResponse(f"{PREFIX}/access?done=revoked", status_code=303)

    async def service_list(
        request: Request, who: Staff, _: FormData | None, **shown: Any
    ) -> Response:
        listed = services.rows(
            gateway.settings.services, await gateway.in_thread(gateway.declared.listed)
        )
        return page(
            "services.html",
            request,
            who,
            services=listed,
            done=request.query_params.get("done"),
            **shown,
        )

    def service_form(
        request: Request,
        who: Staff,
        *,
        editing: bool,
        values: dict[str, Any],
        status: int = 200,
        **shown: Any,
    ) -> Response:
        response = page(
            "service_form.html",
            request,
            who,
            editing=editing,
            values=values,
            subsystems=gateway.settings.subsystems,
            evidence_types=gateway.services.evidence_types(),
            policies=[(p, services.WORDS[p]) for p in services.POLICIES],
            connectors=services.CONNECTORS,
            methods=("GET", "POST"),
            **shown,
        )
        response.status_code = status
        return response

    async def service_new(request: Request, who: Staff, _: FormData | None) -> Response:
        return service_form(request, who, editing=False, values=services.filled(None))

    async def service_edit_page(request: Request, who: Staff, _: FormData | None) -> Response:
        found = await declared_one(
            request.query_params.get("subsystem", ""), request.query_params.get("code", "")
        )
        return service_form(request, who, editing=True, values=services.filled(found.spec))

    async def declared_one(subsystem: str, code: str) -> declared.Declared:
        if any(s.subsystem == subsystem and s.code == code for s in gateway.settings.services):
            raise InvalidRequest(
                f"service {subsystem}/{code} is managed in the settings file", detail="code"
            )
        found = await gateway.in_thread(gateway.declared.find, subsystem, code)
        if found is None:
            raise NotFound(f"no service {subsystem}/{code} is declared here", detail="code")
        return found

    async def change_service(
        request: Request, who: Staff, form: FormData | None, *, editing: bool
    ) -> Response:
        form = form or FormData()
        try:
            spec = declared.parse(services.document(form))
            if editing:
                await gateway.declared.edit(spec, actor=who.actor)
            else:
                await gateway.declared.declare(spec, actor=who.actor)
        except Error as error:  # shown on the form, with what was sent: nothing was stored
            return service_form(
                request,
                who,
                editing=editing,
                values=services.sent(form),
                status=error.status,
                problem=gettext(error.message),
            )
        done = "edited" if editing else "declared"
        return RedirectResponse(f"{PREFIX}/services?done={done}", status_code=303)

    async def service_declare(request: Request, who: Staff, form: FormData | None) -> Response:
        return await change_service(request, who, form, editing=False)

    async def service_edit(request: Request, who: Staff, form: FormData | None) -> Response:
        return await change_service(request, who, form, editing=True)

    async def switch(who: Staff, form: FormData | None, *, enabled: bool) -> Response:
        await gateway.declared.switch(
            field(form, "subsystem"), field(form, "code"), enabled=enabled, actor=who.actor
        )
        done = "enabled" if enabled else "disabled"
        return RedirectResponse(f"{PREFIX}/services?done={done}", status_code=303)

    async def service_disable(request: Request, who: Staff, form: FormData | None) -> Response:
        return await switch(who, form, enabled=False)

    async def service_enable(request: Request, who: Staff, form: FormData | None) -> Response:
        return await switch(who, form, enabled=True)

    async def service_test(request: Request, who: Staff, form: FormData | None) -> Response:
        """Test the connection of the form being filled in, or of a listed service."""
        form = form or FormData()
        on_form = "connector_type" in form
        try:
            if on_form:
                spec = declared.parse(services.document(form))
            else:
                spec = await listed_spec(field(form, "subsystem"), field(form, "code"))
            found = await gateway.declared.probe(spec)
            result = {"ok": True, "text": found, "service": f"{spec.subsystem}/{spec.code}"}
        except Error as error:
            result = {"ok": False, "text": error.message, "service": field(form, "code")}
        if on_form:
            return service_form(
                request,
                who,
                editing=field(form, "editing") == "yes",
                values=services.sent(form),
                tested=result,
            )
        return await service_list(request, who, None, tested=result)

    async def listed_spec(subsystem: str, code: str) -> ServiceSpec:
        for spec in gateway.settings.services:
            if spec.subsystem == subsystem and spec.code == code:
                return spec
        found = await gateway.in_thread(gateway.declared.find, subsystem, code)
        if found is None:
            raise NotFound(f"no service {subsystem}/{code} is provided here", detail="code")
        return found.spec

    async def service_publish(request: Request, who: Staff, _: FormData | None) -> Response:
        done = await gateway.in_thread(
            publishing.publish,
            gateway.settings,
            await gateway.in_thread(gateway.declared.enabled),
            central_url=gateway.trust.view().configuration.central_url,
            signer=gateway.signer,
            clock=clock,
            transport=gateway.blocking_http,
        )
        if done.published:  # recorded even when another subsystem was refused
            await gateway.in_thread(_record_publish, gateway, who, done.published)
        if done.refused:
            refused = "; ".join(f"{s}: {reason}" for s, reason in done.refused.items())
            listed = ", ".join(done.published) or "none"
            raise ServiceFailed(
                f"the central authority refused the catalogue of {refused} (published: {listed})"
            )
        return RedirectResponse(f"{PREFIX}/services?done=published", status_code=303)

    async def change_log(request: Request, who: Staff, _: FormData | None) -> Response:
        number = _page_number(request)
        shown, total = await gateway.in_thread(
            kept_changes.newest, limit=50, offset=(number - 1) * 50
        )
        return page(
            "changes.html",
            request,
            who,
            changes=shown,
            number=number,
            more=number * 50 < total,
        )

    async def certificate_list(request: Request, who: Staff, _: FormData | None) -> Response:
        shown = await gateway.in_thread(
            certificates.shown,
            data_dir,
            gateway=gateway.settings.id,
            member=str(gateway.member),
            configuration=gateway.trust.view().configuration,
            at=clock(),
        )
        return page(
            "certificates.html",
            request,
            who,
            certificates=shown,
            warn_days=certificates.WARN_AHEAD.days,
            state=enrolling.state(),
            purposes=certificates.PURPOSES,
            done=request.query_params.get("done"),
        )

    async def generate_keys(request: Request, who: Staff, _: FormData | None) -> Response:
        await gateway.in_thread(enrolling.generate, who)
        return RedirectResponse(f"{PREFIX}/certificates?done=keys", status_code=303)

    async def signing_request(request: Request, who: Staff, _: FormData | None) -> Response:
        return await gateway.in_thread(request_file, gateway.settings, "signing")

    async def tls_request(request: Request, who: Staff, _: FormData | None) -> Response:
        return await gateway.in_thread(request_file, gateway.settings, "tls")

    async def enrol(request: Request, who: Staff, form: FormData | None) -> Response:
        await gateway.in_thread(enrolling.enrol, field(form, "code"), who)
        # A running gateway holds the certificates it started with: the new ones from its next
        # start (the page says so).
        return RedirectResponse(f"{PREFIX}/certificates?done=enrolled", status_code=303)

    def window(request: Request) -> tuple[datetime, datetime]:
        until = _moment(request.query_params.get("to"), "to") or clock()
        since = _moment(request.query_params.get("from"), "from")
        if since is None:
            raw = request.query_params.get("minutes", "60")
            minutes = int(raw) if raw.isdigit() else 60
            since = until - timedelta(minutes=min(max(minutes, 1), 1440))
        if not since < until or until - since > MAX_WINDOW:
            raise InvalidRequest("from must come before to, at most 31 days apart", detail="from")
        return since, until

    async def operations_page(request: Request, who: Staff, _: FormData | None) -> Response:
        raw = request.query_params.get("minutes", "60")
        minutes = int(raw) if raw.isdigit() and int(raw) in WINDOWS else 60
        until = clock()
        since = until - timedelta(minutes=minutes)
        shown = await gateway.in_thread(
            operations.figures, gateway.engine, since=since, until=until
        )
        machine = await gateway.in_thread(host.read, data_dir)
        direction = web.languages.direction(web.languages.current())
        per_minute = [(at.strftime("%H:%M"), n, failed) for at, n, failed in shown.per_minute]
        return page(
            "operations.html",
            request,
            who,
            figures=shown,
            host=machine,
            minutes=minutes,
            since=web.languages.date_time(since),
            until=web.languages.date_time(until),
            api=f"{PREFIX}/api/figures",
            windows=WINDOWS,
            per_minute_chart=columns(
                "per-minute",
                gettext(N_("Exchanges per minute")),
                gettext(N_("Exchanges per minute, failures in red; the table below lists them.")),
                per_minute,
                direction,
            ),
            errors_chart=bars(
                "errors",
                gettext(N_("Errors by type")),
                gettext(N_("Failed exchanges by error type; the table beside lists them.")),
                shown.errors,
                direction,
            ),
            busiest=[(m, n, f) for m, n, f in per_minute if n][-30:],
        )

    async def figures_api(request: Request, who: Staff, _: FormData | None) -> Response:
        since, until = window(request)
        shown = await gateway.in_thread(
            operations.figures, gateway.engine, since=since, until=until
        )
        machine = await gateway.in_thread(host.read, data_dir)
        return JSONResponse(
            {
                "gateway": gateway.settings.id,
                "replica": gateway.settings.replica,
                **shown.document(),
                "host": machine.document(),
            }
        )

    async def records_api(request: Request, who: Staff, _: FormData | None) -> Response:
        """X-Road's operational data query: records whose ``monitoringDataTs`` (Unix seconds)
        lies in ``[recordsFrom, recordsTo]``, at most ``limit``; ``nextRecordsFrom`` says where
        to go on (records of that second may come again, as in X-Road)."""
        query = request.query_params
        until = _moment(query.get("recordsTo"), "recordsTo") or clock()
        since = _moment(query.get("recordsFrom"), "recordsFrom") or until - timedelta(hours=1)
        raw = query.get("limit", str(MAX_API_RECORDS))
        if not raw.isdigit() or not 0 < int(raw) <= MAX_API_RECORDS:
            raise InvalidRequest(f"limit is 1 to {MAX_API_RECORDS}", detail="limit")
        records, following = await gateway.in_thread(
            _records, gateway, since=since, until=until, limit=int(raw)
        )
        if not who.may("audit"):
            # Monitoring needs no person: the person's code (and fault texts that may quote
            # it) are for those who may read the audit log.
            for record in records:
                record["messageUserId"] = record["faultString"] = None
        return JSONResponse(
            {
                "gateway": gateway.settings.id,
                "replica": gateway.settings.replica,
                "records": records,
                "nextRecordsFrom": following,
            }
        )

    async def audit_records(request: Request, who: Staff, _: FormData | None) -> Response:
        params = request.query_params
        before = params.get("before", "")
        outcome = params.get("outcome", "")
        query = auditing.Query(
            since=_moment(params.get("from"), "from"),
            until=_moment(params.get("to"), "to"),
            service=params.get("service", "").strip(),
            client=params.get("client", "").strip(),
            outcome=outcome if outcome in auditing.OUTCOMES else "",
            before=int(before) if before.isdigit() and len(before) < 13 else None,
        )
        rows, following = await gateway.in_thread(
            auditing.browse, gateway.engine, gateway.audit.chain, query
        )
        kept = {k: v for k, v in params.items() if k != "before" and k != "lang" and v}
        return page(
            "audit.html",
            request,
            who,
            chain=gateway.audit.chain,
            rows=rows,
            query=query,
            given=kept,
            following=following,
            scan=auditing.SCAN,
        )

    async def audit_verify(request: Request, who: Staff, _: FormData | None) -> Response:
        verified = await gateway.in_thread(
            auditing.verify_chain,
            gateway.engine,
            gateway.audit.chain,
            data_dir=data_dir,
            anchor_file=anchor_file,
        )
        return page("verify.html", request, who, chain=gateway.audit.chain, verified=verified)

    async def audit_export(request: Request, who: Staff, _: FormData | None) -> Response:
        chain = gateway.audit.chain
        archive = await gateway.in_thread(
            auditing.export_zip, gateway.engine, chain, data_dir=data_dir, anchor_file=anchor_file
        )
        try:
            await gateway.in_thread(_record_export, gateway, who, chain)
        except BaseException:
            shutil.rmtree(archive.parent, ignore_errors=True)
            raise
        name = f"audit-{chain.replace('/', '_')}-{clock().strftime('%Y%m%dT%H%M%SZ')}.zip"
        return FileResponse(
            archive,
            media_type="application/zip",
            filename=name,
            background=BackgroundTask(shutil.rmtree, archive.parent, ignore_errors=True),
        )

    handlers: dict[str, Handler] = {
        "overview": overview,
        "access": access,
        "grant": grant,
        "revoke": revoke,
        "service_list": service_list,
        "service_new": service_new,
        "service_edit_page": service_edit_page,
        "service_declare": service_declare,
        "service_edit": service_edit,
        "service_disable": service_disable,
        "service_enable": service_enable,
        "service_test": service_test,
        "service_publish": service_publish,
        "change_log": change_log,
        "certificate_list": certificate_list,
        "generate_keys": generate_keys,
        "signing_request": signing_request,
        "tls_request": tls_request,
        "enrol": enrol,
        "operations_page": operations_page,
        "figures_api": figures_api,
        "records_api": records_api,
        "audit_records": audit_records,
        "audit_verify": audit_verify,
        "audit_export": audit_export,
    }
    return assemble(
        ROUTES,
        handlers,
        guarded=guarded,
        login=login,
        spec=spec,
        settings=gateway.settings,
        clock=clock,
        pages=pages,
        site=site,
    )


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1


def _records(
    gateway: Gateway, *, since: datetime, until: datetime, limit: int
) -> tuple[list[dict[str, object]], int | None]:
    table = models.Exchange
    with Session(gateway.engine) as session:
        rows = list(
            session.scalars(
                select(table)
                .where(
                    table.response_out >= since.replace(microsecond=0),
                    table.response_out < until.replace(microsecond=0) + timedelta(seconds=1),
                )
                .order_by(table.response_out, table.id)
                .limit(limit + 1)
            )
        )
    following = int(rows[limit].response_out.timestamp()) if len(rows) > limit else None
    return [opmon_fields(row) for row in rows[:limit]], following


def _record_export(gateway: Gateway, who: Staff, chain: str) -> None:
    with Session(gateway.engine) as session:
        changes.record(
            session,
            at=gateway.clock(),
            actor=who.actor,
            action="audit.export",
            target=chain,
            detail={"records": gateway.audit.tree.size},
        )
        session.commit()


def _record_publish(gateway: Gateway, who: Staff, published: dict[str, int]) -> None:
    with Session(gateway.engine) as session:
        changes.record(
            session,
            at=gateway.clock(),
            actor=who.actor,
            action="services.publish",
            target=str(gateway.member),
            detail=published,
        )
        session.commit()


def assemble(
    guards: Iterable[Guard],
    handlers: Mapping[str, Handler],
    *,
    guarded: Callable[[Guard, Handler], Callable[[Request], Awaitable[Response]]],
    login: OidcLogin,
    spec: ConsoleSpec,
    settings: GatewaySettings,
    clock: Callable[[], datetime],
    pages: web.Pages,
    site: Callable[[], str],
) -> ASGIApp:
    """A console's app around its guarded routes: staff sign-in, session, errors and headers,
    the same for the full console and the setup console (:mod:`.setup`)."""
    routes = [
        *shared_staff.staff_sign_in_routes(
            prefix=PREFIX,
            login=login,
            spec=spec,
            table=staff.RIGHTS,
            where="this gateway's console",
            clock=clock,
            signed_out=lambda: pages.message(
                site(),
                gettext(N_("Signed out")),
                gettext(N_("You have signed out of the gateway console.")),
                back=PREFIX + "/",
            ),
        ),
        *(
            Route(g.path, guarded(g, handlers[g.name]), methods=[g.method], name=g.name)
            for g in guards
        ),
    ]
    return shared_staff.console_app(
        routes,
        spec=spec,
        prefix=PREFIX,
        session_key=files.console_session_key(settings),
        cookie="console_session",
        failure=lambda error: pages.failure(site(), error, back=PREFIX + "/"),
    )
