"""`Settings`: every knob, from the environment and `.env`; built once by the CLI, passed down."""

from __future__ import annotations

from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from syncer.errors import ConfigError
from syncer.timespec import parse_duration, parse_spec

#: The longest date range the API answers in one request (reported for the commits route).
MAX_WINDOW = timedelta(days=30)


class ApiFormat(str, Enum):
    """Which of the API's two forms an endpoint is read through."""

    AUTO = "auto"  #: CSV, switching an endpoint to JSON pages when its CSV route is unavailable
    CSV = "csv"  #: the streaming CSV routes only
    JSON = "json"  #: the paginated JSON routes only


class LogFormat(str, Enum):
    """How log lines are rendered."""

    AUTO = "auto"  #: console on a terminal, JSON otherwise
    CONSOLE = "console"  #: key=value lines for people
    JSON = "json"  #: one JSON object per line for log collectors


def _default_data_dir() -> Path:
    return Path.cwd() / ".syncer"


class Settings(BaseSettings):
    """The configuration of one syncer process (see README for each variable)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    cursor_api_key: SecretStr | None = Field(default=None, validation_alias="CURSOR_API_KEY")
    cursor_api_base_url: str = Field(
        default="https://api.cursor.com", validation_alias="CURSOR_API_BASE_URL"
    )
    database_url: SecretStr | None = Field(default=None, validation_alias="DATABASE_URL")
    cursor_rate_limit_requests: int = Field(
        default=5, gt=0, validation_alias="CURSOR_RATE_LIMIT_REQUESTS"
    )
    cursor_rate_limit_period_seconds: float = Field(
        default=60.0, gt=0, validation_alias="CURSOR_RATE_LIMIT_PERIOD_SECONDS"
    )
    cursor_max_retries: int = Field(default=5, ge=0, validation_alias="CURSOR_MAX_RETRIES")
    cursor_connect_timeout: timedelta = Field(
        default=timedelta(seconds=15), validation_alias="CURSOR_CONNECT_TIMEOUT"
    )
    cursor_api_format: ApiFormat = Field(
        default=ApiFormat.AUTO, validation_alias="CURSOR_API_FORMAT"
    )
    cursor_json_page_size: int = Field(
        default=1000, gt=0, le=1000, validation_alias="CURSOR_JSON_PAGE_SIZE"
    )
    cursor_read_timeout: timedelta = Field(
        default=timedelta(seconds=120), validation_alias="CURSOR_READ_TIMEOUT"
    )
    sync_lookback: timedelta = Field(
        default=timedelta(minutes=15), validation_alias="SYNC_LOOKBACK"
    )
    sync_start: str = Field(default="30d", validation_alias="SYNC_START")
    sync_interval: timedelta = Field(default=timedelta(minutes=5), validation_alias="SYNC_INTERVAL")
    sync_window: timedelta = Field(default=timedelta(days=30), validation_alias="SYNC_WINDOW")
    sync_min_window: timedelta = Field(
        default=timedelta(hours=1), validation_alias="SYNC_MIN_WINDOW"
    )
    sync_batch_rows: int = Field(default=10_000, gt=0, validation_alias="SYNC_BATCH_ROWS")
    #: let PostgreSQL type plain CSV blocks (the fast path); false reads every block the careful way
    sync_raw_path: bool = Field(default=True, validation_alias="SYNC_RAW_PATH")
    sync_http_port: int = Field(default=8080, ge=0, le=65535, validation_alias="SYNC_HTTP_PORT")
    sync_http_host: str = Field(default="0.0.0.0", validation_alias="SYNC_HTTP_HOST")
    sync_healthy_intervals: int = Field(default=3, gt=0, validation_alias="SYNC_HEALTHY_INTERVALS")
    sync_shutdown_timeout: timedelta = Field(
        default=timedelta(seconds=30), validation_alias="SYNC_SHUTDOWN_TIMEOUT"
    )
    sync_log_format: LogFormat = Field(default=LogFormat.AUTO, validation_alias="SYNC_LOG_FORMAT")
    sync_log_level: str = Field(default="INFO", validation_alias="SYNC_LOG_LEVEL")
    sync_data_dir: Path = Field(default_factory=_default_data_dir, validation_alias="SYNC_DATA_DIR")
    #: how often the daemon re-reads the last SYNC_RESCAN_SPAN in full; zero turns it off
    sync_rescan_interval: timedelta = Field(
        default=timedelta(hours=24), validation_alias="SYNC_RESCAN_INTERVAL"
    )
    sync_rescan_span: timedelta = Field(
        default=timedelta(days=7), validation_alias="SYNC_RESCAN_SPAN"
    )
    sync_prune: bool = Field(default=False, validation_alias="SYNC_PRUNE")
    #: the largest share of a span's stored rows one prune may delete (0.1 = 10%)
    sync_prune_max: float = Field(default=0.1, validation_alias="SYNC_PRUNE_MAX")

    @field_validator(
        "cursor_connect_timeout",
        "cursor_read_timeout",
        "sync_lookback",
        "sync_interval",
        "sync_window",
        "sync_min_window",
        "sync_shutdown_timeout",
        "sync_rescan_interval",
        "sync_rescan_span",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any, info: ValidationInfo) -> Any:
        delta = parse_duration(value) if isinstance(value, str) else value
        if (
            isinstance(delta, timedelta)
            and delta <= timedelta(0)
            and info.field_name not in _ZERO_ALLOWED
        ):
            raise ValueError("must be a positive duration such as 30s, 15m, 2h, 1d")
        return delta

    @field_validator("sync_window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if value > MAX_WINDOW:
            raise ValueError("must be at most 30d: the API refuses a longer date range")
        return value

    @field_validator("sync_prune_max", mode="before")
    @classmethod
    def _share(cls, value: Any) -> Any:
        return parse_share(value) if isinstance(value, str) else value

    @field_validator("sync_prune_max")
    @classmethod
    def _share_range(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError("must be a share between 0% and 100% (e.g. 10% or 0.1)")
        return value

    @field_validator("cursor_api_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http(s) URL, e.g. https://api.cursor.com")
        return value.strip().rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        url = value.get_secret_value().strip()
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if scheme not in ("postgresql", "postgres", "postgresql+asyncpg"):
            raise ValueError(
                "must start with postgresql:// or postgresql+asyncpg:// "
                f"(got {scheme + '://' if scheme else 'no scheme'})"
            )
        return SecretStr(url)

    @field_validator("sync_start")
    @classmethod
    def _start(cls, value: str) -> str:
        parse_spec(value)
        return value

    @field_validator("sync_log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @property
    def rate_limit(self) -> tuple[int, float]:
        """(requests, period seconds) allowed per endpoint."""
        return self.cursor_rate_limit_requests, self.cursor_rate_limit_period_seconds

    def require_api_key(self) -> str:
        """The API key, or a ConfigError telling the user to set it."""
        if self.cursor_api_key is None or not self.cursor_api_key.get_secret_value():
            raise ConfigError(
                "CURSOR_API_KEY is not set: create an Admin API key in the Cursor dashboard "
                "and export CURSOR_API_KEY (or try `syncer fake-api` for a local simulator)"
            )
        return self.cursor_api_key.get_secret_value()


#: Durations for which zero is meaningful (no overlap; rescans turned off).
_ZERO_ALLOWED = ("sync_lookback", "sync_rescan_interval")


def parse_share(text: str) -> float:
    """`10%` or `0.1` as a fraction; a ValueError says which forms work."""
    value = text.strip()
    try:
        return float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a share; use forms like 10% or 0.1") from None


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment and `.env`, turning validation errors into one line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One readable line naming each bad variable and what is wrong with it."""
    fields = Settings.model_fields
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        field = fields.get(name)
        alias = (
            field.validation_alias if field and isinstance(field.validation_alias, str) else None
        )
        variable = alias or name.upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{variable}: {message}")
    return "invalid configuration: " + "; ".join(problems)
