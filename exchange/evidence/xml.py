"""Parsing of untrusted XML.

:func:`parse_untrusted` is the only way XML from outside enters this project. It checks, in order:

1. the size, against a cap the caller passes (:data:`XML_MAX_BYTES` is the usual one);
2. that no ``<!DOCTYPE`` or ``<!ENTITY`` appears in the raw bytes (in UTF-8 and UTF-16 forms), so
   a DTD is refused before any parser sees it; this also refuses the text ``<!DOCTYPE`` inside a
   comment or CDATA section, which an evidence document has no reason to contain;
3. well-formedness, with an lxml parser that never resolves entities, never loads a DTD, never
   touches the network and keeps libxml2's limits on depth, text size and entity amplification;
4. that the parsed document has no document type declaration at all (internal or external).

Any failure raises :class:`~exchange.errors.InvalidXml` with a message that states the rule that
was broken and never quotes the document. What is *not* checked here: namespaces, the root element,
schema validity (see :mod:`exchange.evidence.schemas`); comments, processing instructions and
``xsi:schemaLocation`` hints are kept in the tree but nothing ever acts on them.
"""

from __future__ import annotations

from lxml import etree

from exchange.errors import InvalidXml

XML_MAX_BYTES = 1024 * 1024
"""The usual cap on the size of one untrusted XML document (1 MiB)."""

_DTD_MARKERS = tuple(
    marker.encode(encoding)
    for marker in ("<!DOCTYPE", "<!ENTITY")
    for encoding in ("utf-8", "utf-16-le", "utf-16-be")
)


def _parser() -> etree.XMLParser:
    # A parser is cheap to make and a fresh one per document shares nothing between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
        collect_ids=False,
    )


def parse_untrusted(data: bytes, *, max_bytes: int) -> etree._Element:
    """Parse ``data`` into its root element, or raise :class:`InvalidXml`.

    Refuses documents over ``max_bytes``, documents with any DTD or entity declaration, and
    documents that are not well-formed. Never resolves entities or fetches anything.
    """
    if not isinstance(data, bytes):
        raise TypeError(f"XML must be given as bytes, not {type(data).__name__}")
    if len(data) > max_bytes:
        raise InvalidXml(
            f"XML document is {len(data)} bytes; at most {max_bytes} are allowed", detail="size"
        )
    if any(marker in data for marker in _DTD_MARKERS):
        raise _dtd_refused()
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as error:
        line, column = error.position
        raise InvalidXml(
            f"XML document is not well-formed (line {line}, column {column})",
            detail="well-formedness",
        ) from error
    docinfo = root.getroottree().docinfo
    if (
        docinfo.doctype
        or docinfo.internalDTD is not None
        or docinfo.externalDTD is not None
        or docinfo.system_url
        or docinfo.public_id
    ):
        raise _dtd_refused()
    return root


def _dtd_refused() -> InvalidXml:
    return InvalidXml(
        "XML document has a document type declaration; DTDs and entities are not accepted",
        detail="doctype",
    )
