"""A throwaway PostgreSQL cluster for the tests: initdb into a temporary folder, a server on a free local port,
one database, a password with characters that need escaping; stopped and removed after the session.

Skips (with the reason) only when the server binaries are absent; ``AUTOPEFT_REQUIRE_POSTGRES=1`` (set by
``.ci/run``, which installs them) turns that skip into a failure.
"""
from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres`` (Debian keeps them out of PATH)."""
    candidates = [os.environ.get("AUTOPEFT_PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(os.path.realpath(initdb)).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "postgres").is_file():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """``postgresql://autopeft:<password>@127.0.0.1:<port>/autopeft_test`` of a fresh server."""
    bindir = find_bindir()
    if bindir is None:
        reason = "PostgreSQL server binaries not found (apt-get install postgresql)"
        if os.environ.get("AUTOPEFT_REQUIRE_POSTGRES"):
            pytest.fail(reason + "; AUTOPEFT_REQUIRE_POSTGRES is set")
        pytest.skip(reason)
    # postgres refuses to run as root: the cluster belongs to the 'postgres' user when we are root
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="autopeft-pg-"))
    if as_user:
        shutil.chown(root, "postgres")
    password = f"s3cret@{secrets.token_hex(6)}"  # an '@' to check that masking copes with escaped passwords
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    if as_user:
        shutil.chown(pwfile, "postgres")
    data, port = root / "data", _free_port()

    def run(*cmd: str) -> None:
        proc = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: {proc.stdout[-1000:]} {proc.stderr[-1000:]}")

    run(str(bindir / "initdb"), "-D", str(data), "-U", "autopeft", f"--pwfile={pwfile}", "--auth=scram-sha-256",
        "-E", "UTF8", "--no-sync")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "start", "-o",
        f"-p {port} -h 127.0.0.1 -k {root} -F -c max_connections=100")
    try:
        import psycopg

        for attempt in range(50):
            try:
                with psycopg.connect(host="127.0.0.1", port=port, user="autopeft", password=password,
                                     dbname="postgres", autocommit=True) as conn:
                    conn.execute("CREATE DATABASE autopeft_test")
                break
            except psycopg.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.2)
        yield f"postgresql://autopeft:{quote(password, safe='')}@127.0.0.1:{port}/autopeft_test"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_url):
    """A fresh, empty database on the session's server for one test; its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    name = f"t_{secrets.token_hex(4)}"
    with psycopg.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                         dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + "/" + name
