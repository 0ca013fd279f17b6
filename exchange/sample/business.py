"""A sample business register: companies and their board members, in SQLite.

Board members are rows of their own table; the query folds them into one JSON column
(``json_group_array``) that the SQL connector decodes (``json_columns``), as it would for an
agency's existing schema.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from exchange.db.engine import private_file

COMPANIES = [
    # code, name, legal form, status, registered, street, building, postal code, town, capital
    (
        "10137319",
        "Tamm & Kask OÜ",
        "private-limited-company",
        "active",
        "2009-03-02",
        "Pikk tn",
        "12",
        "10123",
        "Tallinn",
        "2500.00",
    ),
    (
        "12345678",
        "Mets Forestry AS",
        "public-limited-company",
        "active",
        "2015-10-19",
        "Rüütli tn",
        "40",
        "80010",
        "Pärnu",
        "25000.00",
    ),
    (
        "80012345",
        "Tartu Readers MTÜ",
        "non-profit-association",
        "active",
        "2019-01-11",
        "Rüütli tn",
        "3",
        "51007",
        "Tartu",
        None,
    ),
]

BOARD = [
    # company, person code, given, family, role
    ("10137319", "EE38001085718", "Mari", "Tamm", "chair"),
    ("10137319", "EE39107156021", "Jaan", "Kask", "member"),
    ("12345678", "EE50203110012", "Sofia", "Mets", "managing-director"),
    ("80012345", "EE39107156021", "Jaan", "Kask", "chair"),
]

REGISTRATION_QUERY = (
    "SELECT c.registry_code, c.name, c.legal_form, c.status, c.registered_on, c.street,"
    " c.building, c.postal_code, c.town, 'EE' AS country, c.share_capital,"
    " CASE WHEN c.share_capital IS NULL THEN NULL ELSE 'EUR' END AS currency,"
    " json_object('boardMember', json_group_array(json_object("
    "   'personCode', b.person_code, 'givenName', b.given_name,"
    "   'familyName', b.family_name, 'role', b.role))) AS board"
    " FROM companies c JOIN board_members b ON b.registry_code = c.registry_code"
    " WHERE c.registry_code = :code GROUP BY c.registry_code"
)
REGISTRATION_FIELDS = {
    "registryCode": "registry_code",
    "name": "name",
    "legalForm": "legal_form",
    "status": "status",
    "registeredOn": "registered_on",
    "address.street": "street",
    "address.building": "building",
    "address.postalCode": "postal_code",
    "address.municipality": "town",
    "address.country": "country",
    "boardMembers": "board",
    "shareCapital.amount": "share_capital",
    "shareCapital.currency": "currency",
}


def create(path: Path) -> Path:
    """Create (or refill) the register at ``path``: private, as it holds people's records."""
    private_file(path)
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            DROP TABLE IF EXISTS board_members;
            DROP TABLE IF EXISTS companies;
            CREATE TABLE companies (
                registry_code TEXT PRIMARY KEY, name TEXT NOT NULL, legal_form TEXT NOT NULL,
                status TEXT NOT NULL, registered_on TEXT NOT NULL, street TEXT NOT NULL,
                building TEXT, postal_code TEXT NOT NULL, town TEXT NOT NULL,
                share_capital TEXT
            );
            CREATE TABLE board_members (
                registry_code TEXT NOT NULL REFERENCES companies, person_code TEXT,
                given_name TEXT NOT NULL, family_name TEXT NOT NULL, role TEXT NOT NULL
            );
            """
        )
        db.executemany("INSERT INTO companies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", COMPANIES)
        db.executemany("INSERT INTO board_members VALUES (?, ?, ?, ?, ?)", BOARD)
    return path
