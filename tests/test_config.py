"""Configuration: the contract's variables and defaults, one-line errors, secrets never shown."""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from pathlib import Path

import pytest
import structlog

from syncer.config import LogFormat, Settings, load_settings
from syncer.errors import ConfigError
from syncer.logs import configure_logging
from syncer.store.db import redact, to_asyncpg_url, to_libpq_url
from syncer.timespec import format_duration, parse_duration, parse_spec

KEY = "key_live_1234567890abcdef"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ambient variables or .env file leak into these tests."""
    for name in list(Settings.model_fields):
        field = Settings.model_fields[name]
        monkeypatch.delenv(str(field.validation_alias), raising=False)
    monkeypatch.chdir(tmp_path)


def test_contract_defaults() -> None:
    settings = load_settings()
    assert settings.cursor_api_key is None
    assert settings.cursor_api_base_url == "https://api.cursor.com"
    assert settings.database_url is None
    assert settings.rate_limit == (5, 60.0)
    assert settings.sync_lookback == timedelta(minutes=15)
    assert settings.sync_start == "30d"
    assert settings.sync_interval == timedelta(minutes=5)
    assert settings.sync_http_port == 8080


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SYNC_LOOKBACK=2h\nCURSOR_RATE_LIMIT_REQUESTS=3\n")
    monkeypatch.setenv("SYNC_INTERVAL", "30s")
    monkeypatch.setenv("CURSOR_API_BASE_URL", "http://127.0.0.1:8001/")
    settings = load_settings()
    assert settings.sync_lookback == timedelta(hours=2)
    assert settings.cursor_rate_limit_requests == 3
    assert settings.sync_interval == timedelta(seconds=30)
    assert settings.cursor_api_base_url == "http://127.0.0.1:8001"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CURSOR_API_BASE_URL", "not-a-url", r"CURSOR_API_BASE_URL: 'not-a-url' is not an http"),
        ("DATABASE_URL", "mysql://x@y/z", r"DATABASE_URL: must start with postgresql://"),
        ("SYNC_LOOKBACK", "soon", r"SYNC_LOOKBACK: 'soon' is not a duration"),
        ("SYNC_INTERVAL", "0s", r"SYNC_INTERVAL: must be positive|SYNC_INTERVAL"),
        ("SYNC_START", "yesterday", r"SYNC_START: 'yesterday' is not a date"),
        ("CURSOR_RATE_LIMIT_REQUESTS", "0", r"CURSOR_RATE_LIMIT_REQUESTS: .*greater than 0"),
        ("CURSOR_RATE_LIMIT_PERIOD_SECONDS", "abc", r"CURSOR_RATE_LIMIT_PERIOD_SECONDS"),
        ("SYNC_HTTP_PORT", "70000", r"SYNC_HTTP_PORT: .*65535"),
        ("SYNC_LOG_FORMAT", "xml", r"SYNC_LOG_FORMAT"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings()
    assert "\n" not in str(info.value)


def test_missing_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CURSOR_API_KEY is not set"):
        load_settings().require_api_key()


@pytest.mark.parametrize(
    ("url", "asyncpg_form"),
    [
        ("postgresql://u:p@h:5432/d", "postgresql+asyncpg://u:p@h:5432/d"),
        ("postgres://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql+asyncpg://u@h/d?ssl=require", "postgresql+asyncpg://u@h/d?ssl=require"),
    ],
)
def test_database_url_forms(url: str, asyncpg_form: str) -> None:
    assert to_asyncpg_url(url) == asyncpg_form
    assert to_libpq_url(url) == "postgresql://" + asyncpg_form.split("://", 1)[1]


def test_secrets_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURSOR_API_KEY", KEY)
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2secret@db:5432/warehouse")
    settings = load_settings()
    assert settings.require_api_key() == KEY
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert KEY not in text
        assert "hunter2secret" not in text
    assert "hunter2secret" not in redact(settings.database_url.get_secret_value())  # type: ignore[union-attr]

    stream = io.StringIO()
    configure_logging(
        settings.model_copy(update={"sync_log_format": LogFormat.JSON}), stream=stream
    )
    log = structlog.get_logger("test")
    log.info("settings", settings=settings, api_key=KEY)
    logging.getLogger("plain").warning("settings %r", settings)
    output = stream.getvalue()
    assert "settings" in output
    assert KEY not in output
    assert "hunter2secret" not in output


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("90", timedelta(seconds=90)),
    ],
)
def test_durations(text: str, delta: timedelta) -> None:
    assert parse_duration(text) == delta
    assert parse_duration(format_duration(delta)) == delta


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("now", "2025-07-30T12:00:00+00:00"),
        ("7d", "2025-07-23T12:00:00+00:00"),
        ("0d", "2025-07-30T12:00:00+00:00"),
        ("2025-06-01", "2025-06-01T00:00:00+00:00"),
        ("2025-06-01T10:30:00Z", "2025-06-01T10:30:00+00:00"),
        ("2025-06-01T10:30:00.250Z", "2025-06-01T10:30:00.250000+00:00"),
        ("2025-06-01T12:30:00+02:00", "2025-06-01T10:30:00+00:00"),
        ("2025-06-01T10:30:00", "2025-06-01T10:30:00+00:00"),
    ],
)
def test_date_specs(spec: str, expected: str) -> None:
    from datetime import datetime

    now = datetime.fromisoformat("2025-07-30T12:00:00+00:00")
    assert parse_spec(spec, now).isoformat() == expected


@pytest.mark.parametrize("spec", ["", "yesterday", "7 days", "2025-13-01", "-3d"])
def test_bad_date_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="is not a date"):
        parse_spec(spec)
