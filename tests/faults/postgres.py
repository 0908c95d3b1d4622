"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries, a cluster in a temporary
folder, run as an unprivileged user (postgres refuses root), on 127.0.0.1 at a free port and a socket in
that folder; stopped and removed at the end. Without the binaries or the driver, its tests skip."""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    """Debian keeps the server's programs in /usr/lib/postgresql/VERSION/bin, off the PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    on_path = shutil.which("initdb")
    return found[-1].parent if found else (Path(on_path).parent if on_path else None)


def _server_user() -> str:
    """Root cannot run the server: Debian's `postgres` account, or `nobody`; anyone else runs it as themselves."""
    if os.geteuid() != 0:
        return getpass.getuser()
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name).pw_name
        except KeyError:
            continue
    pytest.skip("PostgreSQL cannot run as root and there is no postgres or nobody account")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A cluster of its own (see the module's docstring) that a test may stop and start again: `url` is an
    SQLAlchemy URL (psycopg driver) of its `postgres` database, with a password that the server, trusting every
    local connection, does not check (so that tests can look for it where it must not be)."""

    PASSWORD = "pw-S3cret-7f3a"

    def __init__(self) -> None:
        pytest.importorskip("psycopg", reason="the PostgreSQL driver (pip install 'mnistlab[test]') is not installed")
        self.bin_dir = _bin_dir()
        if self.bin_dir is None:
            pytest.skip(
                "PostgreSQL's server programs are absent (Debian: apt-get install postgresql; "
                "scripts/test.sh does it as root)"
            )
        self.user = _server_user()
        self.home = Path(tempfile.mkdtemp(prefix="mnistlab-pg-"))  # in /tmp: pytest's folders are root's alone
        shutil.chown(self.home, self.user)
        self.port = _free_port()
        self.run("initdb", "-D", str(self.home / "data"), "-U", "mnistlab", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()

    def url(self, database: str = "postgres", password: bool = False) -> str:
        who = f"mnistlab:{self.PASSWORD}" if password else "mnistlab"
        return f"postgresql+psycopg://{who}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        self.run(
            "psql",
            "-h",
            str(self.home),
            "-p",
            str(self.port),
            "-U",
            "mnistlab",
            "-d",
            "postgres",
            "-c",
            f"CREATE DATABASE {name}",
        )

    def run(self, *args: str) -> None:
        p = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            user=self.user,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 0, (args, p.stdout[-1000:], p.stderr[-1000:])

    def start(self) -> None:
        self.run(
            "pg_ctl",
            "-D",
            str(self.home / "data"),
            "-l",
            str(self.home / "server.log"),
            "-w",
            "start",
            "-o",
            f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off",
        )

    def stop(self) -> None:
        if (self.home / "data" / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.home / "data"), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def postgres_url(postgres_server: PostgresServer) -> str:
    """An SQLAlchemy URL (psycopg driver) of a fresh, empty database on a server of its own."""
    return postgres_server.url()
