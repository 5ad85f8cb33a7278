"""Helpers for the scale-out tests: worker pools, live worker counts, several web servers."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import requests
from rq import Worker

from scripts.services import ManagedProcess, free_port, wait_for_port
from tests.harness import ROOT, Stack, wait_until


def live_workers(stack: Stack) -> list[Worker]:
    """The workers registered in the deployment's Redis (what `rq info` and the dashboard show)."""
    return Worker.all(connection=stack.redis.client())


def children(pid: int) -> list[int]:
    """PIDs of a process's direct children (a pool's members, a worker's work horse)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def start_pool(stack: Stack, processes: int, cwd: Path = ROOT, python: str = sys.executable,
               **env: str) -> ManagedProcess:
    """Start `python -m worker --processes N` and wait until all N members registered in Redis."""
    before = {w.name for w in live_workers(stack)}
    pool = ManagedProcess([python, "-m", "worker", "--processes", str(processes)],
                          stack.workdir / f"pool-{len(stack.workers)}.log",
                          env=stack.env(**env), cwd=str(cwd)).start()
    stack.workers.append(pool)  # stopped (with its process group) by stack.stop()
    try:
        wait_until(lambda: len(set(children(pool.pid)) & {w.pid for w in live_workers(stack)
                                                          if w.name not in before}) == processes,
                   60, f"{processes} pool members to register in Redis")
    except AssertionError:
        raise AssertionError("pool did not start:\n" + pool.tail())
    return pool


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False



NGINX = "/usr/sbin/nginx"
NGINX_SAMPLE = ROOT / "deploy" / "nginx.conf"
UPSTREAM_LINE = re.compile(r"^(\s*)server 127\.0\.0\.1:\d+( [^;]*)?;\n", re.M)


def render_nginx_site(upstream_ports: list[int], listen_port: int) -> str:
    """deploy/nginx.conf with our upstream ports and listen address, every other line as shipped."""
    sample = NGINX_SAMPLE.read_text()
    first = UPSTREAM_LINE.search(sample)
    assert first, "deploy/nginx.conf lists its upstream servers as `server 127.0.0.1:PORT ...;`"
    indent, params = first.group(1), first.group(2) or ""
    servers = "".join(f"{indent}server 127.0.0.1:{port}{params};\n" for port in upstream_ports)
    site = UPSTREAM_LINE.sub("", sample)
    site = site[:first.start()] + servers + site[first.start():]
    assert re.search(r"^\s*listen 80;$", site, re.M), "deploy/nginx.conf listens on 80"
    return re.sub(r"^(\s*)listen 80;$", rf"\g<1>listen 127.0.0.1:{listen_port};", site, flags=re.M)


class Nginx:
    """Debian's nginx, unprivileged style: its own prefix, pid, logs and temp paths, in the foreground."""

    def __init__(self, workdir: Path, upstream_ports: list[int]) -> None:
        self.dir = workdir / "nginx"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        (self.dir / "site.conf").write_text(render_nginx_site(upstream_ports, self.port))
        d = self.dir
        temp = "\n".join(f"    {kind}_temp_path {d}/{kind}_temp;" for kind in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        # As root nginx would hand its workers to `nobody`, who cannot write our temp dirs.
        user = "user root;\n" if os.geteuid() == 0 else ""
        (d / "nginx.conf").write_text(f"""{user}daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format upstreams '$remote_addr $upstream_addr "$request" $status';
    access_log {d}/access.log upstreams;
{temp}
    include {d}/site.conf;
}}
""")
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """The load balancer's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def command(self, *extra: str) -> list[str]:
        """nginx with our prefix and config."""
        return [NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), *extra]

    def start(self) -> "Nginx":
        """Check the config (`nginx -t`), start nginx and wait for its port."""
        check = subprocess.run(self.command("-t"), capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.process = ManagedProcess(self.command(), self.dir / "stdout.log").start()
        wait_for_port("127.0.0.1", self.port, 10)
        return self

    def stop(self) -> None:
        """Stop nginx (master and workers: its process group)."""
        if self.process:
            self.process.stop()

    def upstream_of(self, path: str = "/auth/login") -> int:
        """The upstream port nginx picks for this machine's address (ip_hash), seen in its access log."""
        marker = f"/auth/login?probe={uuid.uuid4().hex}" if path == "/auth/login" else path
        requests.get(self.url + marker, timeout=10)

        def logged() -> int | None:
            for line in (self.dir / "access.log").read_text().splitlines():
                if marker in line:
                    return int(line.split()[1].rsplit(":", 1)[1])
            return None

        return wait_until(logged, 10, "the probe in nginx's access log")
