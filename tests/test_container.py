"""The container files are consistent with the code: what can be checked without a Docker engine.

The Dockerfile runs a command that exists, its HEALTHCHECK really fails on 503 and passes on
200, the compose file parses and references only what it defines, and `.env.example`, the
compose ports and the image agree with `Settings`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncer.cli import build_parser
from syncer.config import Settings
from syncer.daemon.metrics import Metrics
from syncer.daemon.web import Health, build_app, serve
from syncer.endpoints import Endpoint
from syncer.errors import ConfigError
from syncer.results import Outcome, PassResult

ROOT = Path(__file__).resolve().parent.parent
VARIABLES = {str(f.validation_alias): name for name, f in Settings.model_fields.items()}


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's


# -- the Dockerfile -------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def exec_form(arguments: str) -> list[str]:
    form = json.loads(arguments)
    assert isinstance(form, list), "use the exec form, so signals reach syncer"
    return form


def test_the_image_is_multi_stage_slim_and_runs_as_a_user() -> None:
    steps = dockerfile()
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) >= 2
    final = final_stage()
    assert final[0][1].split()[0].endswith("-slim")
    users = [args for word, args in final if word == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    run_lines = " ".join(args for word, args in final if word == "RUN")
    for tool in ("gcc", "build-essential", "apt-get install", "pip install"):
        assert tool not in run_lines, f"{tool} in the final image"


def test_the_image_installs_the_pinned_package_without_the_embedded_database() -> None:
    installs = [args for word, args in dockerfile() if word == "RUN" and "pip install" in args]
    assert len(installs) == 1
    assert "-c constraints.txt ." in installs[0]
    assert "embedded" not in installs[0]


def test_the_default_command_is_syncer_run_and_exists() -> None:
    cmd = [exec_form(args) for word, args in final_stage() if word == "CMD"][-1]
    assert cmd == ["syncer", "run"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["syncer"] == "syncer.cli:main"
    args = build_parser().parse_args(cmd[1:])
    assert args.handler.__name__ == "_run"


def test_the_image_port_agrees_with_the_settings() -> None:
    final = final_stage()
    env = " ".join(args for word, args in final if word == "ENV")
    port = str(Settings().sync_http_port)
    assert f"SYNC_HTTP_PORT={port}" in env
    assert [args for word, args in final if word == "EXPOSE"] == [port]


def healthcheck_command() -> list[str]:
    args = [args for word, args in final_stage() if word == "HEALTHCHECK"][-1]
    return exec_form(args[args.index("CMD") + len("CMD") :].strip())


def healthcheck_passes(port: int) -> bool:
    """Run the image's HEALTHCHECK command against 127.0.0.1:port."""
    command = healthcheck_command()
    assert command[0] == "python"
    env = {**os.environ, "SYNC_HTTP_PORT": str(port)}
    done = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, timeout=20, check=False
    )
    return done.returncode == 0


async def test_the_healthcheck_fails_on_503_and_passes_on_200() -> None:
    health = Health(Settings().sync_interval * 3)
    async with serve(build_app(health, Metrics()), "127.0.0.1", 0) as port:
        assert not await asyncio.to_thread(healthcheck_passes, port)  # 503: nothing synced yet
        for endpoint in Endpoint:
            mark = datetime.now(timezone.utc)
            health.finished(PassResult(endpoint, "r", Outcome.SUCCESS, high_water_mark=mark))
        assert await asyncio.to_thread(healthcheck_passes, port)
    assert not await asyncio.to_thread(healthcheck_passes, port)  # no answer at all


# -- docker-compose.yml -----------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME:-default}` (unset or empty), `${NAME-default}` (unset) and `${NAME}`."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, default = match.group(1), match.group(2), match.group(3) or ""
        if operator == ":-":
            return env.get(name) or default
        return env.get(name, default if operator == "-" else "")

    return re.sub(r"\$\{(\w+)(?:(:?-)([^}]*))?\}", substitute, value)


def test_compose_parses_and_references_only_defined_services_and_volumes() -> None:
    spec = compose()
    services = spec["services"]
    assert set(services) == {
        "postgres",
        "syncer",
        "fake-api",
        "grafana-role",
        "grafana-grant",
        "grafana",
    }
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on undefined {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in spec["volumes"], f"{name} uses undeclared volume {source}"


def test_postgres_keeps_its_data_and_syncer_waits_for_it_to_be_healthy() -> None:
    services = compose()["services"]
    postgres, syncer = services["postgres"], services["syncer"]
    assert any(v.startswith("pgdata:") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert syncer["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert syncer["env_file"] == [{"path": ".env", "required": False}]
    url = interpolate(syncer["environment"]["DATABASE_URL"], {})
    assert url == "postgresql://syncer:syncer@postgres:5432/syncer"
    assert Settings(DATABASE_URL=url).database_url is not None


@pytest.mark.parametrize("env", [{}, {"SYNC_HTTP_PORT": "9100"}])
def test_the_published_port_follows_sync_http_port(env: dict[str, str]) -> None:
    syncer = compose()["services"]["syncer"]
    port = interpolate(syncer["environment"]["SYNC_HTTP_PORT"], env)
    assert port == env.get("SYNC_HTTP_PORT", str(Settings().sync_http_port))
    assert [interpolate(p, env) for p in syncer["ports"]] == [f"{port}:{port}"]
    assert Settings(SYNC_HTTP_PORT=port).sync_http_port == int(port)


def test_the_demo_profile_adds_the_simulator_and_needs_no_api_key() -> None:
    services = compose()["services"]
    fake, syncer = services["fake-api"], services["syncer"]
    assert fake["profiles"] == ["demo"]
    args = build_parser().parse_args(fake["command"][1:])
    assert (args.host, args.port) == ("0.0.0.0", 8001)
    assert syncer["depends_on"]["fake-api"]["required"] is False
    env = {k: interpolate(str(v), {}) for k, v in syncer["environment"].items()}
    assert env["CURSOR_API_KEY"] == args.api_key
    assert env["CURSOR_API_BASE_URL"] == f"http://fake-api:{args.port}"
    assert "profiles" not in syncer
    assert "profiles" not in services["postgres"]


@pytest.mark.parametrize("key", ["", "key_live_123"])
def test_a_env_copied_from_the_example_talks_to_the_real_api(key: str) -> None:
    dotenv = {name: value for name, (value, is_set, _) in env_example().items() if is_set}
    syncer = compose()["services"]["syncer"]
    env = {k: interpolate(str(v), {**dotenv, "CURSOR_API_KEY": key})
           for k, v in syncer["environment"].items()}  # fmt: skip
    assert env["CURSOR_API_BASE_URL"] == "https://api.cursor.com"
    assert env["CURSOR_API_KEY"] == key, "never the demo key"
    settings = Settings(CURSOR_API_KEY=env["CURSOR_API_KEY"])
    if not key:
        with pytest.raises(ConfigError, match="CURSOR_API_KEY is not set"):
            settings.require_api_key()


def test_one_service_builds_the_image_the_simulator_reuses() -> None:
    services = compose()["services"]
    assert "build" in services["syncer"]
    assert "build" not in services["fake-api"], "two builders of one tag race"
    assert services["fake-api"]["image"] == services["syncer"]["image"]


def test_the_simulator_stops_cleanly_on_sigterm() -> None:
    command = [sys.executable, "-m", "syncer", "fake-api", "--port", "0", "--commits", "10",
               "--changes", "10"]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        assert "fake Cursor API on http://127.0.0.1:" in process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_syncer_gets_longer_to_stop_than_its_shutdown_timeout() -> None:
    grace = compose()["services"]["syncer"]["stop_grace_period"]
    assert int(grace.rstrip("s")) > Settings().sync_shutdown_timeout.total_seconds()


# -- .env.example ---------------------------------------------------------------------------


def env_example() -> dict[str, tuple[str, bool, str]]:
    """NAME → (value, set (not commented out), the comment above it or above its group)."""
    found: dict[str, tuple[str, bool, str]] = {}
    comment: list[str] = []
    in_group = False  # variables on consecutive lines share the comment above the first
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.fullmatch(r"(# )?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            found[match.group(2)] = (match.group(3), not match.group(1), " ".join(comment))
            in_group = True
        elif line.startswith("#"):
            comment = [*([] if in_group else comment), line.lstrip("# ")]
            in_group = False
        else:
            comment, in_group = [], False
    return found


def test_env_example_lists_every_setting_with_a_comment() -> None:
    listed = env_example()
    assert set(VARIABLES) <= set(listed), set(VARIABLES) - set(listed)
    for variable, (_, _, comment) in listed.items():
        assert comment, f"{variable} has no comment"


def test_env_example_values_are_the_defaults() -> None:
    defaults = Settings()
    for variable, (value, is_set, _) in env_example().items():
        if variable not in VARIABLES or not is_set or variable == "CURSOR_API_KEY":
            continue
        field = VARIABLES[variable]
        given: dict[str, Any] = {variable: value}
        configured = Settings(**given)
        assert getattr(configured, field) == getattr(defaults, field), variable


def test_env_example_compose_variables_are_the_compose_defaults() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    compose_defaults = dict(re.findall(r"\$\{(\w+):-([^}]*)\}", text))
    for variable, (value, is_set, _) in env_example().items():
        if variable.startswith("POSTGRES_"):
            assert is_set
            assert compose_defaults[variable] == value, variable


def test_env_example_leaves_the_key_empty() -> None:
    value, is_set, _ = env_example()["CURSOR_API_KEY"]
    assert is_set
    assert value == ""


def test_dockerignore_keeps_the_context_to_what_the_image_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    copied = {
        part
        for word, args in dockerfile()
        if word == "COPY" and "--from" not in args
        for part in shlex.split(args)[:-1]
    }
    assert "*" in ignore
    for path in copied:
        assert f"!{path.rstrip('/')}" in ignore or f"!{path.rstrip('/')}/" in ignore, path
