"""A throwaway PostgreSQL server for tests: Debian's server binaries (``make postgres``), a new
cluster in a temporary folder, listening on 127.0.0.1 on a free port, password authentication."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server(password: str, databases: list[str]) -> Iterator[dict]:
    """Yields {host, port, user, password, folder}; the databases exist. Runs the server as the
    ``postgres`` system user when this process is root (PostgreSQL refuses to run as root), in a
    folder of its own under the system temp dir (that user cannot enter pytest's root-only ones)."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (make postgres installs Debian's postgresql)")
    as_root = os.geteuid() == 0
    if as_root:
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
    folder = Path(tempfile.mkdtemp(prefix="sluice-pg-"))
    data, sock = folder / "data", folder / "sock"
    sock.mkdir()
    pwfile = folder / "pw"
    pwfile.write_text(password + "\n")
    if as_root:
        for p in (folder, sock, pwfile):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(folder, 0o700)

    def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
        full = (["runuser", "-u", "postgres", "--"] if as_root else []) + list(cmd)
        return subprocess.run(full, capture_output=True, text=True, timeout=120, **kw)

    out = run(str(bindir / "initdb"), "-D", str(data), "-U", "sluice", "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8")
    assert out.returncode == 0, out.stderr
    port = _free_port()
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    out = run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(folder / "server.log"), "-w", "start")
    assert out.returncode == 0, out.stderr + (folder / "server.log").read_text(errors="replace")
    try:
        import psycopg

        conn = psycopg.connect(host="127.0.0.1", port=port, user="sluice", password=password, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            for db in databases:
                cur.execute(f'CREATE DATABASE "{db}"')
        conn.close()
        yield {"host": "127.0.0.1", "port": port, "user": "sluice", "password": password, "folder": folder}
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)
