"""Real parts for pipeline tests: a private Redis, the web server, RQ workers, an SMTP server,
logged-in HTTP sessions and Socket.IO clients. Nothing here is a fake."""
from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import redis
import requests
import engineio
import sqlalchemy as sa
import socketio
from aiosmtpd.controller import Controller
from rq import Worker

from config import normalize_database_url
from scripts.services import ManagedProcess, free_port, redis_command, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = ("finished", "failed", "canceled")
PASSWORD = "correct horse battery"


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll predicate until it returns something truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class RedisServer:
    """A private redis-server on a free port that a test may stop and start."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: ManagedProcess | None = None

    def start(self) -> "RedisServer":
        """Start (or restart) the server and wait for its port."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(redis_command(self.port, self.workdir), self.workdir / "redis.log").start()
        wait_for_port("127.0.0.1", self.port, 10)
        return self

    def stop(self) -> None:
        """Stop the server (its data is gone: no persistence, as in production's embedded one)."""
        if self.process:
            self.process.stop()

    def client(self) -> redis.Redis:
        """A client of this server."""
        return redis.Redis.from_url(self.url)


@dataclass
class Mail:
    """One message the SMTP server received."""

    rcpt: list[str]
    message: email.message.EmailMessage

    def attachment(self, name: str) -> tuple[str, bytes] | None:
        """(content type, bytes) of the named attachment, or None."""
        for part in self.message.iter_attachments():
            if part.get_filename() == name:
                return part.get_content_type(), part.get_payload(decode=True)
        return None

    def text(self) -> str:
        """The plain-text body."""
        return self.message.get_body(("plain",)).get_content()


class SmtpServer:
    """aiosmtpd on a free port, keeping what it receives; refuses recipients containing '+refuse'.

    It advertises SMTPUTF8 (addresses like ü@example.com) unless started with smtputf8=False.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.smtputf8 = True
        self._released = threading.Event()  # DATA is answered only while this is set (see hold())
        self._released.set()
        self.held = 0  # messages waiting for release()
        self.mails: list[Mail] = []
        self._cond = threading.Condition()
        self.controller: Controller | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd API)
        """Refuse the marked addresses, accept the rest."""
        if "+refuse" in address:
            return "550 5.1.1 Mailbox refused by test server"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        """Keep the parsed message (once released, if the test holds the server)."""
        if not self._released.is_set():
            with self._cond:
                self.held += 1
                self._cond.notify_all()
            while not self._released.is_set():  # the sender waits for our answer meanwhile
                await asyncio.sleep(0.05)
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self._cond:
            self.mails.append(Mail(list(envelope.rcpt_tos), msg))
            self._cond.notify_all()
        return "250 Message accepted for delivery"

    def start(self, smtputf8: bool | None = None) -> "SmtpServer":
        """Listen on 127.0.0.1:port (again, after stop(), with or without SMTPUTF8)."""
        if smtputf8 is not None:
            self.smtputf8 = smtputf8
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, data_size_limit=0,
                                     enable_SMTPUTF8=self.smtputf8)
        self.controller.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused from now on."""
        if self.controller:
            self.controller.stop()
            self.controller = None

    def hold(self) -> None:
        """From now on, leave each message's DATA unanswered until release(): the sender waits."""
        self._released.clear()

    def release(self) -> None:
        """Answer the held messages (and every later one) at once."""
        self._released.set()

    def wait_held(self, timeout: float = 30) -> None:
        """Wait until a sender is waiting on a held message."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.held > 0, timeout):
                raise AssertionError(f"no message was held within {timeout} s")

    def wait_for(self, rcpt: str, timeout: float = 30) -> Mail:
        """The first mail to rcpt, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for mail in self.mails:
                    if rcpt in mail.rcpt:
                        return mail
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no mail to {rcpt} within {timeout} s")
                self._cond.wait(left)

    def to(self, rcpt: str) -> list[Mail]:
        """Every mail received for rcpt so far."""
        with self._cond:
            return [m for m in self.mails if rcpt in m.rcpt]


@dataclass
class Stack:
    """Web server(s), workers, Redis and SMTP of one test deployment."""

    workdir: Path
    database_url: str
    redis: RedisServer
    smtp: SmtpServer
    extra_env: dict[str, str] = field(default_factory=dict)
    webs: list[ManagedProcess] = field(default_factory=list)
    workers: list[ManagedProcess] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    @property
    def export_dir(self) -> Path:
        """Where exports are written."""
        return self.workdir / "exports"

    def env(self, **more: str) -> dict[str, str]:
        """The environment every process of this deployment shares."""
        env = dict(os.environ)
        for key in ("FLASK_APP", "SOCKETIO_ASYNC_MODE", "MAIL_SERVER", "PORT"):
            env.pop(key, None)
        env.update({
            "SECRET_KEY": "test-" + self.workdir.name,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url,
            "TASK_QUEUE": "microblog-tasks",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(self.smtp.port),
            "MAIL_TIMEOUT": "5",
            "EXPORT_DIR": str(self.export_dir),
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",  # fast hashes: tests log in a lot
            "SWEEP_INTERVAL": "2",
            "SWEEP_ENQUEUE_GRACE": "5",
            "JOB_MONITORING_INTERVAL": "2",
            "PYTHONUNBUFFERED": "1",
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
            # Tests sign up and export a lot from 127.0.0.1; tests of the limits set their own.
            "REGISTER_RATE_LIMIT": "10000 per hour",
            "EXPORT_RATE_LIMIT": "10000 per hour",
            "IMPORT_RATE_LIMIT": "10000 per hour",
        })
        if self.ports:  # links in emails point at the first web server
            env["PUBLIC_URL"] = self.url
        env.update(self.extra_env)
        env.update(more)
        return env

    @property
    def url(self) -> str:
        """Base URL of the first web server."""
        return f"http://127.0.0.1:{self.ports[0]}"

    def start_web(self, port: int | None = None, **env: str) -> ManagedProcess:
        """Start `python run.py` on a port and wait until it serves pages (env: this process only)."""
        port = port or free_port()
        web = ManagedProcess([sys.executable, "run.py"], self.workdir / f"web-{port}.log",
                             env=self.env(PORT=str(port), PUBLIC_URL=f"http://127.0.0.1:{port}", **env),
                             cwd=str(ROOT)).start()
        try:
            wait_until(lambda: _answers(f"http://127.0.0.1:{port}/auth/login"), 30, f"web server on {port}")
        except AssertionError:
            raise AssertionError("web server did not start:\n" + web.tail())
        if port not in self.ports:
            self.ports.append(port)
        web.port = port
        self.webs.append(web)
        return web

    def restart_web(self, web: ManagedProcess) -> ManagedProcess:
        """Crash a web server (SIGKILL) and start a new one on its port, as a supervisor would."""
        web.kill()
        self.webs.remove(web)
        return self.start_web(web.port)

    def restart_worker(self, worker: ManagedProcess) -> ManagedProcess:
        """Crash a worker (SIGKILL; its work horse dies with it) and start a new one."""
        worker.kill()
        self.workers.remove(worker)
        return self.start_worker()

    def current_job(self, worker: ManagedProcess) -> str | None:
        """The id of the job a worker says it runs (RQ keeps this in Redis, also after a crash).

        By the RQ name the worker logged, not through RQ's list of workers: a worker that lived
        through a Redis restart is missing from that list (its registration went with the data),
        while its work horse still records the job it runs on the worker's key.
        """
        names = re.findall(r"Worker ([0-9a-f]{32}): ", worker.log_path.read_text(errors="replace"))
        try:
            job = self.redis.client().hget(f"rq:worker:{names[-1]}", "current_job") if names else None
        except redis.exceptions.RedisError:
            return None
        return job.decode() if job else None

    def start_worker(self, **env: str) -> ManagedProcess:
        """Start `python -m worker` and wait until it registers in Redis (env: this process only)."""
        worker = ManagedProcess([sys.executable, "-m", "worker"],
                                self.workdir / f"worker-{len(list(self.workdir.glob('worker-*.log')))}.log",
                                env=self.env(**env), cwd=str(ROOT)).start()
        connection = self.redis.client()
        try:
            wait_until(lambda: any(w.pid == worker.pid for w in Worker.all(connection=connection)), 30,
                       "the worker to register in Redis")
        except AssertionError:
            raise AssertionError("worker did not start:\n" + worker.tail())
        self.workers.append(worker)
        return worker

    def release(self, task_id: str, percent: int = 100) -> None:
        """Let a held export (TESTING_JOBS=1, tests/jobs.py) advance up to `percent`; 100 lets it finish."""
        from tests.jobs import release

        release(self.export_dir, task_id, percent)

    def stop(self) -> None:
        """Stop every process of the deployment."""
        for proc in self.workers + self.webs:
            proc.stop()

    def logs(self) -> str:
        """Tails of every log, for a failing test's report."""
        return "\n".join(f"--- {p.log_path.name}\n{p.tail()}" for p in self.webs + self.workers)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


class Browserless:
    """A user driving the site over HTTP (requests) and Socket.IO (python-socketio)."""

    def __init__(self, base_url: str, username: str | None = None) -> None:
        self.base_url = base_url
        self.username = username or "u" + uuid.uuid4().hex[:10]
        self.email = f"{self.username}@example.com"
        self.http = requests.Session()

    def csrf(self) -> str:
        """A CSRF token for this session (the login page, or home once logged in)."""
        page = self.http.get(self.base_url + "/auth/login", timeout=30)
        return CSRF_META.search(page.text).group(1)

    def post(self, path: str, data: dict | None = None, **kwargs: Any) -> requests.Response:
        """POST a form with this session's CSRF token."""
        kwargs.setdefault("timeout", 30)  # a crashed server must not hang a test
        return self.http.post(self.base_url + path, data={"csrf_token": self.csrf(), **(data or {})}, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET a page or API route."""
        kwargs.setdefault("timeout", 30)
        return self.http.get(self.base_url + path, **kwargs)

    def register(self, email: str | None = None) -> "Browserless":
        """Create the account."""
        if email:
            self.email = email
        r = self.post("/auth/register", {"username": self.username, "email": self.email,
                                         "password": PASSWORD, "password2": PASSWORD}, allow_redirects=False)
        assert r.status_code == 302, r.text[:500]
        return self

    def login(self) -> "Browserless":
        """Log in."""
        r = self.post("/auth/login", {"username": self.username, "password": PASSWORD}, allow_redirects=False)
        assert r.status_code == 302, r.text[:500]
        return self

    def cookie_header(self) -> str:
        """The Cookie header a browser of this session would send."""
        return "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)

    def socket(self, **kwargs: Any) -> "Watcher":
        """A connected Socket.IO client carrying this session's cookie."""
        return Watcher(self.base_url, self.cookie_header(), **kwargs)

    def export(self, *, may_fail: bool = False) -> str:
        """Launch an export and return the new task's id (`may_fail`: an export meant to fail may
        already have failed by the time the API is asked)."""
        r = self.post("/export_posts", allow_redirects=False)
        assert r.status_code == 303, r.status_code
        tasks = self.tasks()
        allowed = ("queued", "started", "finished") + (("failed",) if may_fail else ())
        assert tasks and tasks[0]["status"] in allowed, tasks[:1]
        return tasks[0]["task_id"]

    def tasks(self) -> list[dict]:
        """The user's tasks, newest first, from the JSON API."""
        r = self.get("/api/tasks")
        assert r.status_code == 200, r.status_code
        return r.json()["tasks"]


class _InOrderEngineIOClient(engineio.Client):
    """An Engine.IO client that hands Socket.IO events to their handlers in the order they arrived.

    The stock client starts a thread for every message (python-socketio#382: "the handler for
    message N and N+1 may run concurrently"), so two events that arrive together can be recorded
    in either order, and a test of the server's ordering would blame the server for the client.
    Events run in the read loop instead (the Watcher's handler only appends). Every other packet
    keeps its thread: a server's disconnect, for one, joins the read loop it would run in.
    """

    def _receive_packet(self, pkt: engineio.packet.Packet) -> None:
        if pkt.packet_type == engineio.packet.MESSAGE and isinstance(pkt.data, str) \
                and pkt.data.startswith(str(socketio.packet.EVENT)):
            self._trigger_event("message", pkt.data, run_async=False)
        else:
            super()._receive_packet(pkt)


class InOrderClient(socketio.Client):
    """python-socketio's client, recording events in arrival order (see _InOrderEngineIOClient)."""

    def _engineio_client_class(self) -> type[engineio.Client]:
        return _InOrderEngineIOClient


class Watcher:
    """A python-socketio client that records every `task_progress` event it receives, in arrival order."""

    def __init__(self, base_url: str, cookie: str | None, transports: list[str] | None = None,
                 headers: dict[str, str] | None = None, reconnection: bool = True) -> None:
        self.events: list[dict] = []
        self.received_at: dict[int, float] = {}  # id(event) -> monotonic time of receipt
        self.base_url = base_url
        self.opened_at = time.time()
        self._cond = threading.Condition()
        self.client = InOrderClient(reconnection=reconnection, reconnection_delay=0.2,
                                    reconnection_delay_max=1)
        self.client.on("task_progress", self._on_event)
        self.connects = 0
        self.client.on("connect", self._on_connect)
        all_headers = dict(headers or {})
        if cookie:
            all_headers["Cookie"] = cookie
        self.client.connect(base_url, headers=all_headers, transports=transports or ["websocket"], wait_timeout=10)

    def _on_connect(self) -> None:
        with self._cond:
            self.connects += 1
            self._cond.notify_all()

    def _on_event(self, data: dict) -> None:
        with self._cond:
            self.events.append(data)
            self.received_at[id(data)] = time.monotonic()
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 30, what: str = "an event") -> dict:
        """The first recorded event matching predicate, waiting for it if needed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; got {self.events[-5:]}")
                self._cond.wait(left)

    def terminal(self, task_id: str, timeout: float = 60) -> dict:
        """The first terminal event of a task."""
        return self.wait_for(lambda e: e["task_id"] == task_id and e["status"] in TERMINAL, timeout,
                             f"the end of task {task_id}")

    def of(self, task_id: str) -> list[dict]:
        """Every event recorded for a task."""
        with self._cond:
            return [e for e in self.events if e["task_id"] == task_id]

    def close(self) -> None:
        """Disconnect."""
        try:
            self.client.disconnect()
        except Exception:
            pass


def new_database_url(kind: str, tmp: Path) -> tuple[str, Callable[[], None]]:
    """A fresh, empty database of the given kind and a function that removes it."""
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'app.db'}", lambda: None
    if kind == "mysql":
        return _new_mysql_database()
    import psycopg2

    name = "mb_test_" + secrets.token_hex(6)
    admin = psycopg2.connect(os.environ.get("TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1/postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()

    return f"postgresql://postgres@127.0.0.1/{name}", drop


def _new_mysql_database() -> tuple[str, Callable[[], None]]:
    """A fresh MySQL/MariaDB database (utf8mb4) on TEST_MYSQL_HOST (default 127.0.0.1, root)."""
    import pymysql

    host = os.environ.get("TEST_MYSQL_HOST", "127.0.0.1")
    name = "mb_test_" + secrets.token_hex(6)
    admin = pymysql.connect(host=host, user="root", autocommit=True)
    with admin.cursor() as cur:
        # Binary collation: text compares as on PostgreSQL and SQLite (case-sensitive), as the README says.
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")

    def drop() -> None:
        with admin.cursor() as cur:  # open connections would hold DROP on a metadata lock
            cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s", (name,))
            for (thread_id,) in cur.fetchall():
                try:
                    cur.execute(f"KILL {int(thread_id)}")
                except pymysql.err.OperationalError:  # it ended meanwhile
                    pass
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()

    return f"mysql+pymysql://root@{host}:3306/{name}?charset=utf8mb4", drop


def migrate(database_url: str) -> None:
    """Apply the migrations to a database (as `flask db upgrade` does)."""
    import subprocess

    env = dict(os.environ, DATABASE_URL=database_url, FLASK_APP="app:create_app",
               PYTHONWARNINGS="ignore::DeprecationWarning")
    subprocess.run([sys.executable, "-m", "flask", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)


_seed_apps: dict[str, Any] = {}


def seed(database_url: str, username: str, count: int) -> None:
    """Add posts to a user of a running deployment (the bulk path of `flask seed-posts`, in-process)."""
    from app import create_app
    from app.cli import insert_rows
    from app.extensions import db
    from app.models import User

    app = _seed_apps.get(database_url)
    if app is None:
        app = _seed_apps[database_url] = create_app(SQLALCHEMY_DATABASE_URI=database_url, SECRET_KEY="seed",
                                                     SOCKETIO_MESSAGE_QUEUE=None)
    with app.app_context():
        user_id = db.session.scalar(sa.select(User.id).where(User.username == username))
        insert_rows(user_id, count)
        db.session.commit()
        db.session.remove()
        db.engine.dispose()  # leave no connection open: tests drop databases and kill backends


def read_posts(database_url: str, username: str) -> list[dict]:
    """The user's posts as the export must write them: oldest first, ISO 8601 UTC with Z."""
    from app.models import isoformat_z

    engine = sa.create_engine(normalize_database_url(database_url))
    try:
        with engine.connect() as conn:
            user_table = engine.dialect.identifier_preparer.quote("user")  # "user" / `user`
            rows = conn.execute(sa.text(
                f"SELECT p.body, p.timestamp FROM post p JOIN {user_table} u ON u.id = p.user_id "
                "WHERE u.username = :name ORDER BY p.timestamp, p.id"), {"name": username}).all()
    finally:
        engine.dispose()
    out = []
    for body, ts in rows:
        if isinstance(ts, str):  # SQLite text
            from datetime import datetime

            ts = datetime.fromisoformat(ts)
        out.append({"body": body, "timestamp": isoformat_z(ts)})
    return out


def new_user(stack: Stack, posts: int = 0, email: str | None = None) -> "Browserless":
    """A registered, logged-in user of a deployment with `posts` posts."""
    user = Browserless(stack.url).register(email).login()
    if posts:
        seed(stack.database_url, user.username, posts)
    return user


def user_id_of(database_url: str, username: str) -> int:
    """A user's id, read from the deployment's database."""
    engine = sa.create_engine(normalize_database_url(database_url))
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text('SELECT id FROM "user" WHERE username = :u'), {"u": username}).scalar_one()
    finally:
        engine.dispose()


def publish_raw(redis_url: str, user_id: int, *payloads: dict) -> None:
    """Put `task_progress` events on the Socket.IO channel exactly as one worker would (tests of the relay)."""
    manager = socketio.RedisManager(redis_url, channel="flask-socketio", write_only=True)
    for payload in payloads:
        manager.emit("task_progress", payload, namespace="/", room=f"user:{user_id}")


STATUS_ORDER = {"queued": 0, "started": 1, "finished": 2, "failed": 2, "canceled": 2}


def assert_well_ordered(events: list[dict]) -> None:
    """Statuses move forward, progress never goes backwards, exactly one terminal event."""
    assert [STATUS_ORDER[e["status"]] for e in events] == sorted(STATUS_ORDER[e["status"]] for e in events)
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress), progress
    seqs = [e["seq"] for e in events if "seq" in e]
    assert seqs == sorted(seqs), f"events out of seq order: {seqs}"
    assert sum(e["status"] in TERMINAL for e in events) == 1, [(e["status"], e["progress"]) for e in events]
