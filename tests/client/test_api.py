"""The client maps statuses to typed errors, retries only what can succeed, and hides the key.

Every CSV download goes through `stream_blocks` and `parse_block`, the path a sync pass runs.
"""

from __future__ import annotations

import asyncio
import base64
import random
import re
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses

from syncer.client.api import USER_AGENT, CursorClient
from syncer.client.ratelimit import Grant, RateLimiters
from syncer.client.responses import parse_retry_after
from syncer.config import Settings
from syncer.endpoints import Endpoint
from syncer.errors import (
    ApiError,
    ApiUnreachable,
    AuthError,
    BadRequest,
    RateLimited,
    ServerError,
    StreamInterrupted,
)
from syncer.parse.pages import Page
from syncer.parse.parser import parse_block
from syncer.parse.rows import Rejected, Row
from tests.csvpath import keys, rows_of

UTC = timezone.utc
KEY = "key_SECRET_abc123"
BASE = "http://api.test"
START = datetime(2025, 7, 1, tzinfo=UTC)
END = datetime(2025, 7, 31, tzinfo=UTC)
COMMITS_URL = re.compile(r"^http://api\.test/analytics/ai-code/commits\.csv\?.*$")
CHANGES_JSON_URL = re.compile(r"^http://api\.test/analytics/ai-code/changes\?.*$")
HEADER = ",".join(c.name for c in Endpoint.COMMITS.columns if c.name != "commit_source")
COMMITS = Endpoint.COMMITS
CSV_BODY = f"{HEADER}\nc1,u,e,r,b,true,1,2,3,4,5,6,7,8,msg,,2025-07-30T14:12:30.000Z\n"


class MockResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 predates aiohttp 3.14's required `stream_writer`; supply a stub."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


def mock_get(mocked: aioresponses, url: Any = None, **kwargs: Any) -> None:
    if url is None or url is COMMITS_URL:  # a CSV route answers CSV (else: CsvUnavailable)
        kwargs.setdefault("content_type", "text/csv")
    mocked.get(COMMITS_URL if url is None else url, response_class=MockResponse, **kwargs)


def make_settings(base_url: str = BASE, retries: int = 3) -> Settings:
    return Settings(
        _env_file=None,
        CURSOR_API_KEY=KEY,
        CURSOR_API_BASE_URL=base_url,
        CURSOR_MAX_RETRIES=retries,
        CURSOR_CONNECT_TIMEOUT="2s",
        CURSOR_READ_TIMEOUT="2s",
    )


class FakeBudget:
    """A request budget that never waits and remembers what it was asked."""

    def __init__(self) -> None:
        self.acquired: list[str] = []
        self.grants: list[Grant] = []
        self.penalties: list[tuple[str, float]] = []

    async def acquire(self, key: str) -> Grant:
        self.acquired.append(key)
        grant = Grant(key, 0.0, 0.0)
        self.grants.append(grant)
        return grant

    def settle(self, grant: Grant) -> None:
        grant.settled = True

    def penalize(self, key: str, retry_after: float) -> None:
        self.penalties.append((key, retry_after))


class Recorder:
    """An ApiObserver and an injected sleep that record every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.sleeps: list[float] = []
        self.now = 0.0

    def on_request(self, path: str, status: int | str) -> None:
        self.calls.append(("request", status))

    def on_rate_limited(self, path: str) -> None:
        self.calls.append(("rate_limited", path))

    def on_wait(self, path: str, seconds: float) -> None:
        self.calls.append(("wait", seconds))

    def on_retry(self, path: str, error: ApiError) -> None:
        self.calls.append(("retry", type(error).__name__))

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


ClientFactory = Callable[..., CursorClient]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def budget() -> FakeBudget:
    return FakeBudget()


@pytest.fixture
def client(recorder: Recorder, budget: FakeBudget) -> ClientFactory:
    def build(**overrides: Any) -> CursorClient:
        options: dict[str, Any] = {
            "budget": budget, "observer": recorder, "sleep": recorder.sleep,
            "rng": random.Random(7),
        }  # fmt: skip
        options.update(overrides)
        settings = options.pop("settings", make_settings())
        return CursorClient(settings, **options)

    return build


def request_count(mocked: aioresponses) -> int:
    return sum(len(calls) for calls in mocked.requests.values())


async def test_success_sends_dates_agent_and_parses(
    client: ClientFactory, budget: FakeBudget
) -> None:
    seen: list[dict[str, Any]] = []

    def reply(url: Any, **kwargs: Any) -> CallbackResult:
        seen.append({"query": dict(url.query), "agent": kwargs["headers"]["User-Agent"]})
        return CallbackResult(
            status=200, body=CSV_BODY, content_type="text/csv", response_class=MockResponse
        )

    with aioresponses() as mocked:
        mock_get(mocked, callback=reply)
        async with client() as api:
            rows = await rows_of(COMMITS, api.stream_blocks(COMMITS, START, END, user="u@x"))
    assert keys(rows) == ["c1"]
    assert seen == [{
        "query": {"startDate": "2025-07-01T00:00:00.000Z", "endDate": "2025-07-31T00:00:00.000Z",
                  "user": "u@x"},
        "agent": USER_AGENT,
    }]  # fmt: skip
    assert USER_AGENT.startswith("syncer/")
    assert " aiohttp/" in USER_AGENT
    assert budget.acquired == ["/analytics/ai-code/commits.csv"]


async def test_server_errors_are_retried_then_succeed(
    client: ClientFactory, recorder: Recorder, budget: FakeBudget
) -> None:
    with aioresponses() as mocked:
        mock_get(mocked, status=503, body="down")
        mock_get(mocked, status=500, body="oops")
        mock_get(mocked, status=200, body=CSV_BODY)
        async with client() as api:
            rows = await rows_of(COMMITS, api.stream_blocks(COMMITS, START, END))
        assert request_count(mocked) == 3
    assert keys(rows) == ["c1"]
    assert len(budget.acquired) == 3, "every attempt goes through the budget"
    assert all(grant.settled for grant in budget.grants), "each answer settles its grant"
    assert [status for kind, status in recorder.calls if kind == "request"] == [503, 500, 200]
    assert [name for kind, name in recorder.calls if kind == "retry"] == ["ServerError"] * 2
    # full jitter: uniform in [0, base * 2^(attempt-1)]
    assert len(recorder.sleeps) == 2
    assert 0 <= recorder.sleeps[0] <= 1
    assert 0 <= recorder.sleeps[1] <= 2


@pytest.mark.parametrize(
    ("mock", "error", "match"),
    [
        ({"status": 502, "body": "bad gateway"}, ServerError, "HTTP 502: bad gateway"),
        ({"exception": aiohttp.ClientConnectionError("refused")}, ApiUnreachable, "refused"),
        ({"exception": TimeoutError()}, ApiUnreachable, "TimeoutError"),
        ({"status": 429}, RateLimited, "HTTP 429"),
    ],
)
async def test_retriable_errors_give_up_after_max_retries(
    client: ClientFactory,
    recorder: Recorder,
    budget: FakeBudget,
    mock: dict[str, Any],
    error: type[ApiError],
    match: str,
) -> None:
    with aioresponses() as mocked:
        mock_get(mocked, repeat=True, **mock)
        async with client(settings=make_settings(retries=2)) as api:
            with pytest.raises(error, match=match):
                await rows_of(COMMITS, api.stream_blocks(COMMITS, START, END))
        assert request_count(mocked) == 3, "1 attempt + 2 retries"
    assert all(grant.settled for grant in budget.grants), "a failed attempt settles too"
    assert len([call for call in recorder.calls if call[0] == "retry"]) == 2


async def test_429_retry_after_waits_in_the_shared_budget(
    client: ClientFactory, recorder: Recorder
) -> None:
    limiter = RateLimiters(5, 60.0, clock=recorder.clock, sleep=recorder.sleep)
    with aioresponses() as mocked:
        mock_get(mocked, status=429, headers={"Retry-After": "7"})
        mock_get(mocked, status=200, body=CSV_BODY)
        async with client(budget=limiter) as api:
            rows = await rows_of(COMMITS, api.stream_blocks(COMMITS, START, END))
    assert keys(rows) == ["c1"]
    assert recorder.sleeps == [7.0], "the Retry-After, not a backoff"
    assert ("rate_limited", "/analytics/ai-code/commits.csv") in recorder.calls
    assert ("wait", 7.0) in recorder.calls


async def test_429_penalizes_the_budget_for_other_jobs(
    client: ClientFactory, budget: FakeBudget
) -> None:
    with aioresponses() as mocked:
        mock_get(mocked, status=429, headers={"Retry-After": "12"})
        mock_get(mocked, status=200, body=CSV_BODY)
        async with client() as api:
            await rows_of(COMMITS, api.stream_blocks(COMMITS, START, END))
    assert budget.penalties == [("/analytics/ai-code/commits.csv", 12.0)]


@pytest.mark.parametrize(
    ("status", "body", "error", "match"),
    [
        (
            401,
            '{"error": "Unauthorized"}',
            AuthError,
            r"HTTP 401 \(Unauthorized\): check CURSOR_API_KEY and that the team is on an",
        ),
        (403, "forbidden", AuthError, "check CURSOR_API_KEY and that the team is on an enterprise"),
        (400, '{"error": "Invalid startDate"}', BadRequest, "HTTP 400: Invalid startDate"),
        (404, "no such path", BadRequest, "HTTP 404: no such path"),
        (422, '{"message": "pageSize too big"}', BadRequest, "HTTP 422: pageSize too big"),
    ],
)
async def test_fatal_errors_fail_fast(
    client: ClientFactory, status: int, body: str, error: type[ApiError], match: str
) -> None:
    with aioresponses() as mocked:
        mock_get(mocked, status=status, body=body, repeat=True)
        async with client() as api:
            with pytest.raises(error, match=match) as caught:
                await rows_of(COMMITS, api.stream_blocks(COMMITS, START, END))
        assert request_count(mocked) == 1, "never retried"
    assert caught.value.status == status


async def test_the_key_never_shows(client: ClientFactory) -> None:
    encoded = base64.b64encode(f"{KEY}:".encode()).decode()
    with aioresponses() as mocked:
        mock_get(mocked, status=401, body=f"bad key {KEY} / Basic {encoded}")
        async with client() as api:
            with pytest.raises(AuthError) as caught:
                await rows_of(COMMITS, api.stream_blocks(COMMITS, START, END))
            text = " ".join([repr(api), str(api), str(caught.value), repr(caught.value)])
    assert KEY not in text
    assert encoded not in text
    assert "***" in str(caught.value)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Wed, 30 Jul 2025 14:12:33 GMT", 30.0),
        ("Wed, 30 Jul 2025 14:11:00 GMT", 0.0),
        ("soon", None),
        ("nan", None),
        (None, None),
    ],
)
def test_retry_after_forms(header: str | None, seconds: float | None) -> None:
    now = datetime(2025, 7, 30, 14, 12, 3, tzinfo=UTC)
    assert parse_retry_after(header, now) == seconds


def _change(change_id: str, **overrides: Any) -> dict[str, Any]:
    item = {
        "changeId": change_id, "userId": "user_1", "userEmail": "a@b.c", "source": "TAB",
        "model": None, "totalLinesAdded": 3, "totalLinesDeleted": 1,
        "createdAt": "2025-07-30T15:10:12.000Z",
        "metadata": [{"fileName": "a.py", "fileExtension": "py", "linesAdded": 3,
                      "linesDeleted": 1}],
    }  # fmt: skip
    item.update(overrides)
    return item


async def test_json_pages_are_walked_and_typed_like_csv(client: ClientFactory) -> None:
    items = [_change(str(i)) for i in range(5)]
    items[3] = _change("3", totalLinesAdded="many")

    def reply(url: Any, **kwargs: Any) -> CallbackResult:
        page, size = int(url.query["page"]), int(url.query["pageSize"])
        chunk = items[(page - 1) * size : page * size]
        return CallbackResult(
            status=200,
            response_class=MockResponse,
            payload={"items": chunk, "totalCount": len(items), "page": page, "pageSize": size},
        )

    with aioresponses() as mocked:
        mock_get(mocked, CHANGES_JSON_URL, callback=reply, repeat=True)
        async with client() as api:
            page = await api.fetch_page(Endpoint.CHANGES, START, END, page=2, page_size=2)
            rows = [row async for row in api.iter_json_rows(Endpoint.CHANGES, START, END,
                                                            page_size=2)]  # fmt: skip
        assert request_count(mocked) == 4
    assert isinstance(page, Page)
    assert (page.total_count, page.page, page.page_size) == (5, 2, 2)
    assert [row[0] for row in page.rows if not isinstance(row, Rejected)] == ["2"]
    assert [row.line for row in page.rows if isinstance(row, Rejected)] == [4]
    good = [row for row in rows if not isinstance(row, Rejected)]
    assert [row[0] for row in good] == ["0", "1", "2", "4"]
    assert good[0][8] == (("a.py", "py", 3, 1, None),)
    assert good[0][7] == datetime(2025, 7, 30, 15, 10, 12, tzinfo=UTC)


# --- a body cut short, over real HTTP (aioresponses cannot cut a body) -----------------------


class CuttingServer:
    """A raw HTTP server that promises more bytes than it sends, for the first `cuts` requests.

    It sends the first record in a chunk of its own, then the rest: the client yields the
    blocks a chunk completes once the next chunk comes (see `cut_blocks`), so the first record
    is yielded before the cut."""

    def __init__(self, body: bytes, cut_at: int, cuts: int) -> None:
        self.body, self.cut_at, self.cuts = body, cut_at, cuts
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests.append(await reader.readuntil(b"\r\n\r\n"))
        cut = len(self.requests) <= self.cuts
        payload = self.body[: self.cut_at] if cut else self.body
        first = len(CSV_BODY.encode())
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/csv; charset=utf-8\r\n"
            + f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n".encode()
            + payload[:first]
        )
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(payload[first:])
        await writer.drain()
        writer.close()


async def serve(server: CuttingServer) -> AsyncIterator[str]:
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        listening.close()
        await listening.wait_closed()


HALF_ROW = 'c2,u,e,r,b,false,1,2,3,4,5,6,7,8,"half, row",,2025-07-30T14:12:31Z\n'
BODY = (CSV_BODY + HALF_ROW).encode()
CUT = BODY.index(b"half") + 2


async def test_cut_stream_is_retried_then_raised_and_never_yields_the_half_row(
    client: ClientFactory, recorder: Recorder
) -> None:
    server = CuttingServer(BODY, CUT, cuts=99)
    seen: list[Row | Rejected] = []

    async def drain(api: CursorClient) -> None:  # a block as soon as a record is whole
        async for block in api.stream_blocks(COMMITS, START, END, block_bytes=1):
            seen.extend(parse_block(COMMITS, block))

    async for url in serve(server):
        async with client(settings=make_settings(url, retries=2)) as api:
            with pytest.raises(StreamInterrupted, match="cut"):
                await drain(api)
    assert len(server.requests) == 3
    assert keys(seen) == ["c1"] * 3, "rows repeat across retries; c2 never"
    assert [name for kind, name in recorder.calls if kind == "retry"] == ["StreamInterrupted"] * 2


async def test_cut_stream_recovers_and_sends_auth_and_agent(client: ClientFactory) -> None:
    server = CuttingServer(BODY, CUT, cuts=1)
    async for url in serve(server):
        async with client(settings=make_settings(url)) as api:
            blocks = api.stream_blocks(COMMITS, START, END, block_bytes=1)
            rows = await rows_of(COMMITS, blocks)
    assert keys(rows) == ["c1", "c1", "c2"]
    request = server.requests[0].decode()
    assert f"Authorization: Basic {base64.b64encode(f'{KEY}:'.encode()).decode()}" in request
    assert f"User-Agent: {USER_AGENT}" in request


async def test_connection_refused_is_unreachable(client: ClientFactory, recorder: Recorder) -> None:
    listening = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    listening.close()
    await listening.wait_closed()
    async with client(settings=make_settings(f"http://127.0.0.1:{port}", retries=1)) as api:
        with pytest.raises(ApiUnreachable, match="Cannot connect|refused"):
            await rows_of(COMMITS, api.stream_blocks(COMMITS, START, END))
    assert [status for kind, status in recorder.calls if kind == "request"] == ["error"] * 2


def test_settings_timeouts_reach_the_session() -> None:
    api = CursorClient(make_settings())
    assert api._timeout.total is None
    assert api._timeout.sock_read == timedelta(seconds=2).total_seconds()
    assert api._timeout.connect == 2.0


async def test_stopping_early_releases_the_connection(client: ClientFactory) -> None:
    body = CSV_BODY + "".join(
        f"c{i},u,e,r,b,true,1,2,3,4,5,6,7,8,msg,,2025-07-30T14:12:30.000Z\n" for i in range(2, 50)
    )
    with aioresponses() as mocked:
        mock_get(mocked, status=200, body=body, repeat=True)
        async with client() as api:
            async with aclosing(api.stream_blocks(COMMITS, START, END, block_bytes=1)) as blocks:
                async for block in blocks:
                    assert keys(parse_block(COMMITS, block)) == ["c1"]
                    break
            rows = await rows_of(COMMITS, api.stream_blocks(COMMITS, START, END, block_bytes=1))
            assert keys(rows)[-1] == "c49"


async def test_a_final_429_still_holds_other_jobs_back(
    client: ClientFactory, budget: FakeBudget
) -> None:
    with aioresponses() as mocked:
        mock_get(mocked, status=429, headers={"Retry-After": "30"}, repeat=True)
        async with client(settings=make_settings(retries=0)) as api:
            with pytest.raises(RateLimited, match="HTTP 429"):
                await rows_of(COMMITS, api.stream_blocks(COMMITS, START, END))
    assert budget.penalties == [("/analytics/ai-code/commits.csv", 30.0)]


async def test_a_huge_retry_after_on_5xx_is_capped(
    client: ClientFactory, recorder: Recorder
) -> None:
    with aioresponses() as mocked:
        mock_get(mocked, status=503, headers={"Retry-After": "86400"})
        mock_get(mocked, status=200, body=CSV_BODY)
        async with client(backoff_cap=20.0) as api:
            await rows_of(COMMITS, api.stream_blocks(COMMITS, START, END))
    assert recorder.sleeps == [20.0]
