"""The exception tree, grouped by what the caller does about it.

    SyncerError                 any expected failure: the CLI prints one line, exits non-zero
    ├── ConfigError             bad settings or arguments: fix the configuration
    ├── DatabaseError           PostgreSQL unreachable or failing: check DATABASE_URL / the server
    │   ├── DatabaseReadOnly    it answers but takes no writes (a standby, a read-only database)
    │   └── DatabaseFull        it answers but has no room left (a full disk or tablespace)
    ├── ApiError                anything the Cursor API did wrong
    │   ├── RetriableApiError   worth another try after `retry_after` seconds
    │   │   ├── RateLimited         429
    │   │   ├── ServerError         5xx
    │   │   ├── ApiUnreachable      connection refused / reset, DNS
    │   │   │   └── ApiTimeout          no answer in time (a window too large to serve?)
    │   │   └── StreamInterrupted   the CSV body ended before its last record
    │   └── FatalApiError       retrying cannot help: fix the request or the credentials
    │       ├── AuthError           401 / 403
    │       └── BadRequest          400 and other 4xx
    │           └── CsvUnavailable  a CSV route answered 404/405/406/410/501, or not CSV
    ├── DataError               a response that cannot be understood as a whole (e.g. a
    │                           required CSV column is missing); single bad rows are not
    │                           errors, they are quarantined
    ├── EndpointBusy            another process holds this endpoint's sync lock
    └── Interrupted             a stop was asked for (a signal): the pass ends, nothing is lost

Only the API client retries, and only `RetriableApiError`.
"""

from __future__ import annotations


class SyncerError(Exception):
    """Root of every expected failure; its message is shown to the user as one line."""


class ConfigError(SyncerError):
    """A setting or a command-line argument is invalid."""


class DatabaseError(SyncerError):
    """PostgreSQL could not be reached or refused an operation."""


class DatabaseReadOnly(DatabaseError):
    """PostgreSQL refuses writes: a standby (a failover's old primary) or a read-only database."""


class DatabaseFull(DatabaseError):
    """PostgreSQL cannot store more: the disk (or tablespace) holding the data is full."""


class ApiError(SyncerError):
    """The Cursor API failed; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetriableApiError(ApiError):
    """A transient API failure; `retry_after` (seconds) is the server's hint, if any."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class RateLimited(RetriableApiError):
    """HTTP 429: the team's per-endpoint budget is spent for now."""


class ServerError(RetriableApiError):
    """HTTP 5xx from the API."""


class ApiUnreachable(RetriableApiError):
    """The API could not be reached or did not answer in time."""


class ApiTimeout(ApiUnreachable):
    """The API accepted the connection but did not answer in time."""


class StreamInterrupted(RetriableApiError):
    """A CSV stream ended before its last complete record."""


class FatalApiError(ApiError):
    """An API failure that retrying cannot fix."""


class AuthError(FatalApiError):
    """HTTP 401/403: the key is wrong, revoked, or the team lacks API access."""


class BadRequest(FatalApiError):
    """HTTP 400 or another 4xx: the request itself is wrong."""


class CsvUnavailable(BadRequest):
    """A CSV route is not served (404, 405, 406, 410, 501, or a body that is not CSV)."""


class DataError(SyncerError):
    """A response that cannot be read as a whole (single bad rows are quarantined instead)."""


class EndpointBusy(SyncerError):
    """Another process is syncing this endpoint right now."""


class Interrupted(SyncerError):
    """A stop was requested: end at a batch boundary and send no further request."""
