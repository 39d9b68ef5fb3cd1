"""A throwaway PostgreSQL server for tests: ``initdb`` into a temporary folder, ``pg_ctl start``
on a free loopback port (unix socket in the same folder), trust authentication, no fsync.

    with start_postgres() as pg:          # or the session fixture in a test module
        url = pg.create_database("t1")    # postgresql://postgres@127.0.0.1:<port>/t1

PostgreSQL refuses to run as root: when the tests run as root the server runs as the
``postgres`` user (``runuser -u postgres --``), which the Debian package creates. The binaries
are Debian's (``/usr/lib/postgresql/<version>/bin``) or any ``pg_ctl`` on ``PATH``; install them
with ``POSTGRES_INSTALL``. ``$BOTYARD_TEST_POSTGRES_URL`` (a superuser URL of a server you run)
skips starting one.

Importable as ``postgres`` from test modules in this folder (pytest puts a test folder without
``__init__.py`` on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator
from botyard.components.base.net import free_port

POSTGRES_INSTALL = "apt-get update && apt-get install -y --no-install-recommends postgresql"
URL_ENV = "BOTYARD_TEST_POSTGRES_URL"
RUN_AS = "postgres"  # the server's user when the tests run as root


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries (or no user to run them as)."""


def find_bin_dir() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``; the newest Debian version first."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]), reverse=True)
    found = versions[0] if versions else shutil.which("pg_ctl")
    if not found:
        raise PostgresUnavailable(f"PostgreSQL is not installed (no pg_ctl); install it with: {POSTGRES_INSTALL}")
    return Path(found).resolve().parent


class PostgresServer:
    """A running server; ``url(dbname)`` for SQLAlchemy, ``create_database`` for a fresh database."""

    def __init__(self, host: str, port: int, user: str = "postgres", password: str | None = None,
                 data_dir: Path | None = None, run_as: str | None = None, bin_dir: Path | None = None):
        self.host, self.port, self.user, self.password = host, port, user, password
        self.data_dir, self.run_as, self.bin_dir = data_dir, run_as, bin_dir

    def url(self, dbname: str = "postgres") -> str:
        auth = self.user + (f":{self.password}" if self.password else "")
        return f"postgresql+psycopg://{auth}@{self.host}:{self.port}/{dbname}"

    def _connect(self, dbname: str = "postgres"):
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               dbname=dbname, autocommit=True, connect_timeout=10)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with self._connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_tail(self, lines: int = 30) -> str:
        if not self.data_dir:
            return ""
        with contextlib.suppress(OSError), open(self.data_dir.parent / "postgres.log", encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
        return ""


def _as_server_user(cmd: list[str], run_as: str | None) -> list[str]:
    return ["runuser", "-u", run_as, "--", *cmd] if run_as else cmd


@contextlib.contextmanager
def start_postgres(start_timeout: float = 60.0) -> Iterator[PostgresServer]:
    """Start a server (or use ``$BOTYARD_TEST_POSTGRES_URL``); stop it and delete its files on exit."""
    if os.environ.get(URL_ENV):
        from sqlalchemy.engine import make_url

        url = make_url(os.environ[URL_ENV])
        yield PostgresServer(url.host or "127.0.0.1", url.port or 5432, url.username or "postgres", url.password)
        return
    bin_dir = find_bin_dir()
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(RUN_AS)
        except KeyError as exc:
            raise PostgresUnavailable(
                f"the tests run as root and PostgreSQL refuses root, but there is no '{RUN_AS}' user; "
                f"install the package ({POSTGRES_INSTALL}) or run the tests as another user"
            ) from exc
        run_as = RUN_AS
    # not under pytest's tmp_path: its parents are private to the test user, the server's user must enter
    root = Path(tempfile.mkdtemp(prefix="botyard-pg-"))
    data_dir = root / "data"
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    server = None
    try:
        subprocess.run(
            _as_server_user([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "-A", "trust",
                             "-E", "UTF8", "--no-sync", "--no-instructions"], run_as),
            check=True, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        for attempt in range(3):  # a free port can be taken between choosing and binding it
            port = free_port()
            options = (
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB"
            )
            result = subprocess.run(
                _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(root / "postgres.log"),
                                 "-o", options, "-w", "-t", str(int(start_timeout)), "start"], run_as),
                capture_output=True, text=True, timeout=start_timeout + 30,
            )  # fmt: skip
            if result.returncode == 0:
                server = PostgresServer("127.0.0.1", port, data_dir=data_dir, run_as=run_as, bin_dir=bin_dir)
                break
        if server is None:
            log = (root / "postgres.log").read_text(errors="replace")[-2000:] if (root / "postgres.log").exists() else ""
            raise PostgresUnavailable(f"pg_ctl start failed: {result.stderr.strip()}\n{log}")
        yield server
    except subprocess.CalledProcessError as exc:
        raise PostgresUnavailable(f"initdb failed: {exc.stderr.strip()}") from exc
    finally:
        if server is not None:
            subprocess.run(
                _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop"], run_as),
                capture_output=True, timeout=60,
            )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
