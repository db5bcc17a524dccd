"""Reading what an answer says besides its body: the server's error text, `Retry-After`."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import aiohttp


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delay-seconds or an HTTP-date; None if unusable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = (moment - (now or datetime.now(timezone.utc))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


async def server_message(response: aiohttp.ClientResponse) -> str:
    """The error text the server sent (its JSON `error` and `message`, else the body), short."""
    try:
        text = await response.text(errors="replace")
    except (aiohttp.ClientError, TimeoutError):
        return response.reason or ""
    try:
        body = json.loads(text) if text.lstrip().startswith("{") else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        parts = [
            body[key] for key in ("error", "message", "detail") if isinstance(body.get(key), str)
        ]
        text = ": ".join(dict.fromkeys(parts)) or text
    text = " ".join(text.split()) or response.reason or ""
    return text if len(text) <= 300 else text[:297] + "..."


def describe(exc: BaseException) -> str:
    """A short description of a transport error (never its request headers)."""
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
