"""The EU Once-Only Technical System's Evidence Exchange Data Model (OOTS EDM v1.0).

- :mod:`.schemaset`: the official schema set, loaded once, offline, from an operator's folder;
- :mod:`.query`: an EDM ``QueryRequest`` read into what a provider decides on;
- :mod:`.answers`: ``QueryResponse`` documents, evidence and errors (``EDM:ERR:0001``..``0008``);
- :mod:`.directory`: the Data Service Directory's answers and errors (``DSD:ERR:0001``..``0004``).

The schemas, rules and code lists are the European Commission's and OASIS's files: this package
ships none of them (see docs/oots.md for where operators get them).
"""

from __future__ import annotations

NS = {
    "query": "urn:oasis:names:tc:ebxml-regrep:xsd:query:4.0",
    "rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:4.0",
    "rs": "urn:oasis:names:tc:ebxml-regrep:xsd:rs:4.0",
    "sdg": "http://data.europa.eu/p4s",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "xlink": "http://www.w3.org/1999/xlink",
}
SPECIFICATION = "oots-edm:v1.0"
MEDIA_TYPE = "application/x-ebrs+xml"  # the ebRS binding's media type for RegRep messages
