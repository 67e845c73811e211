"""A throw-away PostgreSQL 15 server for the test run: `initdb` in a temporary directory, a
Unix socket only (no TCP), torn down afterwards. Started only when
`NEWSROOM_TEST_DATABASE=postgresql` (`make test` runs the storage and API tests that way)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

PG_BIN = Path(os.environ.get("NEWSROOM_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def wanted() -> bool:
    return os.environ.get("NEWSROOM_TEST_DATABASE", "sqlite") == "postgresql"


class TemporaryPostgres:
    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(
                f"PostgreSQL 15 server binaries not found in {PG_BIN}: "
                "`make test` installs Debian's postgresql-15, or set NEWSROOM_TEST_PG_BIN"
            )
        self.root = Path(tempfile.mkdtemp(prefix="newsroom-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.socket_dir.mkdir()
        self.port = 5432 + os.getpid() % 1000
        # initdb refuses to run as root: run the server as the `postgres` system user then.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket_dir, "postgres")
            os.chmod(self.root, 0o755)

    def _run(self, *command: str) -> None:
        subprocess.run([*self._as, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "newsroom",
            "--no-sync",
        )
        self.resume()

    def pause(self) -> None:
        """Stop the server, keeping its data (an outage); `resume()` brings it back."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses='' "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "start",
        )

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        self._run(
            str(PG_BIN / "createdb"),
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            "newsroom",
            name,
        )
        return f"postgresql+psycopg://newsroom@/{name}?host={self.socket_dir}&port={self.port}"

    def stop(self) -> None:
        try:
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
