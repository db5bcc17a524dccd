"""The aiohttp application: auth, injected faults, rate limit, and the four endpoints."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from aiohttp import web

from syncer.endpoints import Endpoint
from syncer.fakeapi.config import FakeApiConfig
from syncer.fakeapi.dataset import Dataset
from syncer.fakeapi.drift import shorten
from syncer.fakeapi.faults import Faults
from syncer.fakeapi.pages import json_page
from syncer.fakeapi.query import Query, QueryError, parse_query
from syncer.fakeapi.ratelimit import SlidingWindowLimit
from syncer.fakeapi.render import BlockCache, CsvRenderer
from syncer.fakeapi.stats import Stats
from syncer.fakeapi.timestamps import ceil_ms, from_ms

BOM = "\ufeff".encode()
#: where a redirected CSV download is served: like a pre-signed URL, no auth, no rate limit
DOWNLOADS = "/downloads/"
_REASONS = {
    400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 410: "Gone",
    429: "Too Many Requests",
}  # fmt: skip
#: what the real API answers a valid key of a team that is not on Enterprise
NOT_ENTERPRISE = "You must be a member of an enterprise team to access this resource"
CSV_UNAVAILABLE = (None, "404", "410", "html")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Simulator:
    """The state behind one simulated API: data, knobs, counters, limiter, cache."""

    config: FakeApiConfig
    dataset: Dataset
    faults: Faults
    stats: Stats
    limit: SlidingWindowLimit
    cache: BlockCache | None
    #: pending redirected downloads: token → (endpoint, query), each served once
    downloads: dict[str, tuple[Endpoint, Query]] = field(default_factory=dict)

    @classmethod
    def create(cls, config: FakeApiConfig, dataset: Dataset | None = None) -> Simulator:
        """Build the state from a config (and an existing data set, if given)."""
        dataset = dataset or Dataset(config)
        return cls(
            config=config,
            dataset=dataset,
            faults=Faults(config, dataset),
            stats=Stats(),
            limit=SlidingWindowLimit(config.rate_limit_requests, config.rate_limit_period),
            cache=BlockCache(config.cache_mb) if config.cache_mb > 0 else None,
        )


SIMULATOR = web.AppKey("simulator", Simulator)
_HTML_PAGE = "<!doctype html><html><body><h1>Cursor</h1><p>Page not found</p></body></html>\n"


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, shape: str = "error"
) -> web.Response:
    """The API's JSON error body: `{"error": ..., "message": ...}`, or with `shape="code"`
    the other shape the real API uses, `{"code": "error", "message": ...}`."""
    reason = _REASONS.get(status, "Server Error" if status >= 500 else "Error")
    body = {"code": "error", "message": message} if shape == "code" else \
           {"error": reason, "message": message}  # fmt: skip
    return web.json_response(body, status=status, headers=headers)


def _key_of(request: web.Request) -> str | None:
    """The API key of a basic-auth header (user name, empty password), or None."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    key, colon, password = decoded.partition(":")
    return key if colon and not password else None


def _authorized(request: web.Request, api_key: str) -> bool:
    """Basic auth with the API key as user name and an empty password."""
    return _key_of(request) == api_key


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every response; in order: auth (401), injected faults, rate limit (429)."""
    sim = request.app[SIMULATOR]
    if request.path.startswith(DOWNLOADS):
        return await handler(request)  # not an API request: the token is the credential
    try:
        response = await _checked(request, handler, sim)
    except web.HTTPException as error:
        sim.stats.record(request.path, error.status)
        raise
    sim.stats.record(request.path, response.status)
    return response


async def _checked(request: web.Request, handler: Handler, sim: Simulator) -> web.StreamResponse:
    shape = sim.config.error_shape
    key = _key_of(request)
    if key is not None and key == sim.config.not_enterprise_key:
        return error_response(401, NOT_ENTERPRISE, shape="code")
    if key != sim.config.api_key:
        return error_response(
            401, "Invalid API key: use HTTP basic auth with the key as user name",
            {"WWW-Authenticate": 'Basic realm="Cursor Admin API"'}, shape,
        )  # fmt: skip
    if delay := sim.faults.arrival_delay():
        await asyncio.sleep(delay)
    injected = sim.faults.injection()
    if injected is not None:
        if injected.retry_after is None:
            return error_response(injected.status, "Injected failure", shape=shape)
        retry = {} if sim.config.no_retry_after else {"Retry-After": str(injected.retry_after)}
        return error_response(429, "Rate limit exceeded (injected)", retry, shape)
    wait = sim.limit.check(sim.config.api_key, request.path)
    if wait is not None:
        message = f"Rate limit exceeded: {sim.config.rate_limit_requests} requests per " \
                  f"{sim.config.rate_limit_period:g}s per endpoint; retry in {wait}s"  # fmt: skip
        retry = {} if sim.config.no_retry_after else {"Retry-After": str(wait)}
        return error_response(429, message, retry, shape)
    return await handler(request)


def _query(request: web.Request, sim: Simulator) -> Query:
    config = sim.config
    query = parse_query(
        request.query,
        now=from_ms(sim.dataset.now_ms()),
        day_granularity=config.day_granularity,
        max_page_size=config.max_page_size,
    )
    if config.max_range_days and query.end - query.start > timedelta(days=config.max_range_days):
        raise QueryError(f"Date range cannot exceed {config.max_range_days:g} days")
    return query


async def serve_json(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    """A paginated JSON endpoint."""
    sim = request.app[SIMULATOR]
    try:
        query = _query(request, sim)
    except QueryError as error:
        return error_response(400, str(error), shape=sim.config.error_shape)
    dumps = functools.partial(json.dumps, ensure_ascii=False)
    return web.json_response(json_page(sim.dataset, endpoint, query), dumps=dumps)


async def serve_csv(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    """A streaming CSV endpoint: chunked, written as it is rendered (page/pageSize ignored).

    With the `redirect_csv` knob it answers 302 to a one-time download URL instead, as an
    API that hands large files to storage would (the doc's CSV examples use `curl -L`).
    """
    sim = request.app[SIMULATOR]
    gone = sim.faults.csv_unavailable
    if gone == "html":  # a route the API no longer has, answered by a catch-all page
        return web.Response(text=_HTML_PAGE, content_type="text/html")
    if gone is not None:
        return error_response(int(gone), "Cannot GET " + request.path, shape=sim.config.error_shape)
    try:
        query = _query(request, sim)
    except QueryError as error:
        return error_response(400, str(error), shape=sim.config.error_shape)
    if sim.faults.redirect_csv is not None:
        token = secrets.token_urlsafe(16)
        sim.downloads[token] = (endpoint, query)
        location = request.url.with_path(DOWNLOADS + token).with_query(None)
        if sim.faults.redirect_csv == "other-host":
            location = location.with_host("localhost")  # another origin: no credentials
        raise web.HTTPFound(location)
    return await _stream_csv(request, endpoint, query, sim)


async def serve_download(request: web.Request) -> web.StreamResponse:
    """A redirected CSV download, once per token; it notes whether credentials came along."""
    sim = request.app[SIMULATOR]
    sim.stats.downloads_with_auth += "Authorization" in request.headers
    entry = sim.downloads.pop(request.match_info["token"], None)
    if entry is None:
        return error_response(404, "Unknown or used download link")
    endpoint, query = entry
    return await _stream_csv(request, endpoint, query, sim)


async def _stream_csv(
    request: web.Request, endpoint: Endpoint, query: Query, sim: Simulator
) -> web.StreamResponse:
    faults = sim.faults
    renderer = CsvRenderer(
        sim.dataset, endpoint, faults.csv_format(), sim.cache, query.user, ceil_ms(query.start)
    )
    pieces = shorten(sim.dataset.pieces(endpoint, query.start, query.end), faults.shortfall())
    response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    cut = faults.cut_point()
    sent, buffer, size = 0, [BOM] if faults.bom else [], 0
    for text in renderer.render(pieces):
        data = text.encode()
        buffer.append(data)
        size += len(data)
        if size < faults.chunk_bytes:
            continue
        joined, buffer, size = b"".join(buffer), [], 0
        step = faults.chunk_bytes if faults.chunk_delay else len(joined)
        for at in range(0, len(joined), step):  # a slow stream trickles a big block too
            sent = await _write(request, response, joined[at : at + step], sent, cut, sim)
            if sent < 0:
                return response
            if faults.chunk_delay:
                await asyncio.sleep(faults.chunk_delay)
    if await _write(request, response, b"".join(buffer), sent, cut, sim) >= 0:
        await response.write_eof()
    return response


async def _write(
    request: web.Request,
    response: web.StreamResponse,
    data: bytes,
    sent: int,
    cut: int | None,
    sim: Simulator,
) -> int:
    """Write a chunk; past the cut point write what is left of it and abort (returns -1)."""
    if cut is not None and sent + len(data) >= cut:
        await response.write(data[: max(0, cut - sent)])
        sim.stats.bytes_sent += max(0, cut - sent)
        sim.stats.streams_cut += 1
        if request.transport is not None:
            request.transport.abort()
        return -1
    if data:
        await response.write(data)
    sim.stats.bytes_sent += len(data)
    return sent + len(data)


def build_app(sim: Simulator) -> web.Application:
    """An application serving the four endpoints from existing simulator state."""
    app = web.Application(middlewares=[guard])
    app[SIMULATOR] = sim
    for endpoint in Endpoint:
        app.router.add_get(endpoint.json_path, functools.partial(serve_json, endpoint=endpoint))
        app.router.add_get(endpoint.csv_path, functools.partial(serve_csv, endpoint=endpoint))
    app.router.add_get(DOWNLOADS + "{token}", serve_download)
    return app


def create_app(config: FakeApiConfig, dataset: Dataset | None = None) -> web.Application:
    """The simulator as an aiohttp application (state in `app[SIMULATOR]`)."""
    return build_app(Simulator.create(config, dataset))
