"""Structured logging: key=value on a terminal, JSON lines otherwise (or as configured).

Secrets never reach a log line: values under secret-sounding keys are masked, and the
configured API key (also in its basic-auth form) and database password are replaced
wherever they appear, tracebacks and third-party messages included.
"""

from __future__ import annotations

import base64
import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog
from sqlalchemy.engine import make_url
from structlog.typing import Processor

from syncer.config import LogFormat, Settings

_SECRET_KEYS = frozenset({"api_key", "password", "authorization", "database_url"})
MASK = "***"
_PLAIN = (str, int, float, bool, type(None), list, tuple, dict)


def secrets_of(settings: Settings) -> list[str]:
    """The secret strings of a configuration: API key, its basic-auth form, DB password."""
    found = []
    if settings.cursor_api_key is not None and (key := settings.cursor_api_key.get_secret_value()):
        found += [key, base64.b64encode(f"{key}:".encode()).decode()]
    if settings.database_url is not None:
        try:
            password = make_url(settings.database_url.get_secret_value()).password
        except Exception:  # noqa: BLE001 - an unparseable URL is reported elsewhere
            password = None
        if password:
            found.append(str(password))
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def scrubber(secrets: Iterable[str]) -> Processor:
    """A processor masking secret keys and every occurrence of the secret values."""
    values = tuple(secrets)

    def scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if key in _SECRET_KEYS:
                event[key] = MASK
                continue
            if not isinstance(value, _PLAIN):
                value = repr(value)  # what the renderers would print, but scrubbed first
            if values and isinstance(value, str):
                for secret in values:
                    value = value.replace(secret, MASK)
            event[key] = value
        return event

    return scrub


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time, so a live progress bar (which
    redirects it) prints log lines above itself instead of being torn by them."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def configure_logging(settings: Settings, *, stream: Any = None) -> None:
    """Route structlog and stdlib logging to stderr in the configured format and level."""
    stream = stream or sys.stderr
    fmt = settings.sync_log_format
    if fmt is LogFormat.AUTO:
        fmt = LogFormat.CONSOLE if stream.isatty() else LogFormat.JSON
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt is LogFormat.JSON
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    level = logging.getLevelName(settings.sync_log_level)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream) if stream is not sys.stderr else _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,  # tracebacks become text, then scrubbed
                scrubber(secrets_of(settings)),
                renderer,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access", "apscheduler", "alembic", "asyncio"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # Its only warnings are "skipped: maximum number of running instances reached", i.e. a
    # pass outlasting the interval, which is normal (a first load); the daemon logs it at DEBUG.
    logging.getLogger("apscheduler.scheduler").setLevel(max(level, logging.ERROR))
