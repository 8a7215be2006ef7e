"""A real PostgreSQL server for tests: Debian's `postgresql` binaries, a cluster initialised in a temp
directory, listening on a unix socket only, run as a non-root user (PostgreSQL refuses to run as root).

Skipped, with the reason, where the binaries are absent or the server does not start.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL_HINT = "install Debian's postgresql package (apt-get install postgresql), as scripts/setup.sh does when root"


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("PostgreSQL cannot run as root and runuser is missing to run it as the postgres user")
    return [runuser, "-u", "postgres", "--", *command]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of an empty database `optuna` on a server started for the session."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip(f"PostgreSQL server binaries (initdb, pg_ctl) not found; {INSTALL_HINT}")
    if os.geteuid() == 0:
        try:
            import pwd

            server_user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip(f"running as root and no postgres user exists to run the server as; {INSTALL_HINT}")
    # Under /tmp, not pytest's tmp_path: that is private to root (0700) and the server user could not enter it.
    root = Path(tempfile.mkdtemp(prefix="edgetune-postgres-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        for path in (root, sockets):
            os.chown(path, server_user.pw_uid, server_user.pw_gid)
    port = _free_port()
    try:
        initialised = subprocess.run(_as_server_user([initdb, "-D", str(data), "-A", "trust", "-U", "postgres",
                                                      "--no-sync"]), capture_output=True, text=True, timeout=120)
        if initialised.returncode != 0:
            pytest.skip(f"initdb failed: {initialised.stderr.strip().splitlines()[-1:]}")
        options = f"-k {sockets} -p {port} -c listen_addresses='' -c fsync=off"
        started = subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"),
                                                  "-w", "-t", "60", "start"]),
                                 capture_output=True, text=True, timeout=120)
        if started.returncode != 0:
            log = (root / "log").read_text(errors="replace") if (root / "log").exists() else started.stderr
            pytest.skip(f"the PostgreSQL server did not start: {log.strip().splitlines()[-1:]}")
        import psycopg2

        connection = psycopg2.connect(dbname="postgres", user="postgres", host=str(sockets), port=port)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE optuna")
        connection.close()
        yield f"postgresql+psycopg2://postgres@/optuna?host={sockets}&port={port}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
