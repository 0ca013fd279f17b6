"""structlog set-up for every role: human-readable by default, JSON lines for production."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def configure(*, json: bool = False, level: str = "INFO") -> None:
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json:
        processors += [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        processors += [
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def failure(
    logger: Any, event: str, *, error_type: str, message: str, cause: BaseException | None
) -> None:
    """Log a failed request without personal data.

    The cause's message can quote request values (a person's code in a failed SQL statement),
    so only its class is logged; its traceback appears at DEBUG level for an operator who asks.
    """
    logger.warning(
        event, error=error_type, reason=message, cause=type(cause).__name__ if cause else None
    )
    if cause is not None:
        logger.debug(event, error=error_type, exc_info=cause)
