"""The citizen portal's settings file (TOML): an example consumer information system.

::

    client = "EE/GOV/70000001/citizen-portal"   # its X-Road subsystem
    gateway_url = "http://127.0.0.1:4420"       # its own gateway's consumer side
    anchor = "anchor.json"                      # to read the global configuration
    data_dir = "data"
    public_url = "http://127.0.0.1:4450"
    consent_service = "consent"                 # which consent service citizens are sent to
    database_url = "postgresql://..."           # ratings; default: SQLite in data_dir
    figures = true                              # publish /figures (docs/public-figures.md)

    [listen]
    port = 4450

    [identity]
    issuer = "http://127.0.0.1:4440"
    jwks_url = "http://127.0.0.1:4440/jwks"
    client_id = "citizen-portal"

    default_language = "fr"                     # when a reader's browser asks for none we speak

    [[procedures]]                              # what citizens can do here (default: passport)
    code = "passport"
    title = { en = "Apply for a passport", fr = "Demander un passeport", ar = "طلب جواز سفر" }
    ...

    [labels]                                    # evidence fields as citizens read them
    givenName = { en = "Given name", fr = "Prénom", ar = "الاسم الشخصي" }

    [notifications]                             # e-mail at each access (docs/notifications.md)
    smtp_host = "smtp.example.org"
    smtp_port = 587
    smtp_security = "starttls"                  # "starttls", "tls" (implicit TLS) or "none"
    smtp_username = "portal"
    smtp_password_file = "/run/secrets/smtp"    # or EXCHANGE_PORTAL_NOTIFICATIONS_SMTP_PASSWORD
    from_address = "State Portal <no-reply@portal.example>"

Text for people (a procedure's ``title``, ``description``, ``evidence``, ``purpose_text``, the
``labels``) is one string, or a table with one string per language; a language the table lacks
is shown in English (see ``docs/languages.md``).

Variables ``EXCHANGE_PORTAL_<KEY>`` and ``EXCHANGE_PORTAL_<SECTION>_<KEY>`` override the file
(:mod:`exchange.settings_file`), e.g. ``EXCHANGE_PORTAL_IDENTITY_CLIENT_SECRET``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from exchange.db.engine import sqlite_url
from exchange.identifiers import ServiceId, SubsystemId, check_segment, unversioned
from exchange.settings_file import Listen, OidcClient, RoleSettings, Strict
from exchange.web.languages import SOURCE, Language, Text, localised


class Procedure(Strict):
    """A public service that needs evidence another agency already holds."""

    code: str
    title: Text
    description: Text
    service: str  # INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/VERSION] to fetch the evidence from
    evidence: Text  # what the citizen would otherwise bring, in words
    purpose: str
    purpose_text: Text  # sent to the consent service in the reader's language
    legal_basis: str | None = None
    valid_days: int = Field(default=30, ge=1, le=365)
    max_uses: int | None = Field(default=3, ge=1)
    preview: bool = False

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        return check_segment(value, "procedure code")

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        ServiceId.parse(value)
        return value

    @property
    def consented_service(self) -> str:
        """The service as a consent names it: without its version."""
        return unversioned(self.service)


def passport(service: str) -> Procedure:
    return Procedure(
        code="passport",
        title={"en": "Apply for a passport", "fr": "Demander un passeport", "ar": "طلب جواز سفر"},
        description={
            "en": "A first passport needs proof of birth. Instead of bringing a certificate, let "
            "the portal obtain your birth certificate from the Population Register with your "
            "consent.",
            "fr": "Un premier passeport demande une preuve de naissance. Au lieu d'apporter un "
            "acte, laissez le portail obtenir votre acte de naissance auprès du registre de la "
            "population, avec votre consentement.",
            "ar": "يتطلب أول جواز سفر إثباتًا للميلاد. بدلًا من أن تُحضر شهادة بنفسك، اسمح "
            "للبوابة بأن تحصل على شهادة ميلادك من سجل السكان بموافقتك.",
        },
        service=service,
        evidence={"en": "birth certificate", "fr": "acte de naissance", "ar": "شهادة الميلاد"},
        purpose="passport-application",
        purpose_text={
            "en": "to check your identity and citizenship for your passport application",
            "fr": "vérifier votre identité et votre nationalité pour votre demande de passeport",
            "ar": "التحقق من هويتك وجنسيتك لطلب جواز السفر",
        },
    )


def teaching(service: str) -> Procedure:
    return Procedure(
        code="teaching-position",
        title={
            "en": "Apply for a teaching position",
            "fr": "Postuler à un poste d'enseignant",
            "ar": "التقدم لوظيفة تدريس",
        },
        description={
            "en": "Schools need proof of your higher education. Let the portal obtain your "
            "diploma from the university with your consent; you will see it before it is sent.",
            "fr": "Les écoles demandent une preuve de vos études supérieures. Laissez le portail "
            "obtenir votre diplôme auprès de l'université, avec votre consentement ; vous le "
            "verrez avant qu'il ne soit envoyé.",
            "ar": "تطلب المدارس إثباتًا لتعليمك العالي. اسمح للبوابة بأن تحصل على شهادتك "
            "الجامعية من الجامعة بموافقتك، وستطّلع عليها قبل إرسالها.",
        },
        service=service,
        evidence={"en": "diploma", "fr": "diplôme", "ar": "الشهادة الجامعية"},
        purpose="teaching-application",
        purpose_text={
            "en": "to check your qualification for a teaching position",
            "fr": "vérifier votre qualification pour un poste d'enseignant",
            "ar": "التحقق من مؤهلك لوظيفة تدريس",
        },
        max_uses=1,
        preview=True,
    )


class Notifications(Strict):
    """E-mail to citizens at each release of their data, or once a day: where the portal's
    mail goes out (an SMTP server) and how often it asks the registers (docs/notifications.md)."""

    smtp_host: str
    smtp_port: int = Field(default=587, ge=1, le=65535)
    # "starttls": plain connection upgraded by STARTTLS (port 587); "tls": TLS from the first
    # byte (port 465); "none": no TLS, for a relay on the same host or the tests' loopback.
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None  # better from the environment or a file
    smtp_password_file: Path | None = None
    smtp_timeout: float = Field(default=30.0, gt=0)
    from_address: str
    poll_interval: float = Field(default=15.0, gt=0, le=30)  # seconds between questions
    digest_hour: int = Field(default=7, ge=0, le=23)  # UTC hour of the daily digest

    @model_validator(mode="after")
    def _one_password(self) -> Notifications:
        if self.smtp_password is not None and self.smtp_password_file is not None:
            raise ValueError("give smtp_password or smtp_password_file, not both")
        return self

    def password(self) -> str | None:
        """The SMTP password, read from its file when one is named (at start)."""
        if self.smtp_password_file is not None:
            return self.smtp_password_file.read_text().strip()
        return self.smtp_password.get_secret_value() if self.smtp_password else None


class PortalSettings(RoleSettings):
    prefix: ClassVar[str] = "EXCHANGE_PORTAL_"
    kind: ClassVar[str] = "portal"

    client: str
    gateway_url: str
    anchor: Path
    data_dir: Path
    public_url: str
    consent_service: str
    listen: Listen = Listen(port=4450)
    identity: OidcClient
    procedures: list[Procedure] = Field(min_length=1)
    labels: dict[str, Text] = Field(default_factory=dict)  # evidence fields, by their name
    default_language: Language = SOURCE
    timeout: float = Field(default=30.0, gt=0)
    globalconf_refresh: float = Field(default=60.0, gt=0)
    database_url: str | None = None
    figures: bool = True
    notifications: Notifications | None = None  # off unless an SMTP server is given

    @property
    def db_url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir / "portal.db")

    @field_validator("client")
    @classmethod
    def _client(cls, value: str) -> str:
        SubsystemId.parse(value)
        return value

    @property
    def https(self) -> bool:
        return self.public_url.startswith("https://")

    def label(self, field: str) -> str:
        """An evidence field's name in the reader's language (its own name if none is given)."""
        text = self.labels.get(field)
        return field if text is None else localised(text)

    def procedure(self, code: str) -> Procedure | None:
        return next((p for p in self.procedures if p.code == code), None)
