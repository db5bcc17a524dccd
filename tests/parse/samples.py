"""CSV the API sends (its own samples and harder ones) and the typed rows they must become."""

from __future__ import annotations

from datetime import datetime, timezone

from syncer.endpoints import Endpoint
from syncer.parse.rows import Row

UTC = timezone.utc
#: the first document's 17 columns (`commit_source` came later: tests of its own cover it)
COMMIT_HEADER = ",".join(c.name for c in Endpoint.COMMITS.columns if c.name != "commit_source")
CHANGE_HEADER = ",".join(column.name for column in Endpoint.CHANGES.columns)

COMMIT_LINES = [
    # the API's own sample
    "a1b2c3d4,user_3k9x8q...,developer@company.com,company/repo,main,true,120,30,50,10,40,5,"
    '30,15,"Refactor: extract analytics client",2025-07-30T14:12:03.000Z,2025-07-30T14:12:30.000Z',
    # quoted comma, doubled quotes, a newline, Japanese; empty optional fields
    'e5f6g7h8,user_x,dev@company.com,,,,85,15,30,5,25,3,,,"修正: ""引用"", 改行\nあり",,'
    "2025-07-30T13:45:45.000Z",
]
COMMIT_ROWS: list[Row] = [
    (
        "a1b2c3d4", "user_3k9x8q...", "developer@company.com", "company/repo", "main", True,
        120, 30, 50, 10, 40, 5, 30, 15, "Refactor: extract analytics client",
        datetime(2025, 7, 30, 14, 12, 3, tzinfo=UTC), datetime(2025, 7, 30, 14, 12, 30, tzinfo=UTC),
        None, None,
    ),
    (
        "e5f6g7h8", "user_x", "dev@company.com", None, None, None, 85, 15, 30, 5, 25, 3, None,
        None, '修正: "引用", 改行\nあり', None, datetime(2025, 7, 30, 13, 45, 45, tzinfo=UTC), None,
        None,
    ),
]  # fmt: skip
COMMITS_CSV = COMMIT_HEADER + "\n" + "\n".join(COMMIT_LINES) + "\n"

CHANGE_LINES = [
    "749356201,user_3k9x8q...,developer@company.com,COMPOSER,gpt-4o,18,4,2025-07-30T15:10:12.000Z,"
    '"[{""fileName"":""src/analytics/report.ts"",""fileExtension"":""ts"",""linesAdded"":12,'
    '""linesDeleted"":3},{""fileExtension"":""tsx"",""linesAdded"":6,""linesDeleted"":1,'
    '""language"":""TypeScript""}]"',
    "749356202,user_3k9x8q...,developer@company.com,BRAND_NEW_SOURCE,,8,2,"
    "2025-07-30T15:08:45.000Z,",
]
CHANGE_ROWS: list[Row] = [
    (
        "749356201", "user_3k9x8q...", "developer@company.com", "COMPOSER", "gpt-4o", 18, 4,
        datetime(2025, 7, 30, 15, 10, 12, tzinfo=UTC),
        (
            ("src/analytics/report.ts", "ts", 12, 3, None),
            (None, "tsx", 6, 1, {"language": "TypeScript"}),  # privacy mode: no fileName
        ),
        None,
    ),
    (
        "749356202", "user_3k9x8q...", "developer@company.com", "BRAND_NEW_SOURCE", None, 8, 2,
        datetime(2025, 7, 30, 15, 8, 45, tzinfo=UTC), (), None,
    ),
]  # fmt: skip
CHANGES_CSV = CHANGE_HEADER + "\n" + "\n".join(CHANGE_LINES) + "\n"
