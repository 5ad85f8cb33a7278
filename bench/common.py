"""What every benchmark shares: a private deployment, logged-in users, socket client processes,
an event publisher on the app's own Socket.IO channel, and medians/percentiles."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa

from tests.harness import PASSWORD, ROOT, Browserless, RedisServer, SmtpServer, Stack, migrate, new_database_url


# The product's sweep and job-monitoring timers (config.py's defaults), not the tests' 2 s: a
# benchmark measures the deployment an operator runs. 300 exports of 100 posts, 2 workers, 2 rounds
# alternated: 27.2, 26.0, 26.1, 24.5 jobs/s with the tests' timers; 26.5, 26.2, 26.0, 26.3 with these.
PRODUCT_TIMERS = {"SWEEP_INTERVAL": "10", "SWEEP_ENQUEUE_GRACE": "30", "JOB_MONITORING_INTERVAL": "5"}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def median(values: list[float]) -> float:
    """Median, NaN for no values."""
    return statistics.median(values) if values else float("nan")


@contextmanager
def deployment(db: str = "sqlite", workers: int = 1, webs: int = 1, **env: str) -> Iterator[Stack]:
    """A private stack (Redis, SMTP, web servers, workers) on a fresh migrated database."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{db}-"))
    url, drop = new_database_url(db, workdir)
    migrate(url)
    redis_server = RedisServer(workdir / "redis").start()
    smtp = SmtpServer().start()
    stack = Stack(workdir, url, redis_server, smtp, extra_env={
        # A benchmark registers and logs in many users from one address, on purpose.
        "REGISTER_RATE_LIMIT": "1000000 per hour", "LOGIN_RATE_LIMIT": "1000000 per minute",
        "MAX_SOCKETS_PER_USER": "1000", "MAX_CONNECTIONS": "20000", **PRODUCT_TIMERS, **env})
    try:
        for _ in range(webs):
            stack.start_web()
        for _ in range(workers):
            stack.start_worker()
        yield stack
    finally:
        stack.stop()
        smtp.stop()
        redis_server.stop()
        drop()


def make_users(stack: Stack, count: int, prefix: str = "b") -> list[tuple[int, str]]:
    """COUNT users created in the database and logged in over HTTP: [(user id, Cookie header)]."""
    from werkzeug.security import generate_password_hash

    from app import create_app
    from app.extensions import db
    from app.models import User

    app = create_app(SQLALCHEMY_DATABASE_URI=stack.database_url, SECRET_KEY="bench", SOCKETIO_MESSAGE_QUEUE=None)
    hashed = generate_password_hash(PASSWORD, "pbkdf2:sha256:1000")
    names = [f"{prefix}{i}_{os.getpid()}" for i in range(count)]
    with app.app_context():
        db.session.add_all([User(username=n, email=f"{n}@example.com", password_hash=hashed) for n in names])
        db.session.commit()
        ids = dict(db.session.execute(sa.select(User.username, User.id).where(User.username.in_(names))).all())
        db.session.remove()
        db.engine.dispose()

    def login(name: str) -> tuple[int, str]:
        user = Browserless(stack.url, name).login()
        return ids[name], user.cookie_header()

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(login, names))


def cookies_file(stack: Stack, users: list[tuple[int, str]], name: str) -> Path:
    """A file of Cookie headers, one a line, for bench.eio_client."""
    path = stack.workdir / name
    path.write_text("\n".join(cookie for _, cookie in users) + "\n")
    return path


class Clients:
    """A bench.eio_client process: N sockets, held until `release()`."""

    def __init__(self, stack: Stack, cookies: Path, sockets: int, rate: float = 0, measure: bool = False,
                 port: int | None = None, record: bool = False, count: bool = False) -> None:
        cmd = [sys.executable, "-m", "bench.eio_client", f"http://127.0.0.1:{port or stack.ports[0]}",
               str(cookies), "--sockets", str(sockets), "--rate", str(rate)]
        if measure:
            cmd.append("--measure")
        if record:
            cmd.append("--record")
        if count:
            cmd.append("--count")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def wait_connected(self, timeout: float = 300) -> int:
        """Block until every socket tried to connect; the number that did."""
        line = _readline(self.proc, timeout)
        return json.loads(line)["ok"]

    def release(self, timeout: float = 120) -> dict[str, Any]:
        """Tell the process to disconnect all; its report."""
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        line = _readline(self.proc, timeout)
        self.proc.wait(timeout)
        return json.loads(line)

    def kill(self) -> None:
        """Stop the process if it is still running."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    """One stdout line of a child, or an error after timeout."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        raise RuntimeError(f"client process gave no answer within {timeout} s (rc {proc.poll()})")
    return result[0]


class Publisher:
    """Publishes `task_progress` events at a steady rate on the app's Socket.IO Redis channel, as a
    worker does; each payload carries `sent` (time.monotonic()) so the client measures latency."""

    def __init__(self, redis_url: str, user_id: int, rate: float = 100) -> None:
        import socketio

        self.manager = socketio.RedisManager(redis_url, channel="flask-socketio", write_only=True)
        self.user_id, self.rate = user_id, rate
        # A task id of its own: the relay drops an event whose seq is not newer than one it already
        # relayed for the same task (app/socket_queue.py), so a second run reusing one would see nothing.
        self.task_id = f"bench-{uuid.uuid4().hex}"
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        period = 1 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            payload = {"task_id": self.task_id, "name": "bench", "description": "bench", "progress": 1,
                       "status": "started", "message": None, "download_url": None, "sent": time.monotonic(),
                       "seq": self.sent}
            self.manager.emit("task_progress", payload, room=f"user:{self.user_id}", namespace="/")
            self.sent += 1
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))

    def start(self) -> "Publisher":
        """Begin publishing."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop publishing."""
        self._stop.set()
        self._thread.join()


def blast(redis_url: str, user_ids: list[int], events: int, batch: int = 100) -> float:
    """Publish `events` task_progress events round-robin to the users' rooms, as many workers at once
    would: python-socketio's own RedisManager builds each message as a worker's does, and the
    PUBLISHes go out `batch` per round trip. The seconds it took.

    Published one round trip at a time, one process was the bottleneck, not the relays: the events/s
    the clients received matched its own rate (19.9k/s beside 1 web process, 5.0k/s beside 2, whose
    CPU it then shared), so the figure measured the publisher.
    """
    import socketio

    manager = socketio.RedisManager(redis_url, channel="flask-socketio", write_only=True)
    manager._redis_connect()
    connection = manager.redis
    task_id = f"bench-{uuid.uuid4().hex}"  # see Publisher: a reused task id's older seqs are dropped
    began = time.monotonic()
    for start in range(0, events, batch):
        manager.redis = pipeline = connection.pipeline(transaction=False)  # what _publish calls publish on
        for seq in range(start, min(start + batch, events)):
            payload = {"task_id": task_id, "name": "bench", "description": "bench", "progress": 1,
                       "status": "started", "message": None, "download_url": None, "seq": seq}
            manager.emit("task_progress", payload, room=f"user:{user_ids[seq % len(user_ids)]}", namespace="/")
        pipeline.execute()
    elapsed = time.monotonic() - began
    connection.close()
    return elapsed


def process_kib(pid: int, field: str = "VmRSS") -> int:
    """A field of /proc/<pid>/status in KiB (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
