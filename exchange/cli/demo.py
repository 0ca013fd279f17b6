"""``exchange demo``: bring a small federation up on embedded defaults and say what was done.

First run: create instance EE in the data folder with its central authority, timestamping
authority, identity provider with test citizens, consent service, a population register (SQLite)
behind the Population Register's gateway, the State Portal's gateway and the citizen portal.
Later runs resume the same folder. Everything runs in this one process on
localhost; Ctrl-C stops it all.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from exchange.errors import NotFound

if TYPE_CHECKING:
    from exchange.sample import federation


OFFSETS = {
    "central": 0,
    "provider_consumer": 10,
    "provider_tls": 11,
    "preview": 12,
    "consumer_consumer": 20,
    "consumer_tls": 21,
    "tsa": 30,
    "idp": 40,
    "portal": 50,
    "consent": 60,
}
MORE_OFFSETS = {
    "business_consumer": 70,
    "business_tls": 71,
    "university_consumer": 80,
    "university_tls": 81,
    "university_preview": 82,
    "university_backend": 85,
    "documents_backend": 86,
    "mail": 90,
}
ALL_OFFSETS = (*OFFSETS.values(), *MORE_OFFSETS.values())


def _ports(base: int) -> federation.Ports:
    from exchange.sample import federation

    return federation.Ports(**{role: base + offset for role, offset in OFFSETS.items()})


def _more(base: int) -> federation.MorePorts:
    from exchange.sample import federation

    return federation.MorePorts(**{role: base + offset for role, offset in MORE_OFFSETS.items()})


def _edm_walkthrough(data_dir: Path, material: Path, port: int) -> None:
    """The EDM walkthrough's requests and script in ``data_dir/edm``."""
    from exchange.sample import federation, oots

    ports = _ports(port)
    consumer = f"http://127.0.0.1:{ports.consumer_consumer}"
    folder = data_dir / "edm"
    oots.write_requests(
        folder,
        material,
        oots.Parties(
            requester=(federation.PORTAL.member_code, "State Portal"),
            population=(federation.POPULATION.member_code, "Population Register"),
            business=(federation.BUSINESS.member_code, "Business Register"),
        ),
    )
    service = f"{federation.POPULATION_REGISTRY}/{oots.BIRTH_CODE}"
    oots.birth_script(
        folder,
        service_url=f"{consumer}/r1/{service}",
        client=str(federation.CITIZEN_PORTAL),
        idp_url=f"http://127.0.0.1:{ports.idp}",
        consent_url=f"http://127.0.0.1:{ports.consent}",
        consent_client=federation.CONSENT_CLIENT_ID,
        service=service,
    )


def _edm_text(data_dir: Path, material: Path | None, port: int) -> str:
    """What the walkthrough says about OOTS EDM."""
    from exchange.sample import federation, oots

    if material is None:
        return (
            "OOTS EDM is off: start a new demo with --oots-edm FOLDER, the official EDM material"
            " (docs/oots.md),\nfor the EDM walkthrough and the Data Service Directory.\n"
        )
    ports = _ports(port)
    consumer = f"http://127.0.0.1:{ports.consumer_consumer}"
    folder = data_dir / "edm"
    company = f"{consumer}/r1/{federation.BUSINESS_REGISTRY}/{oots.COMPANY_CODE}"
    directory = oots.directory_query(f"http://127.0.0.1:{ports.central}")
    return f"""OOTS EDM (docs/oots.md), requests made from the official samples in {folder}/:
  Which providers offer the demo's birth certificate in Estonia (Data Service Directory):
    curl '{directory}'
  A company extract for a legal person (Tamm & Kask OÜ; public data):
    curl -H 'X-Road-Client: {federation.CITIZEN_PORTAL}' \\
         -H 'Content-Type: application/x-ebrs+xml' \\
         --data-binary @{folder}/company-request.xml '{company}'
  The same extract as a PDF (DistributedAs application/pdf), streamed as the answer's cid: part:
    curl -H 'X-Road-Client: {federation.CITIZEN_PORTAL}' \\
         -H 'Content-Type: application/x-ebrs+xml' \\
         --data-binary @{folder}/company-request-pdf.xml '{company}' > company-extract.txt
  Mari Tamm's birth certificate with preview: her consent, then PreviewRequired and the preview
  page to open (sign in as Mari Tamm, approve); run again with that page's address:
    sh {folder}/birth.sh
    sh {folder}/birth.sh <the preview page's address>
"""


def demo(
    data_dir: Annotated[
        Path, typer.Option(help="Folder holding all demo state; a second run resumes it.")
    ] = Path("demo-data"),
    port: Annotated[
        int,
        typer.Option(help="First port; the demo also uses the next 90 (see the walkthrough)."),
    ] = 4400,
    oots_edm: Annotated[
        Path | None,
        typer.Option(
            envvar="EXCHANGE_DEMO_OOTS_EDM",
            help="The official OOTS EDM v1.0 material (docs/oots.md): adds the EDM walkthrough"
            " and the Data Service Directory. Read at the first run; later runs keep it.",
        ),
    ] = None,
) -> None:
    """Bring up a whole federation on localhost: authorities, registers, gateways, portal."""
    # Imported here, not at the top: every other command starts without loading every role.
    from exchange import serving
    from exchange.central.app import create_app
    from exchange.central.files import resolve
    from exchange.central.service import build
    from exchange.central.settings import CentralSettings
    from exchange.consent.app import create_app as create_consent_app
    from exchange.consent.service import ConsentService
    from exchange.consent.settings import ConsentSettings
    from exchange.db import migrate
    from exchange.db.engine import build_engine
    from exchange.evidence.edm.schemaset import EdmProfileError, EdmSchemas
    from exchange.gateway.node import Gateway
    from exchange.gateway.runner import background_jobs, prepare
    from exchange.gateway.settings import GatewaySettings
    from exchange.idp import files as idp_files
    from exchange.idp.app import create_app as create_idp_app
    from exchange.logging import configure
    from exchange.portal.app import Portal
    from exchange.portal.app import create_app as create_portal_app
    from exchange.portal.settings import PortalSettings
    from exchange.sample import federation, mailbox, population
    from exchange.sample.documents import create_app as create_documents_app
    from exchange.sample.university import create_app as create_university_app
    from exchange.trust.globalconf_client import utcnow
    from exchange.tsa import files as tsa_files
    from exchange.tsa.app import create_app as create_tsa_app

    people = ", ".join(code for code, *_ in population.PEOPLE[:3])
    configure(level="WARNING")
    marker = data_dir / "demo.json"
    if marker.exists():
        made = json.loads(marker.read_text())
        port = made["port"]
        oots_edm = Path(made["oots_edm"]) if made.get("oots_edm") else None
        if not (data_dir / "consent" / "consent.toml").exists():
            raise NotFound(
                f"{data_dir} holds a demo made by an older version (no consent service); "
                "delete it or choose another --data-dir"
            )
        typer.echo(f"resuming the demo in {data_dir} (ports from its first run, from {port})")
        layout = federation.Federation(
            base=data_dir,
            central=CentralSettings.load(
                overrides={
                    "data_dir": data_dir / "central",
                    "port": port,
                    "console": federation.central_console(_ports(port)),
                    "edm_folder": oots_edm,
                }
            ),
            provider=data_dir / "population-gateway" / "gateway.toml",
            consumer=data_dir / "portal-gateway" / "gateway.toml",
            registry=data_dir / "registries" / "population.db",
            tsa=data_dir / "tsa",
            idp=data_dir / "idp",
            consent=data_dir / "consent" / "consent.toml",
            portal=data_dir / "portal" / "portal.toml",
            providers=tuple(
                data_dir / name / "gateway.toml"
                for name in ("business-gateway", "university-gateway")
                if (data_dir / name / "gateway.toml").exists()
            ),
        )
    else:
        if oots_edm is not None:
            oots_edm = oots_edm.resolve()
            try:  # before anything is created: a wrong folder leaves no half-made demo
                EdmSchemas.load(oots_edm)
            except EdmProfileError as exc:
                raise NotFound(str(exc)) from exc
        layout = federation.create(data_dir, _ports(port), more=_more(port), edm=oots_edm)
        if oots_edm is not None:
            _edm_walkthrough(data_dir, oots_edm, port)
        made = {"port": port, "oots_edm": None if oots_edm is None else str(oots_edm)}
        marker.write_text(json.dumps(made) + "\n")
        typer.echo(f"initialised instance {federation.INSTANCE} in {data_dir}")
    ports = _ports(port)
    central_settings = resolve(layout.central)
    migrate.upgrade("central", build_engine(central_settings.db_url))
    central = build(central_settings)
    document = central.publisher.document()
    gateways = []
    for config in (layout.provider, layout.consumer, *layout.providers):
        settings = GatewaySettings.load(config)
        # The authority starts in this same process: give each gateway today's configuration.
        (settings.data_dir / "globalconf.jws").write_bytes(document)
        gateways.append(Gateway(settings))
    for folder in (data_dir / "consent", data_dir / "portal" / "data"):
        (folder / "globalconf.jws").write_bytes(document)
    consent = ConsentService(ConsentSettings.load(layout.consent))
    more = _more(port)
    mail = data_dir / "mail"
    if mailbox.available():  # e-mail to citizens goes to the demo's own mailbox
        notifications: dict[str, object] | None = {
            "smtp_host": "127.0.0.1",
            "smtp_port": more.mail,
            "smtp_security": "none",  # loopback, in this very process
            "from_address": "State Portal <no-reply@portal.demo.invalid>",
            "poll_interval": 5,
        }
        mail_note = f"E-mails to citizens (opt in under Notifications) land in {mail}/ (.eml)."
    else:
        notifications = None
        mail_note = "E-mail to citizens is off: it needs aiosmtpd (pip install -e '.[dev]')."
    portal = Portal(PortalSettings.load(layout.portal, overrides={"notifications": notifications}))

    consumer = f"http://127.0.0.1:{ports.consumer_consumer}"
    # Say how to run this very command again: from a checkout it is not on PATH.
    command = shutil.which("exchange") or str(Path(sys.argv[0]).resolve())
    service = f"{consumer}/r1/{federation.RESIDENCE_RECORD}/v1"
    walkthrough = f"""
exchange demo: instance {federation.INSTANCE} is up on localhost.

Open the citizen portal:  http://127.0.0.1:{ports.portal}/
  sign in as a test citizen (e.g. Mari Tamm), start "Apply for a passport", give consent at the
  consent service, and the portal fetches the birth certificate from the Population Register;
  "Who accessed my data" shows that access and verifies its receipt. "Apply for a teaching
  position" fetches a diploma from the university with preview: you see it before it is sent.
  {mail_note}
  Public figures, without sign-in: http://127.0.0.1:{ports.portal}/figures

  consent service           http://127.0.0.1:{ports.consent}/   (your consents; revoke them here)
  central authority         {central_settings.url}   (global configuration at /globalconf)
  Population Register gw    provider https://127.0.0.1:{ports.provider_tls} (mutual TLS only)
  Business Register gw      provider https://127.0.0.1:{more.business_tls} (SQL register; its
                            PDF extracts at http://127.0.0.1:{more.documents_backend})
  University of Tartu gw    provider https://127.0.0.1:{more.university_tls} (its REST backend at
                            http://127.0.0.1:{more.university_backend}, HTTP connector)
  State Portal gw           consumer {consumer}   (X-Road REST for the portal)
  timestamping authority    http://127.0.0.1:{ports.tsa}/   (RFC 3161, for audit tree heads)
  identity provider         http://127.0.0.1:{ports.idp}   (test citizens, staff; dev only)

Ask the State Portal's gateway for a residence record (released on a legal basis):

  curl -H 'X-Road-Client: {federation.CITIZEN_PORTAL}' -H 'X-Exchange-Purpose: residence-check' \\
       '{service}?person=EE38001085718'

Birth certificates need the person's consent (X-Exchange-Consent); without it the answer is a
signed ConsentRequired refusal, and the register is not asked.

Add -H 'Accept: application/xml' for XML. Sample people: {people}.
A company's registration (public data) from the Business Register:

  curl -H 'X-Road-Client: {federation.CITIZEN_PORTAL}' \\
       '{consumer}/r1/{federation.BUSINESS_REGISTRATION}/v1?code=10137319'

List what a register offers:
  curl -H 'X-Road-Client: {federation.CITIZEN_PORTAL}' \\
       '{consumer}/r1/{federation.POPULATION_REGISTRY}/listMethods'

Every exchange is in both gateways' audit logs; heads are signed, timestamped and witnessed
by the central authority every few seconds while there is traffic:
  curl http://127.0.0.1:{ports.provider_consumer}/audit/heads
  {command} audit verify -c {layout.provider}

Agency staff run each gateway from its console (access rights, operations, audit log,
certificates); sign in as Olga Oja (operator), Aivar Aru (auditor) or Vera Vaher (viewer):
  http://127.0.0.1:{ports.provider_consumer}/console/   (Population Register)
  {consumer}/console/   (State Portal)
The instance's operators decide membership applications, revoke certificates and compare
global configuration versions at the central console (same staff, same roles):
  {central_settings.url}/console/

{_edm_text(data_dir, oots_edm, port)}
State lives in {data_dir}; run again to resume. Ctrl-C stops everything.
"""

    async def main() -> None:
        configs = [
            serving.config(create_app(central_settings), host="127.0.0.1", port=ports.central),
            serving.config(
                create_tsa_app(tsa_files.load(layout.tsa), clock=utcnow),
                host="127.0.0.1",
                port=ports.tsa,
            ),
            serving.config(
                create_idp_app(idp_files.load(layout.idp, clock=utcnow)),
                host="127.0.0.1",
                port=ports.idp,
            ),
            serving.config(create_consent_app(consent), host="127.0.0.1", port=ports.consent),
            serving.config(create_university_app(), host="127.0.0.1", port=more.university_backend),
            serving.config(create_documents_app(), host="127.0.0.1", port=more.documents_backend),
            serving.config(create_portal_app(portal), host="127.0.0.1", port=ports.portal),
        ]

        def announce() -> None:
            for gateway in gateways:
                gateway.started = True
            typer.echo(walkthrough)

        jobs = [consent.trust.keep_fresh(60.0), *portal.background]
        if notifications is not None:
            jobs.append(mailbox.mailbox(mail, more.mail))
        for gateway in gateways:
            configs += prepare(gateway, refresh=False)  # the cache was just filled
            jobs += background_jobs(gateway)
        try:
            await serving.serve_all(configs, background=jobs, on_started=announce)
        finally:
            for gateway in gateways:
                await gateway.close()
            await portal.close()
            consent.close()

    serving.run(main())
    typer.echo("demo stopped")
