"""exchange: a once-only data exchange layer.

Agencies query each other's registries through gateways with signed requests and consent checks;
every access lands in an audit trail that the citizen can read and anyone can verify.
"""

from __future__ import annotations

__version__ = "0.1.0"
