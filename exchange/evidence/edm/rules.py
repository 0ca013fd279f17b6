"""The EDM business rules (Schematron, XSLT 2 query binding), compiled once, run per document.

lxml runs XSLT 1 only; the EDM rule files use XPath 2 (``matches``, ``tokenize``, ``//(a|b)``).
Each rule file of one kind (``EDM-REQ-S.sch`` and ``EDM-REQ-C.sch`` for requests) is turned into
one XSLT 3 stylesheet and compiled once by Saxon-HE (``saxonche``): one mode per pattern, one
template per rule (the first rule of a pattern that matches a node is the one that applies), the
rule's ``let``\\ s as variables, an element per failed ``assert`` or fired ``report``, and one walk
over the document that offers each element and attribute to every pattern (docs/oots.md has the
cost per request).

Only the constructs the EDM rule files use are compiled (``ns``, ``pattern``, ``rule``, ``let``,
``assert``, ``report``); anything else, and any expression that could read another document
(``doc``, ``document``, ``collection``, ``unparsed-text``...), refuses to load: the rules come
from the operator's folder and never reach the network. Documents are handed to Saxon as lxml
serialised them after the safe parse (no DTD, no entities).

What is *not* done: the rules' ``role="warning"`` findings are ignored; a rule whose expression
fails under XPath 2's typing (R-EDM-ERR-C022 compares a slot's text with a number) is reported
as broken, never as failed.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from exchange.errors import Error
from exchange.evidence.edm.schemaset import EdmProfileError, InvalidEdm
from exchange.evidence.xml import parse_untrusted

SCH = "http://purl.oclc.org/dsdl/schematron"
XSL = "http://www.w3.org/1999/XSL/Transform"
KINDS = ("REQ", "RESP", "ERR")
INVALID_REQUEST = "EDM:ERR:0003"
ALLOWED_PROTOCOLS = "http://saxon.sf.net/feature/allowedProtocols"
_SUPPORTED = {f"{{{SCH}}}{name}" for name in ("let", "assert", "report")}
# XPath functions that read something other than the document checked.
_READS = re.compile(
    r"\b(doc|document|doc-available|collection|uri-collection|unparsed-text|unparsed-text-lines|"
    r"unparsed-text-available|json-doc|environment-variable|available-environment-variables|"
    r"load-xquery-module|transform)\s*\("
)


_NAME_TEST = re.compile(r"@?[A-Za-z_][\w.-]*(:[A-Za-z_][\w.-]*)?")
_TEXT_NODE = re.compile(r"(text|comment|processing-instruction)\(\)\s*$")


@dataclass(frozen=True, slots=True)
class Failure:
    rule: str  # the rule's id, e.g. R-EDM-REQ-C005
    role: str  # error, fatal, warning, or broken-rule (cannot be evaluated)
    where: str  # the node's path
    text: str  # the rule's own words, without the document's values


class BrokenRule(InvalidEdm):
    """A document that breaks an EDM business rule (detail: the rule's id)."""


def _checked(expression: str, where: Path) -> str:
    if _READS.search(expression):
        raise EdmProfileError(f"{where.name}: a rule reads another document ({expression[:60]})")
    return expression


def _context(rule: etree._Element, where: Path) -> str:
    context = _checked(rule.get("context") or "", where)
    if not context or _TEXT_NODE.search(context):  # the walk offers elements and attributes
        raise EdmProfileError(f"{where.name}: a rule's context is not an element or attribute")
    return context


def _words(check: etree._Element) -> str:
    """A rule's message without the ``value-of``\\ s that would quote the document."""
    parts = [check.text or ""] + [child.tail or "" for child in check]
    return " ".join(" ".join(parts).split())


def compile_rules(paths: list[Path]) -> tuple[str, dict[str, str]]:
    """One XSLT 3 stylesheet for the rule files ``paths``, and each rule's words by id."""
    schemas = []
    for path in paths:
        try:
            schemas.append((path, parse_untrusted(path.read_bytes(), max_bytes=4 * 1024 * 1024)))
        except (OSError, Error) as error:
            raise EdmProfileError(f"{path} cannot be read as Schematron") from error
    namespaces: dict[str, str] = {"xsl": XSL}
    for path, schema in schemas:
        for ns in schema.iter(f"{{{SCH}}}ns"):
            prefix, uri = ns.get("prefix") or "", ns.get("uri") or ""
            if not prefix or not uri or namespaces.setdefault(prefix, uri) != uri:
                raise EdmProfileError(f"{path.name}: the namespace prefix {prefix} is unusable")
    sheet = etree.Element(f"{{{XSL}}}stylesheet", nsmap=namespaces, version="3.0")
    start = etree.SubElement(sheet, f"{{{XSL}}}template", match="/")
    found = etree.SubElement(start, "failures")
    # One walk over the elements and attributes (no rule's context is a text node), each node
    # offered only to the patterns whose contexts end in its name (or in a wildcard): a tenth
    # of the cost of offering every node to every pattern.
    etree.SubElement(found, f"{{{XSL}}}apply-templates", select="//(*|@*)", mode="walk")
    by_name: dict[str, list[str]] = {}  # a context's last name test -> the patterns' modes
    anywhere: list[str] = []  # patterns with a context that may end anywhere
    words: dict[str, str] = {}
    index = 0
    for path, schema in schemas:
        for pattern in schema.iter(f"{{{SCH}}}pattern"):
            mode = f"p{index}"
            index += 1
            rules = pattern.findall(f"{{{SCH}}}rule")
            contexts = [_context(rule, path) for rule in rules]
            if not rules:
                raise EdmProfileError(f"{path.name}: a pattern without rules")
            names = [_last_names(context) for context in contexts]
            if any(found_names is None for found_names in names):
                anywhere.append(mode)
            else:
                for name in sorted({n for found_names in names for n in found_names or ()}):
                    by_name.setdefault(name, []).append(mode)
            for order, (rule, context) in enumerate(zip(rules, contexts, strict=True)):
                template = etree.SubElement(
                    sheet,
                    f"{{{XSL}}}template",
                    match=context,
                    mode=mode,
                    priority=str(1000 - order),
                )
                _rule(template, rule, path, words)
            etree.SubElement(
                sheet, f"{{{XSL}}}template", match="node()|@*", mode=mode, priority="-10"
            )
    for name, modes in [*by_name.items(), ("node()|@*", [])]:
        walk = etree.SubElement(
            sheet,
            f"{{{XSL}}}template",
            match=name,
            mode="walk",
            priority="-1" if name == "node()|@*" else "1",
        )
        for mode in [*modes, *anywhere]:
            etree.SubElement(walk, f"{{{XSL}}}apply-templates", select=".", mode=mode)
    return etree.tostring(sheet, encoding="unicode"), words


def _split(expression: str, separator: str) -> list[str]:
    """``expression`` split at ``separator`` outside brackets, parentheses and quotes."""
    parts, depth, quote, current = [], 0, "", ""
    for char in expression:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    return [*parts, current]


def _last_names(context: str) -> set[str] | None:
    """The name tests a context's nodes end with (``sdg:Identifier``, ``@schemeID``), or None
    where it may end in any node (a wildcard, a function, an unusual step)."""
    names = set()
    for alternative in _split(context, "|"):
        last = _split(alternative.strip(), "/")[-1]
        name = _split(last, "[")[0].strip() if "[" in last else last.strip()
        if _NAME_TEST.fullmatch(name) is None:
            return None
        names.add(name)
    return names


def _rule(
    template: etree._Element, rule: etree._Element, path: Path, words: dict[str, str]
) -> None:
    for check in rule:
        if not isinstance(check.tag, str):
            continue  # comments
        if check.tag not in _SUPPORTED:
            raise EdmProfileError(f"{path.name}: {check.tag} is not supported here")
        if check.tag == f"{{{SCH}}}let":
            etree.SubElement(
                template,
                f"{{{XSL}}}variable",
                name=check.get("name") or "",
                select=_checked(check.get("value") or "", path),
            )
            continue
        test = _checked(check.get("test") or "", path)
        if check.tag == f"{{{SCH}}}assert":
            test = f"not({test})"
        name = check.get("id") or _words(check)[:60]
        words.setdefault(name, _words(check))
        attempt = etree.SubElement(template, f"{{{XSL}}}try")
        fired = etree.SubElement(attempt, f"{{{XSL}}}if", test=test)
        failed = etree.SubElement(fired, "failed", id=name, role=check.get("role") or "error")
        etree.SubElement(failed, f"{{{XSL}}}value-of", select="path()")
        caught = etree.SubElement(attempt, f"{{{XSL}}}catch")
        etree.SubElement(caught, "failed", id=name, role="broken-rule")


class BusinessRules:
    """The EDM business rules of one kind, compiled once; :meth:`check` is thread-safe."""

    def __init__(self, kind: str, folder: Path, *, waived: frozenset[str] = frozenset()) -> None:
        if kind not in KINDS:
            raise ValueError(f"no EDM business rules of kind {kind}")
        try:
            import saxonche
        except ImportError as error:  # a dependency of the package; a broken install says so
            raise EdmProfileError(
                "the EDM business rules need Saxon-HE (the saxonche package)"
            ) from error
        paths = [Path(folder) / "sch" / f"EDM-{kind}-{part}.sch" for part in ("S", "C")]
        missing = [path for path in paths if not path.is_file()]
        if missing:
            raise EdmProfileError(
                f"the EDM folder {folder} lacks sch/{missing[0].name}: install the OOTS EDM v1.0 "
                "business rules there (sch/ as published, see docs/oots.md)"
            )
        stylesheet, self.words = compile_rules(paths)
        # Waived rules of other kinds are for the other documents; this kind's must exist.
        own = {rule for rule in waived if rule.startswith(f"R-EDM-{kind}-")}
        unknown = sorted(own - set(self.words))
        if unknown:
            raise EdmProfileError(f"there is no EDM business rule {unknown[0]} to waive")
        self.kind = kind
        self.waived = waived
        self._processor = saxonche.PySaxonProcessor(license=False)
        # No document, text or collection is read by URI, whatever a rule says.
        self._processor.set_configuration_property(ALLOWED_PROTOCOLS, "")
        compiler = self._processor.new_xslt30_processor()
        try:
            self._sheet = compiler.compile_stylesheet(stylesheet_text=stylesheet)
        except saxonche.PySaxonApiError as error:
            raise EdmProfileError(f"the EDM {kind} rules do not compile: {error}") from error
        self._lock = threading.Lock()  # one Saxon processor, one document at a time

    def failures(self, root: etree._Element) -> list[Failure]:
        """Every rule of role ``error`` or ``fatal`` that ``root`` breaks and is not waived."""
        document = etree.tostring(root, encoding="unicode")
        with self._lock:
            node = self._processor.parse_xml(xml_text=document)
            report = self._sheet.transform_to_string(xdm_node=node)
        found = []
        for item in etree.fromstring(report.encode()):
            rule = item.get("id") or ""
            if item.get("role") in ("error", "fatal") and rule not in self.waived:
                role, where = item.get("role") or "", item.text or ""
                found.append(Failure(rule, role, where, self.words[rule]))
        return found

    def check(self, root: etree._Element, *, what: str) -> None:
        """Raise :class:`BrokenRule` naming the first rule ``root`` breaks."""
        failed = self.failures(root)
        if failed:
            first = failed[0]
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            # The code an EDM party gives an invalid request (EDM:ERR:0003), for consumer
            # systems that speak EDM; the refusal itself stays an X-Road error (Client.InvalidEdm).
            raise BrokenRule(
                f"{what} breaks the EDM business rule {first.rule}{more} "
                f"({INVALID_REQUEST}): {first.text}",
                detail=first.rule,
            )
