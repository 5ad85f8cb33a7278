"""deploy/supervisord.conf under a real `supervisord -n`: numprocs web servers and workers, a clean stop."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import requests

from scripts.services import free_port, port_open
from tests.deploy_harness import children, live_workers, pid_alive
from tests.harness import ROOT, RedisServer, SmtpServer, Stack, migrate, new_database_url, wait_until
from tests.test_stack import checkout, descendants

SUPERVISORD = Path(sys.executable).parent / "supervisord"


def two_free_ports() -> int:
    """A port p with p and p + 1 both free (the config's web processes take consecutive ports)."""
    while True:
        port = free_port()
        if port < 65535 and not port_open("127.0.0.1", port + 1):
            return port


def test_supervisord_runs_web_and_workers_and_stops_clean(tmp_path: Path) -> None:
    """Two workers register in Redis, both web processes answer; SIGTERM leaves no process behind."""
    tree = checkout(tmp_path / "checkout")
    (tree / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (tree / "var" / "log").mkdir(parents=True)
    conf = tree / "deploy" / "supervisord.conf"
    base = two_free_ports()
    text, count = re.subn(r"^numprocs_start=5000$", f"numprocs_start={base}", conf.read_text(), flags=re.M)
    assert count == 1
    conf.write_text(text)

    url, drop = new_database_url("postgresql", tmp_path)
    migrate(url)
    redis_server = RedisServer(tmp_path / "redis").start()
    smtp = SmtpServer().start()
    stack = Stack(tmp_path, url, redis_server, smtp)
    log = open(tmp_path / "supervisord.out", "wb")
    proc = subprocess.Popen([str(SUPERVISORD), "-n", "-c", str(conf)], cwd=tree, env=stack.env(),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    seen: set[int] = set()
    try:
        def workers_up() -> bool:
            ours = {p.pid for p in descendants(proc.pid)}
            seen.update(ours)
            return len([w for w in live_workers(stack) if w.pid in ours]) == 2

        wait_until(workers_up, 60, "2 workers registered in Redis")
        for port in (base, base + 1):
            wait_until(lambda: _answers(f"http://127.0.0.1:{port}/auth/login"), 60, f"web-{port} to answer")
        seen.update(p.pid for p in descendants(proc.pid))
        assert len(children(proc.pid)) == 4, "2 web + 2 worker processes"
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        wait_until(lambda: not any(pid_alive(p) for p in seen), 10, "every process to exit")
        assert live_workers(stack) == [], "the workers deregistered (a warm shutdown)"
        assert not port_open("127.0.0.1", base) and not port_open("127.0.0.1", base + 1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in seen:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
        smtp.stop()
        redis_server.stop()
        drop()
        shutil.rmtree(tree, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
