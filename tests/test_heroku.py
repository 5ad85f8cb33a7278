"""Heroku-style configuration: `postgres://` DATABASE_URL, TLS Redis (`rediss://`), and the Procfile's
release step (`flask db upgrade`) migrating a fresh database. Real processes, PostgreSQL."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import redis

from scripts.services import ManagedProcess, redis_server_binary, wait_for_port
from tests.harness import ROOT, RedisServer, SmtpServer, Stack, assert_well_ordered, new_database_url, new_user


class TlsRedisServer(RedisServer):
    """A redis-server that speaks TLS only (a self-signed certificate), like a hosted `rediss://` Redis."""

    def start(self) -> "TlsRedisServer":
        """Make a certificate, start the server on a TLS port (plain TCP off: `--port 0`), wait for it."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        cert, key = self.workdir / "redis.crt", self.workdir / "redis.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        command = [redis_server_binary(), "--bind", "127.0.0.1", "--port", "0", "--tls-port", str(self.port),
                   "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                   "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.process = ManagedProcess(command, self.workdir / "redis.log").start()
        wait_for_port("127.0.0.1", self.port, 10)
        # Hosted Redis often has a certificate no CA signed: redis-py's URL option for that.
        self.url = f"rediss://127.0.0.1:{self.port}/0?ssl_cert_reqs=none"
        return self

    def client(self) -> redis.Redis:
        """A TLS client of this server."""
        return redis.Redis.from_url(self.url)


@pytest.fixture
def heroku_stack(tmp_path: Path) -> Iterator[Stack]:
    """A deployment configured the Heroku way: postgres:// and rediss:// URLs, migrated by the release step."""
    url, drop = new_database_url("postgresql", tmp_path)
    heroku_url = url.replace("postgresql://", "postgres://", 1)
    release(heroku_url)
    stack = Stack(tmp_path, heroku_url, TlsRedisServer(tmp_path / "redis").start(), SmtpServer().start())
    try:
        yield stack
    finally:
        stack.stop()
        stack.smtp.stop()
        stack.redis.stop()
        drop()


def release(database_url: str) -> None:
    """Run the Procfile's `release:` command as Heroku does before a new release starts."""
    (line,) = [ln for ln in (ROOT / "Procfile").read_text().splitlines() if ln.startswith("release:")]
    assert line.endswith("flask db upgrade"), line
    env = {k: v for k, v in os.environ.items() if k != "FLASK_APP"}
    env.update(DATABASE_URL=database_url, PYTHONWARNINGS="ignore::DeprecationWarning",
               PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    done = subprocess.run(line.split(":", 1)[1].strip(), shell=True, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_export_over_tls_redis_and_a_postgres_url(heroku_stack: Stack) -> None:
    """Web and worker on rediss:// and postgres://: the export runs, its events arrive, the mail is sent."""
    stack = heroku_stack
    stack.start_web()
    stack.start_worker()
    user = new_user(stack, posts=300)
    tab = user.socket()
    try:
        task = user.export()
        assert tab.terminal(task)["status"] == "finished"
        assert_well_ordered(tab.of(task))
        assert stack.smtp.wait_for(user.email).attachment("posts.json")
    finally:
        tab.close()
