"""`FakeApiConfig`: every knob of the simulator, data set and faults alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

#: the longest range the real API is reported to answer (commits route), in days
REAL_MAX_RANGE_DAYS = 30.0


@dataclass
class FakeApiConfig:
    """How the simulator behaves; every field is also a `syncer fake-api` flag."""

    api_key: str = "demo-key"
    seed: int = 0
    commits: int = 2_000
    changes: int = 5_000
    days: float = 30.0
    #: end of the generated history; None means the moment the data set is built
    anchor: datetime | None = None
    rate_limit_requests: int = 5
    rate_limit_period: float = 60.0
    #: "off", "all", or a fraction of users (e.g. "0.3") whose file names are omitted
    privacy_mode: str = "off"
    #: fraction of CSV rows served twice in one stream (the second copy may be newer)
    duplicate_rate: float = 0.0
    #: rows per minute per endpoint that keep arriving after the anchor (0 = none)
    live_rate: float = 0.0
    #: megabytes of rendered CSV blocks kept for re-serving (0 = no cache)
    cache_mb: float = 0.0
    #: "desc" (newest first, as the doc's samples) or "asc"
    order: str = "desc"
    #: rows per server-side CSV page ("pages of 10,000 records")
    csv_page_rows: int = 10_000
    #: fraction of changes whose source is one the doc does not list (CLI, BACKGROUND_AGENT):
    #: the API is an alpha and grows; 0 serves only the documented TAB and COMPOSER
    new_source_rate: float = 0.0
    #: commits carry `commitSource` / `commit_source` (False: absent, as the first document
    #: and older rows have it)
    commit_source: bool = True
    # faults ---------------------------------------------------------------------------
    #: every Nth API request fails with `fail_status` (0 = never)
    fail_every: int = 0
    fail_status: int = 500
    #: abort CSV bodies after this many bytes (None = never), for `cut_times` responses
    cut_after_bytes: int | None = None
    cut_times: int = 1
    #: seconds to sleep between CSV chunks
    chunk_delay: float = 0.0
    #: CSV starts with a UTF-8 byte order mark
    bom: bool = False
    #: CSV lines end with CRLF instead of LF
    crlf: bool = False
    #: an unknown CSV column: None, "append" or "insert" (plus an unknown metadata key)
    extra_column: str | None = None
    #: CSV columns in a seeded shuffled order
    permute_columns: bool = False
    #: fraction of CSV rows rendered unparseable
    malformed_rate: float = 0.0
    #: CSV endpoints answer 302 to a one-time download URL: None, "same-host" or
    #: "other-host" (another origin, so clients must not send the key there)
    redirect_csv: str | None = None
    # what the real API does beyond the first document --------------------------------
    #: longest startDate..endDate range answered, in days (0 = any); longer gets 400.
    #: `syncer fake-api` defaults to the real API's 30 (`REAL_MAX_RANGE_DAYS`); built in code
    #: (tests, benchmarks) the simulator answers any range unless asked
    max_range_days: float = 0.0
    #: largest pageSize answered (the document's 1000); a larger one gets 400
    max_page_size: int = 1000
    #: error bodies as `{"error", "message"}` ("error") or `{"code": "error", "message"}` ("code")
    error_shape: str = "error"
    #: a key that authenticates but whose team is not on Enterprise: 401 (None = none)
    not_enterprise_key: str | None = None
    #: 429 answers carry no Retry-After header
    no_retry_after: bool = False
    #: ISO instants in startDate/endDate are read as the start of their UTC day
    day_granularity: bool = False
    #: the CSV routes are not served: None, "404", "410" or "html" (200 with an HTML page)
    csv_unavailable: str | None = None
    #: fraction of rows served twice: an older copy and an amended one with a newer createdAt
    amend_rate: float = 0.0
    #: where the amended copy comes in the stream: "newer-first" (as newest-first order has it)
    #: or "older-first"
    amend_order: str = "newer-first"
