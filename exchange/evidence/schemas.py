"""Evidence schemas: one XSD per evidence type, loaded once, driving both XML and JSON.

:meth:`EvidenceSchemas.load` reads every ``*.xsd`` of a folder at start-up; the file stem is the
evidence type (``birth-certificate.xsd`` -> ``birth-certificate``). Each schema is read twice from
the same local file: by xmlschema (network and remote access off, ``allow="sandbox"``,
``defuse="always"``, import warnings turned into errors), which checks the XSD itself against the
XSD meta-schema and yields the element structure; and by lxml, whose compiled libxml2 validator is
kept for the request path. Loading fails loudly (:class:`EvidenceSchemaError`) for a broken
schema, an ``xs:import``/``xs:include``, a schema with other than one global element, or a
construct outside the supported dict mapping.

The dict mapping. Keys are local element names without prefixes; a complex element is a dict, an
element that may repeat (``maxOccurs`` > 1) is a list, a simple element is a value: ``str`` (or
``int``) for string types, ``bool`` for ``xs:boolean``, ``int`` for integer types, ``Decimal``
(or ``int``, ``float``) for ``xs:decimal``, ``datetime.date`` for ``xs:date``; a string is also
accepted for any simple type and then checked by its lexical form. ``None`` means "absent".
Decoded values come back as the schema normalises them (``xs:token`` collapses XML white space).
Supported XSD: complex types whose content is one ``xs:sequence`` of local elements; attributes,
mixed content, wildcards, choices, nillable elements and default or fixed values are refused.

What is checked on every call: the full XSD validation of the document (patterns, enumerations,
lengths, ranges, order and number of elements) by libxml2, after the dict has been turned into a
tree; unknown keys and values of the wrong Python type are refused before that. What is not
checked: anything beyond the schema (check digits of personal codes, whether a date is in the
past, whether a country code is assigned). Failures raise :class:`~exchange.errors.InvalidEvidence`
naming the evidence type and the path of the offending element, never its value.
"""

from __future__ import annotations

import json
import math
import re
import threading
import warnings
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import orjson
import xmlschema
from lxml import etree
from xmlschema.validators import XsdComplexType, XsdElement, XsdGroup, XsdSimpleType

from exchange.errors import InvalidEvidence, InvalidXml, NotFound
from exchange.evidence.xml import XML_MAX_BYTES, parse_untrusted

Kind = Literal["string", "boolean", "integer", "decimal", "date"]

_XS = "{http://www.w3.org/2001/XMLSchema}"
_KINDS: dict[str, Kind] = {
    f"{_XS}string": "string",
    f"{_XS}anyURI": "string",
    f"{_XS}boolean": "boolean",
    f"{_XS}integer": "integer",
    f"{_XS}decimal": "decimal",
    f"{_XS}date": "date",
}
_EXPECTED: dict[Kind, str] = {
    "string": "text",
    "boolean": "a boolean",
    "integer": "an integer",
    "decimal": "a decimal number",
    "date": "a date",
}
_FORBIDDEN_XSD = tuple(f"{_XS}{name}" for name in ("import", "include", "redefine", "override"))
_TYPE_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_MAX_DEPTH = 32
_XML_SPACE = str.maketrans("\t\n\r", "   ")
_UNNORMALISED = re.compile(r"[\t\n\r]|  |^ | $")

# libxml2 error types -> what to tell the caller; its own messages quote the value, so never used.
_REASONS = (
    ("SCHEMAV_CVC_ENUMERATION", "is not one of the allowed values"),
    ("SCHEMAV_CVC_PATTERN", "does not have the required form"),
    ("SCHEMAV_CVC_MINLENGTH", "is too short"),
    ("SCHEMAV_CVC_MAXLENGTH", "is too long"),
    ("SCHEMAV_CVC_LENGTH", "does not have the required length"),
    ("SCHEMAV_CVC_MININCLUSIVE", "is out of range"),
    ("SCHEMAV_CVC_MINEXCLUSIVE", "is out of range"),
    ("SCHEMAV_CVC_MAXINCLUSIVE", "is out of range"),
    ("SCHEMAV_CVC_MAXEXCLUSIVE", "is out of range"),
    ("SCHEMAV_CVC_TOTALDIGITS", "has too many digits"),
    ("SCHEMAV_CVC_FRACTIONDIGITS", "has too many decimal places"),
    ("SCHEMAV_CVC_DATATYPE", "is not a valid value of its type"),
    ("SCHEMAV_ELEMENT_CONTENT", "is not expected here (or an element before it is missing)"),
    ("SCHEMAV_CVC_COMPLEX_TYPE_2_4", "lacks a required child element"),
    ("SCHEMAV_CVC_COMPLEX_TYPE_2_3", "has text where only elements are allowed"),
    ("SCHEMAV_CVC_ELT_1", "is not the root element of this evidence type"),
)


class EvidenceSchemaError(ValueError):
    """A schema file cannot be used; raised at start-up only, never on the request path."""


class _Node:
    """One element declaration, reduced to what the dict mapping needs."""

    __slots__ = (
        "by_name",
        "by_tag",
        "children",
        "kind",
        "name",
        "repeated",
        "required",
        "tag",
        "whitespace",
    )

    def __init__(
        self,
        element: XsdElement,
        *,
        kind: Kind | None,
        whitespace: str,
        children: tuple[_Node, ...],
    ) -> None:
        self.name: str = element.local_name or ""
        self.tag: str = element.name or ""
        self.required = element.min_occurs > 0
        self.repeated = element.max_occurs != 1
        self.kind = kind
        self.whitespace = whitespace
        self.children = children
        self.by_name = {child.name: child for child in children}
        self.by_tag = {child.tag: child for child in children}


class _Fault(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason


class EvidenceSchema:
    """The schema of one evidence type; safe to share between threads."""

    def __init__(
        self,
        *,
        evidence_type: str,
        namespace: str,
        model: _Node,
        validator: etree.XMLSchema,
        max_xml_bytes: int,
    ) -> None:
        self.evidence_type = evidence_type
        self.namespace = namespace
        self.root = model.name
        self._model = model
        self._validator = validator
        self._max_xml_bytes = max_xml_bytes
        # An lxml validator collects errors in one log per instance: one validation at a time.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, *, max_xml_bytes: int = XML_MAX_BYTES) -> EvidenceSchema:
        """Read, check and compile one XSD file; raise :class:`EvidenceSchemaError` if unusable."""
        path = Path(path).resolve()
        evidence_type = path.stem
        if _TYPE_NAME.fullmatch(evidence_type) is None:
            raise EvidenceSchemaError(f"{path}: {evidence_type!r} is not an evidence type name")
        try:
            document = parse_untrusted(path.read_bytes(), max_bytes=XML_MAX_BYTES)
        except (OSError, InvalidXml) as error:
            raise EvidenceSchemaError(f"{path}: cannot read the schema: {error}") from error
        for tag in _FORBIDDEN_XSD:
            if document.find(tag) is not None:
                raise EvidenceSchemaError(f"{path}: {tag[len(_XS) :]} is not allowed")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", xmlschema.XMLSchemaImportWarning)
                schema = xmlschema.XMLSchema(
                    str(path), allow="sandbox", base_url=str(path.parent), defuse="always"
                )
        except (xmlschema.XMLSchemaException, xmlschema.XMLSchemaImportWarning) as error:
            raise EvidenceSchemaError(f"{path}: invalid schema: {error}") from error
        if len(schema.elements) != 1:
            raise EvidenceSchemaError(
                f"{path}: {len(schema.elements)} global elements; exactly one (the root) is needed"
            )
        if not schema.target_namespace:
            raise EvidenceSchemaError(f"{path}: the schema has no targetNamespace")
        (root,) = schema.elements.values()
        model = _compile(root, f"{path}: ", 0)
        try:
            # The request path validates with libxml2, compiled once from the same XSD: a typical
            # birth certificate takes ~6 us there against ~600 us with xmlschema (~0.9 ms to
            # encode). Both are strict XSD 1.0 validators; the tests check that they agree.
            validator = etree.XMLSchema(document)
        except etree.XMLSchemaParseError as error:
            raise EvidenceSchemaError(f"{path}: libxml2 rejects the schema: {error}") from error
        return cls(
            evidence_type=evidence_type,
            namespace=schema.target_namespace,
            model=model,
            validator=validator,
            max_xml_bytes=max_xml_bytes,
        )

    def to_xml(self, evidence: Mapping[str, Any]) -> bytes:
        """Encode and validate ``evidence``; a UTF-8 XML document with an XML declaration."""
        root = self._encode(evidence)
        result: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
        return result

    def to_json(self, evidence: Mapping[str, Any]) -> bytes:
        """Validate as :meth:`to_xml` does; UTF-8 JSON ``{"<Root>": {...}}`` of the schema values.

        Keys follow the schema's element order. Dates are ISO strings, decimals are strings
        (exact, never floats), integers are numbers, booleans are JSON booleans.

        The values are those the validated document decodes to (:meth:`from_xml`), taken in the
        pass that builds the document from each element's text as it is set, so the document is
        not walked a second time; they are used only once it validated.
        """
        decoded = _Decoded()
        self._encode(evidence, decoded)
        if decoded.failed:  # a form we do not map, as :meth:`_decode` would have found
            raise self._invalid(_Fault(f"/{self.root}", "has a value in an unsupported form"))
        try:
            return orjson.dumps({self.root: decoded.value}, default=_json_value)
        except orjson.JSONEncodeError:  # integers beyond 64 bits: the standard library has them
            text = json.dumps(
                {self.root: decoded.value},
                ensure_ascii=False,
                separators=(",", ":"),
                default=_json_value,
            )
            return text.encode("utf-8")

    def from_xml(self, data: bytes) -> dict[str, Any]:
        """Parse untrusted XML, validate it and decode it to the dict shape :meth:`to_xml` takes.

        Raises :class:`~exchange.errors.InvalidXml` for malformed, oversized or dangerous XML and
        :class:`~exchange.errors.InvalidEvidence` for XML that does not satisfy the schema.
        ``xsi:schemaLocation`` and other hints in the document are ignored.
        """
        root = parse_untrusted(data, max_bytes=self._max_xml_bytes)
        if root.tag != self._model.tag:
            raise self._invalid(_Fault("/*", f"is not a {self.root} element of {self.namespace}"))
        self._validate(root)
        return self._decode(root)

    def _encode(
        self, evidence: Mapping[str, Any], decoded: _Decoded | None = None
    ) -> etree._Element:
        root = etree.Element(self._model.tag, nsmap={None: self.namespace})
        try:
            _encode_children(self._model, evidence, root, f"/{self.root}", decoded)
        except _Fault as fault:
            raise self._invalid(fault) from fault.__cause__
        self._validate(root)
        return root

    def _validate(self, root: etree._Element) -> None:
        with self._lock:
            try:
                self._validator.assertValid(root.getroottree())
            except etree.DocumentInvalid as error:
                fault = self._explain(root, error.error_log)
                raise self._invalid(fault) from error

    def _decode(self, root: etree._Element) -> dict[str, Any]:
        try:
            value: dict[str, Any] = _decode(self._model, root)
        except (KeyError, ValueError, ArithmeticError) as error:  # forms we do not map
            raise self._invalid(
                _Fault(f"/{self.root}", "has a value in an unsupported form")
            ) from error
        return value

    def _invalid(self, fault: _Fault) -> InvalidEvidence:
        return InvalidEvidence(
            f"{self.evidence_type} evidence is invalid: {fault.path} {fault.reason}",
            detail=fault.path,
        )

    def _explain(self, root: etree._Element, log: Any) -> _Fault:
        entry = next(iter(log.filter_from_errors()), None)
        if entry is None:
            return _Fault(f"/{self.root}", "does not satisfy the schema")
        reason = next((text for key, text in _REASONS if entry.type_name.startswith(key)), None)
        try:
            found = root.getroottree().xpath(entry.path)
        except etree.XPathError:
            found = []
        path = self._describe(found[0]) if found else f"/{self.root}"
        return _Fault(path, reason or "does not satisfy the schema")

    def _describe(self, element: etree._Element) -> str:
        """The path of ``element`` in schema names; names the schema does not declare become *."""
        chain = [*reversed(list(element.iterancestors())), element]
        node: _Node | None = self._model if chain[0].tag == self._model.tag else None
        parts = [node.name if node is not None else "*"]
        for item in chain[1:]:
            node = node.by_tag.get(item.tag) if node is not None else None
            if node is None:
                parts.append("*")
            elif node.repeated:
                before = sum(
                    1 for other in item.itersiblings(preceding=True) if other.tag == item.tag
                )
                parts.append(f"{node.name}[{before + 1}]")
            else:
                parts.append(node.name)
        return "/" + "/".join(parts)


class EvidenceSchemas:
    """Every evidence schema of a folder, by evidence type."""

    def __init__(self, schemas: Mapping[str, EvidenceSchema]) -> None:
        self._schemas = dict(schemas)

    @classmethod
    def load(cls, folder: Path, *, max_xml_bytes: int = XML_MAX_BYTES) -> EvidenceSchemas:
        """Load every ``*.xsd`` in ``folder`` once; any unusable one raises EvidenceSchemaError."""
        paths = sorted(Path(folder).glob("*.xsd"))
        if not paths:
            raise EvidenceSchemaError(f"{folder}: no *.xsd schema files")
        return cls(
            {path.stem: EvidenceSchema.load(path, max_xml_bytes=max_xml_bytes) for path in paths}
        )

    def types(self) -> list[str]:
        return sorted(self._schemas)

    def get(self, evidence_type: str) -> EvidenceSchema:
        schema = self._schemas.get(evidence_type)
        if schema is None:
            shown = repr(evidence_type) if _TYPE_NAME.fullmatch(evidence_type) else "requested"
            raise NotFound(f"unknown evidence type {shown}", detail="evidence type")
        return schema


def _compile(element: XsdElement, where: str, depth: int) -> _Node:
    name = f"{where}element {element.local_name}"
    if depth > _MAX_DEPTH:
        raise EvidenceSchemaError(f"{name}: nested deeper than {_MAX_DEPTH} levels")
    if element.ref is not None or element.nillable:
        raise EvidenceSchemaError(f"{name}: element references and nillable are not supported")
    if element.default is not None or element.fixed is not None:
        raise EvidenceSchemaError(f"{name}: default and fixed values are not supported")
    xsd_type = element.type
    if isinstance(xsd_type, XsdSimpleType):
        return _Node(
            element, kind=_kind(xsd_type, name), whitespace=_whitespace(xsd_type), children=()
        )
    if not isinstance(xsd_type, XsdComplexType) or len(xsd_type.attributes) or xsd_type.mixed:
        raise EvidenceSchemaError(f"{name}: attributes and mixed content are not supported")
    group = xsd_type.content
    if (
        not isinstance(group, XsdGroup)
        or group.model != "sequence"
        or (group.min_occurs, group.max_occurs) != (1, 1)
    ):
        raise EvidenceSchemaError(f"{name}: only one xs:sequence of elements is supported")
    children = []
    for particle in group:
        if not isinstance(particle, XsdElement):
            raise EvidenceSchemaError(f"{name}: only elements may appear in its sequence")
        children.append(_compile(particle, where, depth + 1))
    if len({child.name for child in children}) != len(children):
        raise EvidenceSchemaError(f"{name}: a child element name appears twice in its sequence")
    return _Node(element, kind=None, whitespace="collapse", children=tuple(children))


def _kind(xsd_type: XsdSimpleType, name: str) -> Kind:
    current: Any = xsd_type
    while current is not None:
        kind = _KINDS.get(current.name or "")
        if kind is not None:
            return kind
        current = getattr(current, "base_type", None)
    raise EvidenceSchemaError(
        f"{name}: its simple type is not supported (use one derived from "
        "xs:string, xs:boolean, xs:integer, xs:decimal or xs:date)"
    )


def _whitespace(xsd_type: XsdSimpleType) -> str:
    value = getattr(xsd_type, "white_space", None)
    return value if value in {"preserve", "replace"} else "collapse"


class _Decoded:
    """What the encoded document decodes to, gathered while it is encoded (see to_json)."""

    __slots__ = ("failed", "value")

    def __init__(self) -> None:
        self.value: dict[str, Any] = {}
        self.failed = False


def _encode_children(
    node: _Node,
    value: Any,
    element: etree._Element,
    path: str,
    decoded: _Decoded | None,
    into: dict[str, Any] | None = None,
) -> None:
    if not isinstance(value, Mapping):
        raise _Fault(path, "must be a mapping of its child elements")
    for key in value:
        if key not in node.by_name:
            shown = repr(key) if isinstance(key, str) and _KEY_NAME.fullmatch(key) else "a key"
            raise _Fault(path, f"has an unexpected field: {shown} is not an element here")
    if decoded is not None and into is None:
        into = decoded.value
    for child in node.children:
        item = value.get(child.name)
        where = f"{path}/{child.name}"
        if item is None or (child.repeated and isinstance(item, list | tuple) and not item):
            if child.required:
                raise _Fault(where, "is required")
            continue
        if child.repeated:
            if not isinstance(item, list | tuple):
                raise _Fault(where, "must be a list (the element may repeat)")
            entries: list[Any] = []
            for index, entry in enumerate(item, 1):
                entries.append(_encode_element(child, entry, element, f"{where}[{index}]", decoded))
            if into is not None:
                into[child.name] = entries
        elif isinstance(item, list | tuple):
            raise _Fault(where, "must be a single value, not a list")
        else:
            got = _encode_element(child, item, element, where, decoded)
            if into is not None:
                into[child.name] = got


def _encode_element(
    node: _Node, value: Any, parent: etree._Element, path: str, decoded: _Decoded | None
) -> Any:
    """Add the element; with ``decoded``, return what it decodes to (else None)."""
    element = etree.SubElement(parent, node.tag)
    if node.kind is None:
        children: dict[str, Any] | None = {} if decoded is not None else None
        _encode_children(node, value, element, path, decoded, children)
        return children
    text = _to_text(node.kind, value)
    if text is None:
        raise _Fault(path, f"must be {_EXPECTED[node.kind]}, not {type(value).__name__}")
    try:
        element.text = text
    except ValueError as error:  # control characters, lone surrogates
        raise _Fault(path, "contains characters that XML cannot carry") from error
    if decoded is None:
        return None
    try:
        return _leaf(node, text)
    except (ValueError, ArithmeticError):
        decoded.failed = True  # reported only if the document validates (as _decode would)
        return None


def _to_text(kind: Kind, value: Any) -> str | None:
    """The lexical form of ``value``, or ``None`` if its Python type does not fit ``kind``."""
    if isinstance(value, str):
        return value  # its form is the validator's business
    if isinstance(value, bool):
        return ("true" if value else "false") if kind == "boolean" else None
    if isinstance(value, int):
        return str(value) if kind in {"string", "integer", "decimal"} else None
    if kind == "decimal" and isinstance(value, Decimal) and value.is_finite():
        return format(value, "f")
    if kind == "decimal" and isinstance(value, float) and math.isfinite(value):
        return format(Decimal(repr(value)), "f")
    if kind == "date" and isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return None


def _decode(node: _Node, element: etree._Element) -> Any:
    """The dict form of a validated element (so every child is declared and every value fits)."""
    if node.kind is None:
        result: dict[str, Any] = {}
        for child in element:
            if not isinstance(child.tag, str):
                continue  # comments and processing instructions
            declared = node.by_tag[child.tag]
            value = _decode(declared, child)
            if declared.repeated:
                result.setdefault(declared.name, []).append(value)
            else:
                result[declared.name] = value
        return result
    text = element.text or ""
    if len(element):  # comments or processing instructions split the text
        text += "".join(child.tail or "" for child in element)
    return _leaf(node, text)


def _leaf(node: _Node, text: str) -> Any:
    """The value of a simple element's text, as the schema normalises it."""
    if node.whitespace != "preserve" and _UNNORMALISED.search(text) is not None:
        text = text.translate(_XML_SPACE)
        if node.whitespace == "collapse":
            text = " ".join(part for part in text.split(" ") if part)
    if node.kind == "string":
        return text
    if node.kind == "boolean":
        return text in {"true", "1"}
    if node.kind == "integer":
        return int(text)
    if node.kind == "decimal":
        return Decimal(text)
    return date.fromisoformat(text)  # the schemas' Date type allows YYYY-MM-DD only


def _json_value(value: object) -> str:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
