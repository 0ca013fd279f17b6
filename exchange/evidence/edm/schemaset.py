"""The EDM schema set: loaded once from the operator's folder, never from the network.

The folder holds the official EDM v1.0 material as published (``xsd/regrep4``, ``xsd/xml``,
``xsd/sdg``; ``sch/`` and the rest are not read here). The SDG schemas import the OASIS RegRep 4
schemas by their ``http://docs.oasis-open.org/...`` URLs; a resolver maps exactly those URLs to
``xsd/regrep4/`` and refuses every other location that is not a file inside ``xsd/``, so
loading never touches the network. The W3C schemas (xml, xlink, WS-Addressing) are imported
first, because ``rim.xsd`` imports them without a location.

libxml2 (lxml) validates: the SDG schemas carry ``vc:minVersion="1.1"`` although they use no
XSD 1.1 construct, and xmlschema's XSD 1.0 validator honours that marker by dropping the SDG
schema silently, after which broken ``sdg:`` content would pass.

What is *not* checked here: the EDM business rules (Schematron, XSLT 2); see docs/oots.md.
"""

from __future__ import annotations

import threading
from pathlib import Path

from lxml import etree

from exchange.errors import InvalidRequest
from exchange.evidence.xml import XML_MAX_BYTES, parse_untrusted

OASIS = "http://docs.oasis-open.org/regrep/regrep-core/v4.0/os/xsd/"
WHERE_TO_GET = (
    "install the OOTS EDM v1.0 schema set there (xsd/regrep4, xsd/xml, xsd/sdg as published "
    "in the European Commission's OOTS technical design documents, OOTS-EDM folder; see "
    "docs/oots.md)"
)
_NEEDED = (
    "xsd/xml/xml.xsd",
    "xsd/xml/xlink.xsd",
    "xsd/xml/ws-addr.xsd",
    "xsd/regrep4/rim.xsd",
    "xsd/regrep4/rs.xsd",
    "xsd/regrep4/query.xsd",
    "xsd/sdg/oots_driver_v1.0.0.xsd",
)


class EdmProfileError(ValueError):
    """The EDM schema set cannot be used; raised at start-up only, never on the request path."""


class InvalidEdm(InvalidRequest):
    """An EDM document that does not satisfy the EDM schemas (detail: where)."""

    code = "InvalidEdm"


class _Offline(etree.Resolver):  # type: ignore[misc]  # lxml-stubs leave Resolver untyped
    """OASIS RegRep URLs -> the folder's copies; files inside the folder; nothing else."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.refused: list[str] = []

    def resolve(self, url: str | None, pubid: str | None, context: object) -> object:
        if url and url.startswith(OASIS):
            name = url[len(OASIS) :]
            local = (self.folder / "regrep4" / name).resolve()
            if "/" not in name and local.is_file():
                return self.resolve_filename(str(local), context)
        elif url and "://" not in url.removeprefix("file://"):
            local = Path(url.removeprefix("file://")).resolve()
            if local.is_relative_to(self.folder) and local.is_file():
                return self.resolve_filename(str(local), context)
        self.refused.append(str(url))
        # An empty document in its place: the schema then fails to compile, and we say why.
        return self.resolve_string("<refused/>", context)


def _driver(folder: Path) -> bytes:
    imports = (
        ("http://www.w3.org/XML/1998/namespace", folder / "xml" / "xml.xsd"),
        ("http://www.w3.org/1999/xlink", folder / "xml" / "xlink.xsd"),
        ("http://www.w3.org/2005/08/addressing", folder / "xml" / "ws-addr.xsd"),
        ("http://data.europa.eu/p4s", folder / "sdg" / "oots_driver_v1.0.0.xsd"),
        ("urn:oasis:names:tc:ebxml-regrep:xsd:query:4.0", f"{OASIS}query.xsd"),
        ("urn:oasis:names:tc:ebxml-regrep:xsd:rs:4.0", f"{OASIS}rs.xsd"),
    )
    root = etree.Element(
        "{http://www.w3.org/2001/XMLSchema}schema",
        targetNamespace="urn:exchange:edm:driver",
        nsmap={"xs": "http://www.w3.org/2001/XMLSchema"},
    )
    for namespace, location in imports:
        etree.SubElement(
            root,
            "{http://www.w3.org/2001/XMLSchema}import",
            namespace=namespace,
            schemaLocation=str(location),
        )
    result: bytes = etree.tostring(root)
    return result


class EdmSchemas:
    """The compiled EDM schema set; :meth:`validate` is safe to call from several threads."""

    def __init__(self, validator: etree.XMLSchema, *, max_bytes: int) -> None:
        self._validator = validator
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # one lxml validator keeps one error log

    @classmethod
    def load(cls, folder: Path, *, max_bytes: int = XML_MAX_BYTES) -> EdmSchemas:
        """Compile the schema set of ``folder`` (the EDM material's top folder) once."""
        top = Path(folder).resolve()
        if not top.is_dir():
            raise EdmProfileError(f"the EDM folder {folder} does not exist: {WHERE_TO_GET}")
        missing = [name for name in _NEEDED if not (top / name).is_file()]
        if missing:
            raise EdmProfileError(f"the EDM folder {folder} lacks {missing[0]}: {WHERE_TO_GET}")
        xsd = top / "xsd"
        resolver = _Offline(xsd)
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
        )
        parser.resolvers.add(resolver)
        document = etree.fromstring(_driver(xsd), parser, base_url=str(xsd / "driver.xsd"))
        try:
            validator = etree.XMLSchema(document)
        except etree.XMLSchemaParseError as error:
            if resolver.refused:
                raise EdmProfileError(
                    f"the EDM schemas in {folder} refer to {resolver.refused[0]}, which is "
                    "not loaded (only the OASIS RegRep URLs and files of the folder are)"
                ) from error
            raise EdmProfileError(f"the EDM schemas in {folder} do not compile: {error}") from error
        return cls(validator, max_bytes=max_bytes)

    def parse(self, data: bytes, *, what: str) -> etree._Element:
        """Parse untrusted ``data`` (no DTD, entities or network), then validate it."""
        root = parse_untrusted(data, max_bytes=self.max_bytes)
        self.validate(root, what=what)
        return root

    def validate(self, root: etree._Element, *, what: str) -> None:
        """Raise :class:`InvalidEdm` naming the first offending line, never quoting values."""
        with self._lock:
            if self._validator.validate(root.getroottree()):
                return
            entry = self._validator.error_log.filter_from_errors()[0]
        raise InvalidEdm(
            f"{what} does not satisfy the EDM schemas (line {entry.line}: {entry.type_name})",
            detail=entry.type_name,
        )
