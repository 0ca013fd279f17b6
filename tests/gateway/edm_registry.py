"""Registry functions for the EDM tests' python connectors: one that answers only once the test
lets it (a registry slower than the gateway waits), and one whose answer breaks the schema."""

from __future__ import annotations

import threading
from typing import Any

RELEASE = threading.Event()


def held(person: str) -> dict[str, Any] | None:
    RELEASE.wait(30)  # the test sets it once the gateway has given up
    return None


def broken(person: str) -> dict[str, Any]:
    # The person asked for (the sample register's Mari Tamm), without the certificate's other
    # required fields.
    return {
        "personCode": person,
        "givenName": "Mari",
        "familyName": "Tamm",
        "dateOfBirth": "1980-01-08",
    }
