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
lengths, ranges, order and number of elements) by libxml2, on the tree parsed from the document
the dict was written as (the very bytes :meth:`EvidenceSchema.to_xml` returns); unknown keys,
values of the wrong Python type and characters XML cannot carry are refused before that. What is not
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
from collections.abc import Callable, Mapping
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
_XML_SPACE_CHARACTER = re.compile("[\t\n\r]")
# Characters outside XML 1.0's Char production (lxml refuses the same): C0 controls but tab, line
# feed and carriage return; lone surrogates; U+FFFE and U+FFFF.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# What a text decodes to, by kind, once the schema's white-space step is done (see _leaf).
_VALUE_OF: dict[Kind, Callable[[str], Any]] = {
    "string": str,
    "boolean": frozenset({"true", "1"}).__contains__,
    "integer": int,
    "decimal": Decimal,
    "date": date.fromisoformat,  # the schemas' Date type allows YYYY-MM-DD only
}
_SEQUENCE = (list, tuple)  # what an element that repeats is given as
_DECLARATION = b"<?xml version='1.0' encoding='UTF-8'?>\n"

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
        "close",
        "empty",
        "kind",
        "name",
        "namespace",
        "open",
        "plan",
        "repeated",
        "required",
        "single",
        "tag",
        "value_of",
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
        self.namespace = self.tag[1:].partition("}")[0] if self.tag.startswith("{") else ""
        self.required = element.min_occurs > 0
        self.repeated = element.max_occurs != 1
        self.kind = kind
        self.single = kind is not None and not self.repeated  # one simple element
        self.whitespace = whitespace
        self.children = children
        self.by_name = {child.name: child for child in children}
        self.by_tag = {child.tag: child for child in children}
        # The value of a text once normalised (_leaf), or of one that needs no normalising
        # (_write_leaf): one conversion per kind, chosen once.
        self.value_of: Callable[[str], Any] = _VALUE_OF[kind or "string"]
        self.open = self.close = self.empty = ""
        self.plan: tuple[tuple[str, _Node, bool, bool, str, str, Callable[[str], Any] | None], ...]
        self.plan = ()

    def spell(self, scope: str | None) -> None:
        """Its tags as written, under the default namespace ``scope`` (None: none declared yet);
        its children's in turn. Names are the schema's NCNames and need no escaping."""
        declared = ""
        if self.namespace != scope:
            declared = f' xmlns="{_escape_attribute(self.namespace)}"'
        self.open = f"<{self.name}{declared}>"
        self.close = f"</{self.name}>"
        self.empty = f"<{self.name}{declared}/>"
        for child in self.children:
            child.spell(self.namespace)
        # What the walk of every answer reads per child, in one tuple (see _write_children).
        self.plan = tuple(
            (
                child.name,
                child,
                child.single,
                child.required,
                child.open,
                child.close,
                None if child.kind == "string" else child.value_of,
            )
            for child in self.children
        )


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
        # An lxml validator collects errors in one log per instance, and a parser keeps its
        # context: one validation, one parse at a time.
        self._lock = threading.Lock()
        # For the documents this schema writes itself (see _encode): no DTD can be in them and
        # every text was escaped, so libxml2's size limits, kept for untrusted XML, are lifted
        # as the tree built element by element had none.
        self._parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=True,
            collect_ids=False,
        )

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
        model.spell(None)
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
        return _DECLARATION + self._encode(evidence).document

    def to_json(self, evidence: Mapping[str, Any]) -> bytes:
        """Validate as :meth:`to_xml` does; UTF-8 JSON ``{"<Root>": {...}}`` of the schema values.

        Keys follow the schema's element order. Dates are ISO strings, decimals are strings
        (exact, never floats), integers are numbers, booleans are JSON booleans.

        The values are those the validated document decodes to (:meth:`from_xml`), taken in the
        pass that writes the document from each element's text, so the document is not walked a
        second time; they are used only once it validated.
        """
        written = self._encode(evidence)
        if written.failed:  # a form we do not map, as :meth:`_decode` would have found
            raise self._invalid(_Fault(f"/{self.root}", "has a value in an unsupported form"))
        try:
            return orjson.dumps({self.root: written.value}, default=_json_value)
        except orjson.JSONEncodeError:  # integers beyond 64 bits: the standard library has them
            text = json.dumps(
                {self.root: written.value},
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

    def _encode(self, evidence: Mapping[str, Any]) -> _Written:
        """Write the document and check it: the dict's shape and types here, then the whole
        document against the XSD by libxml2, on the tree parsed from the very bytes returned.

        The document is written as text rather than built element by element (one lxml call per
        element and per text cost ~2 us each, most of an answer's CPU); libxml2 parses it into
        the same tree in one call. Every text is checked (:data:`_NOT_XML_CHAR`) and escaped
        before it is written, so the text cannot add markup or fail to parse.
        """
        written = _Written(self._model.open)
        try:
            _write_children(self._model, evidence, written, f"/{self.root}", written.value)
        except _Fault as fault:
            raise self._invalid(fault) from fault.__cause__
        parts = written.parts
        if len(parts) == 1:
            parts[0] = self._model.empty
        else:
            parts.append(self._model.close)
        written.document = "".join(parts).encode("utf-8")
        with self._lock:
            try:
                root = etree.fromstring(written.document, self._parser)
            except etree.XMLSyntaxError as error:  # a defect here: never the caller's text
                raise self._invalid(_Fault(f"/{self.root}", "could not be written")) from error
        self._validate(root)
        return written

    def _validate(self, root: etree._Element) -> None:
        with self._lock:
            # The root element's whole document, as assertValid(tree) would, without the tree
            # object and the exception on the way of every valid answer.
            if self._validator.validate(root):
                return
            fault = self._explain(root, self._validator.error_log)
        raise self._invalid(fault)

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


class _Written:
    """A document being written, and what it decodes to, gathered in the same pass."""

    __slots__ = ("document", "failed", "parts", "value")

    def __init__(self, root_open: str) -> None:
        self.parts = [root_open]
        self.value: dict[str, Any] = {}
        self.failed = False  # a value in a form we do not map; reported once it validated
        self.document = b""


def _write_children(
    node: _Node, value: Any, written: _Written, path: str, into: dict[str, Any]
) -> None:
    """Write ``node``'s children from the mapping ``value``; their values go ``into``."""
    if type(value) is not dict and not isinstance(value, Mapping):
        raise _Fault(path, "must be a mapping of its child elements")
    by_name = node.by_name
    if not value.keys() <= by_name.keys():
        key = next(key for key in value if key not in by_name)
        shown = repr(key) if isinstance(key, str) and _KEY_NAME.fullmatch(key) else "a key"
        raise _Fault(path, f"has an unexpected field: {shown} is not an element here")
    parts = written.parts
    for name, child, single, required, opening, closing, value_of in node.plan:
        item = value.get(name)
        if item is None:
            if required:
                raise _Fault(f"{path}/{name}", "is required")
            continue
        if (  # one simple element whose text is written as it is: most of an answer
            single
            and type(item) is str
            and item.isprintable()  # as _as_is, inlined: this runs for every element
            and "&" not in item
            and "<" not in item
            and ">" not in item
            and "  " not in item
            and item[:1] != " "
            and item[-1:] != " "
        ):
            parts += (opening, item, closing)
            if value_of is None:
                into[name] = item
                continue
            try:
                into[name] = value_of(item)
            except (ValueError, ArithmeticError):
                written.failed = True  # reported only if the document validates (see to_json)
                into[name] = None
            continue
        if not child.repeated:
            if isinstance(item, _SEQUENCE):
                raise _Fault(f"{path}/{child.name}", "must be a single value, not a list")
            if child.kind is not None:
                into[child.name] = _write_leaf(child, item, written, path)
            else:
                into[child.name] = _write_element(child, item, written, f"{path}/{child.name}")
        elif not isinstance(item, _SEQUENCE):
            raise _Fault(f"{path}/{child.name}", "must be a list (the element may repeat)")
        elif not item:
            if child.required:
                raise _Fault(f"{path}/{child.name}", "is required")
        elif child.kind is not None:
            into[child.name] = [
                _write_leaf(child, entry, written, path, index)
                for index, entry in enumerate(item, 1)
            ]
        else:
            where = f"{path}/{child.name}"
            into[child.name] = [
                _write_element(child, entry, written, f"{where}[{index}]")
                for index, entry in enumerate(item, 1)
            ]


def _write_element(node: _Node, value: Any, written: _Written, path: str) -> dict[str, Any]:
    """Write the complex element at ``path``; return what it decodes to."""
    parts = written.parts
    start = len(parts)
    parts.append(node.open)
    children: dict[str, Any] = {}
    _write_children(node, value, written, path, children)
    if len(parts) == start + 1:
        parts[start] = node.empty  # as libxml2 writes an element without content
    else:
        parts.append(node.close)
    return children


def _write_leaf(node: _Node, value: Any, written: _Written, parent: str, index: int = 0) -> Any:
    """Write the simple element (the ``index``-th of its name if it repeats) under the element
    at ``parent``; return what it decodes to. Its path is spelled out only for a fault."""
    text = value if type(value) is str else _to_text(node.kind or "string", value)
    if text is None:
        kind = node.kind or "string"
        where = _leaf_path(node, parent, index)
        raise _Fault(where, f"must be {_EXPECTED[kind]}, not {type(value).__name__}")
    if _as_is(text):
        written.parts += (node.open, text, node.close)
        try:
            return node.value_of(text)
        except (ValueError, ArithmeticError):
            written.failed = True  # reported only if the document validates (as _decode would)
            return None
    if _NOT_XML_CHAR.search(text) is not None:  # control characters, lone surrogates
        raise _Fault(_leaf_path(node, parent, index), "contains characters that XML cannot carry")
    written.parts += (node.open, _escape_text(text), node.close)
    try:
        return _leaf(node, text)
    except (ValueError, ArithmeticError):
        written.failed = True
        return None


def _as_is(text: str) -> bool:
    """Whether ``text`` is written as it is and no schema would normalise it: every character
    allowed, none to escape, no XML white space but single inner spaces. Most texts are; these
    few tests cost a tenth of one regular expression's search."""
    return (
        text.isprintable()  # no control character, surrogate or non-character; no tab or line end
        and "&" not in text
        and "<" not in text
        and ">" not in text
        and "  " not in text
        and text[:1] != " "
        and text[-1:] != " "
    )


def _leaf_path(node: _Node, parent: str, index: int) -> str:
    return f"{parent}/{node.name}[{index}]" if index else f"{parent}/{node.name}"


def _escape_text(text: str) -> str:
    """``text`` as libxml2 writes element content: ``&``, ``<``, ``>`` and carriage returns
    (which a parser would turn into line feeds) as references, everything else as it is."""
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def _escape_attribute(text: str) -> str:
    return _escape_text(text).replace('"', "&quot;")


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
    if node.whitespace != "preserve" and (
        _XML_SPACE_CHARACTER.search(text) is not None
        or "  " in text
        or text[:1] == " "
        or text[-1:] == " "
    ):  # one regular expression with anchors and alternatives took ~3 us per text
        text = text.translate(_XML_SPACE)
        if node.whitespace == "collapse":
            text = " ".join(part for part in text.split(" ") if part)
    return node.value_of(text)


def _json_value(value: object) -> str:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
