"""Each CSV value is typed as the contract says, and a record with a bad one is rejected on its
own, with its text and the reason, while the stream goes on."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from syncer.endpoints import Endpoint
from syncer.parse.rows import Rejected, json_row, row_as_dict
from tests.csvpath import only_rows, read_bytes
from tests.parse.samples import CHANGE_HEADER, CHANGE_ROWS, COMMIT_HEADER, UTC

GOOD = "ok1,,,,,,,,,,,,,,,,2025-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("x1,u,e", "expected 17 fields, got 3"),
        (GOOD.replace("ok1", "x2") + ",surplus", "expected 17 fields, got 18"),
        ("x3,,,,,,many,,,,,,,,,,2025-01-01T00:00:00Z", "total_lines_added: 'many' is not an int"),
        ("x4,,,,,,1.5,,,,,,,,,,2025-01-01T00:00:00Z", "total_lines_added: '1.5' is not an int"),
        (f"x5,,,,,,{2**63},,,,,,,,,,2025-01-01T00:00:00Z", "does not fit a bigint"),
        (f"x6,,,,,,,{-(2**63) - 1},,,,,,,,,2025-01-01T00:00:00Z", "does not fit a bigint"),
        ("x7,,,,,yes,,,,,,,,,,,2025-01-01T00:00:00Z", "is_primary_branch: 'yes' is not true"),
        ("x8,,,,,,,,,,,,,,,,yesterday", "created_at: 'yesterday' is not an ISO 8601"),
        ("x9,,,,,,,,,,,,,,,2025-13-01T00:00:00Z,2025-01-01T00:00:00Z", "commit_ts: '2025-13"),
        ("x10,,,,,,,,,,,,,,,,", "created_at: required value is empty"),
        (",,,,,,,,,,,,,,,,2025-01-01T00:00:00Z", "commit_hash: required value is empty"),
        ("x11,,,,,,,,,,,,,,bad\x00msg,,2025-01-01T00:00:00Z", "contains a NUL character"),
        ("x12,,,,,,,,,,,,,,bad\udcffmsg,,2025-01-01T00:00:00Z", "bytes that are not UTF-8"),
    ],
)
def test_malformed_commit_rows_are_rejected_and_the_stream_goes_on(bad: str, reason: str) -> None:
    text = f"{COMMIT_HEADER}\n{GOOD}\n{bad}\n{GOOD.replace('ok1', 'ok2')}\n"
    data = text.encode("utf-8", "surrogateescape")
    for size in (3, 1 << 20):
        items = read_bytes(Endpoint.COMMITS, data, size)
        assert [item[0] for item in items if not isinstance(item, Rejected)] == ["ok1", "ok2"]
        [rejected] = [item for item in items if isinstance(item, Rejected)]
        assert reason in rejected.reason
        assert rejected.line == 3, "header is record 1"
        assert rejected.raw.split(",")[0] == bad.split(",")[0]


CHANGE_GOOD = "ok1,,,,,,,2025-01-01T00:00:00Z,"


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ('"[{""fileName"": ""a.ts""}"', "metadata_json: broken JSON"),
        ('"{""fileName"": ""a.ts""}"', "metadata_json: is not a JSON array"),
        ('"[1]"', "entry 0 is not a JSON object"),
        ('"[{}, {""linesAdded"": ""12""}]"', "entry 1: bad line count '12'"),
        ('"[{""linesAdded"": true}]"', "entry 0: bad line count True"),
        ('"[{""fileName"": 3}]"', "entry 0: bad file name or extension 3"),
        ('"[{""fileName"": ""a\\u0000b""}]"', "entry 0: bad file name or extension"),
    ],
)
def test_malformed_metadata_is_rejected(metadata: str, reason: str) -> None:
    bad = f"x1,,,,,,,2025-01-01T00:00:00Z,{metadata}"
    text = f"{CHANGE_HEADER}\n{CHANGE_GOOD}\n{bad}\n{CHANGE_GOOD.replace('ok1', 'ok2')}\n"
    items = read_bytes(Endpoint.CHANGES, text.encode())
    assert [item[0] for item in items if not isinstance(item, Rejected)] == ["ok1", "ok2"]
    [rejected] = [item for item in items if isinstance(item, Rejected)]
    assert reason in rejected.reason
    assert rejected.line == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("TRUE", True),
        ("False", False),
        (" true ", True),
    ],
)
def test_bools_are_case_insensitive(field: str, value: bool) -> None:
    [row] = only_rows(read_bytes(Endpoint.COMMITS, f"{COMMIT_HEADER}\n{GOOD}\n".replace(
        ",,,,,,,,,,,,,,,,", f",,,,,{field},,,,,,,,,,,").encode()))  # fmt: skip
    assert row[5] is value


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2025-07-30T14:12:03.000Z", datetime(2025, 7, 30, 14, 12, 3, tzinfo=UTC)),
        ("2025-07-30T14:12:03.5+09:00", datetime(2025, 7, 30, 5, 12, 3, 500000, tzinfo=UTC)),
        ("2025-07-30T14:12:03", datetime(2025, 7, 30, 14, 12, 3, tzinfo=UTC)),
        ("2025-07-30 14:12:03.123456+00:00", datetime(2025, 7, 30, 14, 12, 3, 123456, tzinfo=UTC)),
    ],
)
def test_timestamps_become_aware_utc(text: str, moment: datetime) -> None:
    [row] = only_rows(read_bytes(Endpoint.COMMITS, f"{COMMIT_HEADER}\nh,{',' * 14}{text},{text}\n"
                                  .encode()))  # fmt: skip
    assert row[15] == row[16] == moment
    assert row[16].utcoffset() == timedelta(0)


def test_bare_carriage_return_in_unquoted_field_is_kept() -> None:
    text = f"{COMMIT_HEADER}\nh1,{',' * 13}a\rb,,2025-01-01T00:00:00Z\n{GOOD}\n"
    rows = only_rows(read_bytes(Endpoint.COMMITS, text.encode()))
    assert [(row[0], row[14]) for row in rows] == [("h1", "a\rb"), ("ok1", None)]


def test_row_as_dict_names_columns_and_files() -> None:
    named = row_as_dict(Endpoint.CHANGES, CHANGE_ROWS[0])
    assert named["change_id"] == "749356201"
    assert "metadata_json" not in named
    assert "extra" not in named
    assert named["files"] == [
        {"file_name": "src/analytics/report.ts", "file_extension": "ts", "lines_added": 12,
         "lines_deleted": 3},
        {"file_name": None, "file_extension": "tsx", "lines_added": 6, "lines_deleted": 1,
         "extra": {"language": "TypeScript"}},
    ]  # fmt: skip


def test_json_items_give_the_same_rows_as_csv() -> None:
    item = {
        "changeId": "749356201", "userId": "user_3k9x8q...", "userEmail": "developer@company.com",
        "source": "COMPOSER", "model": "gpt-4o", "totalLinesAdded": 18, "totalLinesDeleted": 4,
        "createdAt": "2025-07-30T15:10:12.000Z",
        "metadata": [
            {"fileName": "src/analytics/report.ts", "fileExtension": "ts", "linesAdded": 12,
             "linesDeleted": 3},
            {"fileExtension": "tsx", "linesAdded": 6, "linesDeleted": 1, "language": "TypeScript"},
        ],
    }  # fmt: skip
    assert json_row(Endpoint.CHANGES, item, 1) == CHANGE_ROWS[0]
    extended = json_row(Endpoint.CHANGES, {**item, "newField": [1]}, 1)
    assert not isinstance(extended, Rejected)
    assert extended[-1] == {"newField": [1]}
    bad = json_row(Endpoint.CHANGES, {**item, "totalLinesAdded": "lots"}, 7)
    assert isinstance(bad, Rejected)
    assert (bad.line, bad.reason) == (7, "total_lines_added: 'lots' is not an integer")
    assert json.loads(bad.raw)["changeId"] == "749356201"
