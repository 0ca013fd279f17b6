"""The evidence schemas: one XSD per evidence type (see README.md in this folder).

A package, so that the schemas travel inside the wheel and are found the same way from a
checkout, an editable install or an installed wheel.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
