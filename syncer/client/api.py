"""`CursorClient`: one aiohttp session, responses mapped to typed errors, retries, streaming."""

from __future__ import annotations

import asyncio
import base64
import random
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self, TypeVar

import aiohttp
import structlog

from syncer import __version__
from syncer.client.observer import ApiObserver, NullObserver
from syncer.client.ratelimit import RateLimiters, RequestBudget
from syncer.client.responses import describe, parse_retry_after, server_message
from syncer.config import ApiFormat, Settings
from syncer.endpoints import Endpoint
from syncer.errors import (
    ApiError,
    ApiTimeout,
    ApiUnreachable,
    AuthError,
    BadRequest,
    CsvUnavailable,
    DataError,
    RateLimited,
    RetriableApiError,
    ServerError,
    StreamInterrupted,
)
from syncer.parse.blocks import RawBlock, cut_blocks
from syncer.parse.pages import Page, read_page
from syncer.parse.rows import Rejected, Row
from syncer.timespec import isoformat_z

log = structlog.get_logger(__name__)

CHUNK_SIZE = 256 * 1024
USER_AGENT = f"syncer/{__version__} aiohttp/{aiohttp.__version__}"
AUTH_HINT = "check CURSOR_API_KEY and that the team is on an enterprise plan"
#: Statuses of a CSV route that mean "not served here" (the JSON pages may still be).
CSV_GONE = frozenset({404, 405, 406, 410, 501})

T = TypeVar("T")
Read = Callable[[aiohttp.ClientResponse], AsyncGenerator[T, None]]


class CursorClient:
    """The Cursor AI-code-tracking API: `async with CursorClient(settings) as api: ...`.

    Every attempt first takes a slot from the request budget (per endpoint path). Retriable
    failures (connection errors and timeouts, 5xx, 429, a body cut short) are retried up to
    `cursor_max_retries` times with exponential backoff and full jitter; a 429 instead holds
    the whole budget of that path back for its `Retry-After`. Auth and other 4xx errors are
    raised at once.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        budget: RequestBudget | None = None,
        observer: ApiObserver | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
    ) -> None:
        key = settings.require_api_key()
        credentials = base64.b64encode(f"{key}:".encode()).decode()  # user = key, no password
        self._headers = {
            "Authorization": f"Basic {credentials}",
            "User-Agent": USER_AGENT,
            # answers carry `Cache-Control: public, max-age=900`: no cache may answer for them
            "Cache-Control": "no-cache",
        }
        self._secrets = (key, credentials)
        self.base_url = settings.cursor_api_base_url
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=settings.cursor_connect_timeout.total_seconds(),
            sock_read=settings.cursor_read_timeout.total_seconds(),
        )
        self.max_retries = settings.cursor_max_retries
        requests, period = settings.rate_limit
        #: a 429 without Retry-After waits at least this long (one slot of the rate window)
        self._slot = period / requests
        #: per endpoint, the longest window the API accepted after refusing a longer one
        self.window_caps: dict[Endpoint, timedelta] = {}
        #: per endpoint, the JSON page size after the API refused a larger one
        self.page_sizes: dict[Endpoint, int] = {}
        #: per endpoint, the form it is read through (`auto` starts on CSV, may switch to JSON)
        self.formats: dict[Endpoint, ApiFormat] = {
            endpoint: ApiFormat.JSON
            if settings.cursor_api_format is ApiFormat.JSON
            else ApiFormat.CSV
            for endpoint in Endpoint
        }
        self._budget = budget if budget is not None else RateLimiters.from_settings(settings)
        self._observer = observer if observer is not None else NullObserver()
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._session: aiohttp.ClientSession | None = None
        self._sent: Counter[str] = Counter()  # requests sent, by path

    def __repr__(self) -> str:
        return f"CursorClient(base_url={self.base_url!r}, max_retries={self.max_retries})"

    def requests(self, endpoint: Endpoint) -> int:
        """Requests sent so far for an endpoint (CSV and JSON, retries included)."""
        return self._sent[endpoint.csv_path] + self._sent[endpoint.json_path]

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def stream_blocks(
        self,
        endpoint: Endpoint,
        start: datetime,
        end: datetime | None,
        *,
        block_bytes: int = 4 << 20,
        user: str | None = None,
    ) -> AsyncGenerator[RawBlock, None]:
        """The CSV endpoint's response for [start, end] as blocks of complete records (bytes).

        `end=None` sends `endDate=now`: the API's own now, whatever our clock says. A CSV
        route that is not served (see `CSV_GONE`), or answers with a body that is not CSV,
        raises CsvUnavailable.

        Each block is at least `block_bytes` long (the last may be shorter) and carries the
        response's header; `syncer.parse.parser.parse_block` reads one as typed rows. A retry
        restarts the download from its beginning, so after a failure mid-stream records
        already yielded come again: consumers must be idempotent (the engine's upserts are;
        the last occurrence of a key wins). A partial record is never yielded: a stream cut
        mid-record is retried, then raised as StreamInterrupted. Close the iterator (e.g.
        with `contextlib.aclosing`) when stopping early.
        """
        path = endpoint.csv_path

        def read(response: aiohttp.ClientResponse) -> AsyncGenerator[RawBlock, None]:
            if "csv" not in response.content_type:
                raise CsvUnavailable(
                    f"{path}: the answer is {response.content_type or 'untyped'}, not CSV",
                    status=response.status,
                )
            return cut_blocks(response.content.iter_chunked(CHUNK_SIZE), block_bytes)

        async with aclosing(self._retrying(path, _params(start, end, user), read)) as blocks:
            async for block in blocks:
                yield block

    async def fetch_page(
        self,
        endpoint: Endpoint,
        start: datetime,
        end: datetime | None,
        *,
        page: int = 1,
        page_size: int = 1000,
        user: str | None = None,
    ) -> Page:
        """One page of the JSON endpoint, items typed as the CSV rows are."""
        params = {**_params(start, end, user), "page": str(page), "pageSize": str(page_size)}
        path = endpoint.json_path

        def read(response: aiohttp.ClientResponse) -> AsyncGenerator[Page, None]:
            return read_page(endpoint, response, (page - 1) * page_size + 1)

        async with aclosing(self._retrying(path, params, read)) as pages:
            async for result in pages:
                return result
        raise DataError(f"{path}: no response")  # unreachable: _retrying yields or raises

    async def count(self, endpoint: Endpoint, start: datetime, end: datetime | None) -> int:
        """The API's own row count for [start, end], both inclusive: one `pageSize=1` request.

        `end=None` asks up to the API's own `now`, as the newest window of a pass is read.

        The JSON pages' `totalCount`, through the same budget, retries and typed errors as
        any request. An amended commit served twice is counted twice.
        """
        return (await self.fetch_page(endpoint, start, end, page=1, page_size=1)).total_count

    async def iter_json_rows(
        self,
        endpoint: Endpoint,
        start: datetime,
        end: datetime,
        *,
        page_size: int = 1000,
        user: str | None = None,
    ) -> AsyncGenerator[Row | Rejected, None]:
        """Every row of the JSON endpoint for [start, end], walking the pages in order."""
        page = 1
        while True:
            result = await self.fetch_page(
                endpoint, start, end, page=page, page_size=page_size, user=user
            )
            for row in result.rows:
                yield row
            if not result.rows or page * max(result.page_size, 1) >= result.total_count:
                return
            page += 1

    async def _retrying(
        self, path: str, params: Mapping[str, str], read: Read[T]
    ) -> AsyncGenerator[T, None]:
        """Run `read` over the response of GET `path`, retrying retriable failures."""
        attempt = 0
        while True:
            attempt += 1
            try:
                async with aclosing(self._attempt(path, params, read)) as items:
                    async for item in items:
                        yield item
                return
            except RetriableApiError as error:
                delay = self._delay(attempt, error)
                if isinstance(error, RateLimited):
                    self._budget.penalize(path, delay)  # every job on this path waits it out
                if attempt > self.max_retries:
                    raise
                await self._before_retry(path, attempt, error, delay)

    async def _attempt(
        self, path: str, params: Mapping[str, str], read: Read[T]
    ) -> AsyncGenerator[T, None]:
        """One budgeted request: errors become typed ApiErrors, the body goes through `read`."""
        grant = await self._budget.acquire(path)
        self._sent[path] += 1
        if grant.waited > 0:
            self._observer.on_wait(path, grant.waited)
        reading = False
        try:
            async with self._require_session().get(self.base_url + path, params=params) as resp:
                self._budget.settle(grant)  # the server counted it before it answered
                self._observer.on_request(path, resp.status)
                if not 200 <= resp.status < 300:
                    raise await self._error_for(path, resp)
                reading = True
                async with aclosing(read(resp)) as items:
                    async for item in items:
                        yield item
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            if not reading:
                self._observer.on_request(path, "error")
                unreachable = ApiTimeout if isinstance(exc, TimeoutError) else ApiUnreachable
                raise unreachable(f"{path}: {describe(exc)}") from exc
            raise StreamInterrupted(f"{path}: the response was cut: {describe(exc)}") from exc
        finally:
            self._budget.settle(grant)  # no answer: whether it was counted is known by now

    async def _error_for(self, path: str, response: aiohttp.ClientResponse) -> ApiError:
        """The typed error of a non-2xx response."""
        status = response.status
        message = self._redact(await server_message(response))
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 429:
            self._observer.on_rate_limited(path)
            return RateLimited(f"{path}: HTTP 429: {message}", status=429,
                               retry_after=retry_after)  # fmt: skip
        if status >= 500 and not (status in CSV_GONE and path.endswith(".csv")):
            return ServerError(f"{path}: HTTP {status}: {message}", status=status,
                               retry_after=retry_after)  # fmt: skip
        if status in (401, 403):
            return AuthError(f"{path}: HTTP {status} ({message}): {AUTH_HINT}", status=status)
        if status in CSV_GONE and path.endswith(".csv"):
            return CsvUnavailable(f"{path}: HTTP {status}: {message}", status=status)
        return BadRequest(f"{path}: HTTP {status}: {message}", status=status)

    async def _before_retry(
        self, path: str, attempt: int, error: RetriableApiError, delay: float
    ) -> None:
        """Log, tell the observer, and wait: a 429 waits in the shared budget, others here."""
        log.warning(
            "retrying API request", path=path, attempt=attempt, delay=round(delay, 3),
            reason=str(error),
        )  # fmt: skip
        self._observer.on_retry(path, error)
        if not isinstance(error, RateLimited) and delay > 0:
            await self._sleep(delay)

    def _delay(self, attempt: int, error: RetriableApiError) -> float:
        """The server's Retry-After (capped unless it is a 429), else backoff with jitter."""
        if isinstance(error, RateLimited):
            if error.retry_after is not None:
                return error.retry_after
            # No Retry-After: hold back at least one slot of the rate window, with jitter,
            # and longer as 429s repeat (the budget holds every job and process back as long)
            return max(self._slot, self._backoff(attempt)) + self._rng.uniform(0, self._slot)
        if error.retry_after is None:
            return self._backoff(attempt)
        return min(error.retry_after, self._backoff_cap)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        ceiling = min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1))
        return self._rng.uniform(0, ceiling)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use `async with CursorClient(settings) as api:`")
        return self._session


def _params(start: datetime, end: datetime | None, user: str | None) -> dict[str, str]:
    until = "now" if end is None else isoformat_z(end)
    params = {"startDate": isoformat_z(start), "endDate": until}
    if user is not None:
        params["user"] = user
    return params
