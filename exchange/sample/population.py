"""A sample population register: births and current residences of made-up people, in SQLite.

Column names are the register's own; the gateway's SQL connector maps them to the evidence
schema's fields (see :data:`BIRTH_FIELDS`), as it would for a real agency's database.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from exchange.db.engine import private_file

PEOPLE = [
    # code, given, family, born, municipality, sex, mother, father, registration, registered
    (
        "EE38001085718",
        "Mari",
        "Tamm",
        "1980-01-08",
        "Tallinn",
        "F",
        ("Anne", "Tamm"),
        ("Jaan", "Tamm"),
        "B-1980-000123",
        "1980-01-15",
    ),
    (
        "EE39107156021",
        "Jaan",
        "Kask",
        "1991-07-15",
        "Tartu",
        "M",
        ("Liis", "Kask"),
        None,
        "B-1991-004417",
        "1991-07-22",
    ),
    (
        "EE50203110012",
        "Sofia",
        "Mets",
        "2002-03-11",
        "Pärnu",
        "F",
        ("Kadri", "Mets"),
        ("Peeter", "Mets"),
        "B-2002-001177",
        "2002-03-18",
    ),
    (
        "EE46512240229",
        "Leena",
        "Saar",
        "1965-12-24",
        "Narva",
        "F",
        None,
        None,
        "B-1965-009031",
        "1966-01-04",
    ),
]

RESIDENCES = [
    ("EE38001085718", "Mari", "Tamm", "Pikk tn", "12", "4", "10123", "Tallinn", "2015-06-01"),
    ("EE39107156021", "Jaan", "Kask", "Rüütli tn", "3", None, "51007", "Tartu", "2019-09-01"),
    ("EE50203110012", "Sofia", "Mets", "Rüütli tn", "40", "2", "80010", "Pärnu", "2021-02-15"),
]

BIRTH_QUERY = (
    "SELECT person_code, given_name, family_name, born_on, birth_municipality,"
    " 'EE' AS birth_country, sex, mother_given_name, mother_family_name,"
    " father_given_name, father_family_name, registration_number, registered_on,"
    " 'Population Register of Estonia' AS authority"
    " FROM births WHERE person_code = :person"
)
BIRTH_FIELDS = {
    "personCode": "person_code",
    "givenName": "given_name",
    "familyName": "family_name",
    "dateOfBirth": "born_on",
    "placeOfBirth.municipality": "birth_municipality",
    "placeOfBirth.country": "birth_country",
    "sex": "sex",
    "mother.givenName": "mother_given_name",
    "mother.familyName": "mother_family_name",
    "father.givenName": "father_given_name",
    "father.familyName": "father_family_name",
    "registrationNumber": "registration_number",
    "registeredOn": "registered_on",
    "issuingAuthority": "authority",
}
RESIDENCE_QUERY = (
    "SELECT person_code, given_name, family_name, street, building, apartment, postal_code,"
    " municipality, 'EE' AS country, resident_since FROM residences WHERE person_code = :person"
)
RESIDENCE_FIELDS = {
    "personCode": "person_code",
    "givenName": "given_name",
    "familyName": "family_name",
    "address.street": "street",
    "address.building": "building",
    "address.apartment": "apartment",
    "address.postalCode": "postal_code",
    "address.municipality": "municipality",
    "address.country": "country",
    "residentSince": "resident_since",
}


def create(path: Path) -> Path:
    """Create (or refill) the register at ``path``: private, as it holds people's records."""
    private_file(path)
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            DROP TABLE IF EXISTS births;
            DROP TABLE IF EXISTS residences;
            CREATE TABLE births (
                person_code TEXT PRIMARY KEY, given_name TEXT NOT NULL, family_name TEXT NOT NULL,
                born_on TEXT NOT NULL, birth_municipality TEXT NOT NULL, sex TEXT NOT NULL,
                mother_given_name TEXT, mother_family_name TEXT,
                father_given_name TEXT, father_family_name TEXT,
                registration_number TEXT NOT NULL, registered_on TEXT NOT NULL
            );
            CREATE TABLE residences (
                person_code TEXT PRIMARY KEY, given_name TEXT NOT NULL, family_name TEXT NOT NULL,
                street TEXT NOT NULL, building TEXT, apartment TEXT, postal_code TEXT NOT NULL,
                municipality TEXT NOT NULL, resident_since TEXT NOT NULL
            );
            """
        )
        for code, given, family, born, place, sex, mother, father, number, registered in PEOPLE:
            db.execute(
                "INSERT INTO births VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    code,
                    given,
                    family,
                    born,
                    place,
                    sex,
                    *(mother or (None, None)),
                    *(father or (None, None)),
                    number,
                    registered,
                ),
            )
        db.executemany("INSERT INTO residences VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", RESIDENCES)
    return path
