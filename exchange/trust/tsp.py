"""RFC 3161 wire structures shared by the timestamping authority and its clients.

asn1crypto's own ``TimeStampResp`` requires the token; RFC 3161 makes it optional (a rejection
carries only a status), so both sides use this definition.
"""

from __future__ import annotations

from asn1crypto import cms, core, tsp


class TimeStampResp(core.Sequence):  # type: ignore[misc]
    """RFC 3161's TimeStampResp, whose token is OPTIONAL."""

    _fields = [  # noqa: RUF012 (asn1crypto's declaration style)
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]
