"""The services page: what the gateway provides, from its settings file and from the console,
and the form that declares or edits one.

The form's fields are those of a ``[[services]]`` entry (:class:`ServiceSpec`), for the SQL and
HTTP connectors; what it sends is read into the document the settings file would hold and
checked by the same model (:func:`exchange.gateway.declared.parse`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData

from exchange.errors import InvalidRequest
from exchange.gateway.declared import Declared, hide_password
from exchange.gateway.settings import ServiceSpec
from exchange.web.languages import N_

POLICIES = ("consent", "legal-basis", "public")
CONNECTORS = ("sql", "http")  # what the form offers; python connectors live in the file
# What pages call each policy.
WORDS = {
    "consent": N_("consent of the person"),
    "legal-basis": N_("legal basis of the client"),
    "public": N_("public"),
}


@dataclass(frozen=True, slots=True)
class Row:
    spec: ServiceSpec
    source: str  # file | console
    enabled: bool
    shown_url: str
    changed_by: str = ""

    @property
    def key(self) -> str:
        return f"{self.spec.subsystem}/{self.spec.code}"

    @property
    def policy_words(self) -> str:
        return WORDS[self.spec.consent_policy]


def rows(file_specs: list[ServiceSpec], declared: list[Declared]) -> list[Row]:
    listed = [
        Row(spec, "file", enabled=True, shown_url=hide_password(spec.connector.url))
        for spec in file_specs
    ]
    listed += [
        Row(d.spec, "console", d.enabled, shown_url=d.shown_url, changed_by=d.changed_by)
        for d in declared
    ]
    return sorted(listed, key=lambda row: row.key)


def _text(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _list(raw: str) -> list[str]:
    return [part for part in raw.replace(",", " ").split() if part]


def _fields(raw: str) -> dict[str, str] | None:
    """``evidence.path = column``, one a line; none given: the row's columns as they are."""
    fields: dict[str, str] = {}
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        path, equals, column = line.partition("=")
        if not equals or not path.strip() or not column.strip():
            raise InvalidRequest(
                f"connector fields, line {number}: write evidence.path = column",
                detail="connector_fields",
            )
        fields[path.strip()] = column.strip()
    return fields or None


def document(form: FormData) -> dict[str, Any]:
    """The form as a ``[[services]]`` entry, for :func:`exchange.gateway.declared.parse`."""
    kind = _text(form, "connector_type")
    if kind not in CONNECTORS:  # a python connector names code to import: the file's to say
        raise InvalidRequest(
            "the console declares sql and http connectors only", detail="connector_type"
        )
    connector: dict[str, Any] = {"type": kind, "url": _text(form, "connector_url") or None}
    if kind == "sql":
        connector["query"] = _text(form, "connector_query") or None
        connector["json_columns"] = _list(_text(form, "json_columns"))
    fields = _fields(_text(form, "connector_fields"))
    if fields is not None:
        connector["fields"] = fields
    if _text(form, "timeout"):
        connector["timeout"] = _text(form, "timeout")
    return {
        "subsystem": _text(form, "subsystem"),
        "code": _text(form, "code"),
        "version": _text(form, "version") or None,
        "evidence_type": _text(form, "evidence_type"),
        "description": _text(form, "description"),
        "consent_policy": _text(form, "consent_policy"),
        "preview": _text(form, "preview") == "on",
        # Empty: the evidence is about no person (a company, say), as in the settings file.
        "subject_parameter": _text(form, "subject_parameter"),
        "methods": [m for m in form.getlist("methods") if isinstance(m, str)] or ["GET"],
        "parameters": _list(_text(form, "parameters")),
        "connector": connector,
    }


def filled(spec: ServiceSpec | None, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the form shows: a stored declaration (its password hidden), or what was sent."""
    if given is not None:
        return dict(given)
    if spec is None:
        return {
            "connector_type": "sql",
            "consent_policy": "consent",
            "subject_parameter": "person",
            "parameters": "person",
            "methods": ["GET"],
        }
    connector = spec.connector
    return {
        "subsystem": spec.subsystem,
        "code": spec.code,
        "version": spec.version or "",
        "evidence_type": spec.evidence_type,
        "description": spec.description,
        "consent_policy": spec.consent_policy,
        "preview": spec.preview,
        "subject_parameter": spec.subject_parameter or "",
        "methods": list(spec.methods),
        "parameters": " ".join(spec.parameters),
        "connector_type": connector.type,
        "connector_url": hide_password(connector.url),
        "connector_query": connector.query or "",
        "connector_fields": "\n".join(f"{k} = {v}" for k, v in (connector.fields or {}).items()),
        "json_columns": " ".join(connector.json_columns),
        "timeout": f"{connector.timeout:g}",
    }


def sent(form: FormData) -> dict[str, Any]:
    """The form's values as sent, to show them again beside what was wrong."""
    shown: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf"}
    shown["methods"] = [m for m in form.getlist("methods") if isinstance(m, str)]
    shown["preview"] = shown.get("preview") == "on"
    return shown
