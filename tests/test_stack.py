"""`make run` from a clean checkout: web, worker, embedded Redis and SMTP sink come up, a killed worker
comes back, and Ctrl-C (or SIGTERM) leaves no process behind.

The checkout is a copy of what git would commit (tracked and untracked-not-ignored files), so it
has no .env, no database, no var/. To avoid a full reinstall it reuses the test's own venv
(`make run VENV=...`) and the built socket.io asset; the make targets are still what runs.
Processes are found and checked by PID (with start time) and session, never by name.
"""
from __future__ import annotations

import mailbox
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

import pytest
import redis
import requests
from rq import Worker

from scripts.services import free_port, port_open
from tests.harness import ROOT, wait_until

# Variables a developer's shell or an outer `make` may carry; the stack must start without them.
SCRUBBED = ("REDIS_URL", "MAIL_SERVER", "MAIL_PORT", "PORT", "HOST", "DATABASE_URL", "SECRET_KEY", "EXPORT_DIR",
            "PUBLIC_URL", "TASK_QUEUE", "SOCKETIO_ASYNC_MODE", "FLASK_APP", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")


@dataclass(frozen=True)
class Proc:
    """A process as /proc shows it; (pid, start) names it even if the PID is later reused."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    start: int

    def alive(self) -> bool:
        """Whether this very process (same PID and start time) still runs (zombies count as gone)."""
        now = read_proc(self.pid)
        return now is not None and now.start == self.start


def read_proc(pid: int) -> Proc | None:
    """The process with this PID, or None when there is none or it is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may contain spaces
    if fields[0] in ("Z", "X"):
        return None
    return Proc(pid, int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))


def all_procs() -> list[Proc]:
    """Every live process on the machine."""
    procs = (read_proc(int(name)) for name in os.listdir("/proc") if name.isdigit())
    return [p for p in procs if p is not None]


def descendants(root: int) -> set[Proc]:
    """The live process root and everything below it."""
    children: dict[int, list[Proc]] = {}
    for proc in all_procs():
        children.setdefault(proc.ppid, []).append(proc)
    found = {p for p in all_procs() if p.pid == root}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child.pid)
    return found


def checkout(dest: Path) -> Path:
    """Copy the files git would commit (tracked plus untracked-not-ignored) into dest."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not there any more
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name, follow_symlinks=False)  # mtimes kept: make sees stamps as current
    asset = Path("app/static/vendor/socket.io.min.js")
    if (ROOT / asset).is_file():  # built output, like the venv: saves an `npm ci`
        (dest / asset).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / asset, dest / asset)
    return dest


class RunningStack:
    """`make run` in a checkout, with the bookkeeping to check it stops completely."""

    def __init__(self, workdir: Path, **more_env: str) -> None:
        self.dir = checkout(workdir / "checkout")
        self.port = free_port()
        self.dead_redis_port = free_port()  # nothing listens there: the embedded Redis must start
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
        env.update(PORT=str(self.port), REDIS_URL=f"redis://127.0.0.1:{self.dead_redis_port}/0",
                   PYTHONWARNINGS="ignore::DeprecationWarning")
        env.update(more_env)  # what a developer might set in their shell (DATABASE_URL, REDIS_URL, ...)
        self.log_path = workdir / "make-run.log"
        venv = Path(sys.executable).parent.parent
        with open(self.log_path, "wb") as log:
            # Its own session and process group, as a terminal's foreground job: Ctrl-C is killpg(SIGINT).
            self.make = subprocess.Popen(["make", "--no-print-directory", "run", f"VENV={venv}"], cwd=self.dir,
                                         env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.seen: set[Proc] = set()

    @property
    def url(self) -> str:
        """Where the web server should answer."""
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """Everything make and the stack printed so far."""
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        """The end of the output, for failure messages."""
        return "\n".join(self.output().splitlines()[-lines:])

    def banner(self, pattern: str) -> str:
        """A value printed in dev.py's banner."""
        match = wait_until(lambda: re.search(pattern, self.output()), 120, f"{pattern!r} in the output")
        return match.group(1)

    def record(self) -> set[Proc]:
        """Remember every process now running under make (children may outlive their parents)."""
        now = descendants(self.make.pid)
        self.seen |= now
        return now

    def survivors(self) -> list[Proc]:
        """Processes of this stack still alive: recorded ones, or any in one of its sessions or groups
        started after make (an orphan is re-parented, but keeps its session and group)."""
        sessions = {p.sid for p in self.seen}
        groups = {p.pgid for p in self.seen}
        mine = {p.pid for p in self.seen if p.alive()}
        since = min((p.start for p in self.seen), default=0)
        return [p for p in all_procs()
                if p.pid in mine or (p.start >= since and (p.sid in sessions or p.pgid in groups))]

    def assert_running(self) -> None:
        """Fail at once, with the output, when make run has exited."""
        assert self.make.poll() is None, f"make run exited ({self.make.returncode}):\n{self.tail()}"

    def wait_serving(self) -> None:
        """Wait until the web server answers on PORT."""
        try:
            wait_until(lambda: self.make.poll() is not None or _answers(self.url + "/auth/login"), 180, "the web")
        except AssertionError:
            raise AssertionError("web did not answer:\n" + self.tail()) from None
        self.assert_running()

    def stop(self, signum: int, group: bool) -> None:
        """Signal make (Ctrl-C signals its whole foreground group) and wait for it to exit."""
        self.record()
        if group:
            os.killpg(self.make.pid, signum)
        else:
            self.make.send_signal(signum)
        try:
            self.make.wait(30)
        except subprocess.TimeoutExpired:
            raise AssertionError("make run did not stop within 30 s:\n" + self.tail()) from None

    def cleanup(self) -> None:
        """After a failure: Ctrl-C, then SIGKILL whatever of ours is left (by PID, never by name)."""
        if self.make.poll() is None:
            self.record()
            os.killpg(self.make.pid, signal.SIGINT)
            try:
                self.make.wait(30)
            except subprocess.TimeoutExpired:
                pass
        for proc in self.survivors():
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def running_stack(tmp_path: Path) -> Iterator[RunningStack]:
    """`make run` started in a fresh checkout; whatever the test does, nothing of it is left after."""
    stack = RunningStack(tmp_path)
    try:
        yield stack
    finally:
        stack.cleanup()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def live_workers(stack: RunningStack, connection: redis.Redis) -> list[Worker]:
    """Registered RQ workers whose process is alive and belongs to this stack (a running stack)."""
    stack.assert_running()
    ours = {p.pid for p in stack.record()}
    try:
        registered = Worker.all(connection=connection)
    except redis.RedisError:  # the stack is going down: the next poll's assert_running says why
        return []
    return [w for w in registered if w.pid in ours]


def maildir_subjects(maildir: Path) -> list[str]:
    """Subjects of every message saved in the Maildir."""
    if not (maildir / "cur").is_dir():
        return []
    parser = BytesParser(policy=default_policy)
    box = mailbox.Maildir(str(maildir), create=False)
    return [str(parser.parsebytes(box.get_bytes(key))["Subject"]) for key in box.iterkeys()]


def assert_nothing_left(stack: RunningStack) -> None:
    """Every process the stack started is gone, and so is the embedded Redis's port."""
    assert len(stack.seen) >= 5, f"too few processes recorded to mean anything: {stack.seen}"
    try:
        wait_until(lambda: not stack.survivors(), 5, "every process of the stack to exit")
    except AssertionError:
        raise AssertionError(f"left behind: {stack.survivors()}\n{stack.tail()}") from None
    assert not port_open("127.0.0.1", stack.port)


def test_make_run_stack_from_clean_checkout(running_stack: RunningStack) -> None:
    """Web, embedded Redis, worker and mail sink come up; a killed worker returns; Ctrl-C ends it all."""
    stack = running_stack
    stack.wait_serving()
    assert f"http://127.0.0.1:{stack.port}" in stack.output(), "the URL to open was not printed"

    redis_url = stack.banner(r"REDIS_URL=(redis://127\.0\.0\.1:\d+/0)")
    assert redis_url != f"redis://127.0.0.1:{stack.dead_redis_port}/0"
    assert not port_open("127.0.0.1", stack.dead_redis_port)
    connection = redis.Redis.from_url(redis_url)
    worker = wait_until(lambda: live_workers(stack, connection), 60, "the worker to register")[0]
    assert "microblog-tasks" in worker.queue_names()

    mail_port = int(stack.banner(r"SMTP sink on 127\.0\.0\.1:(\d+)"))
    subject = f"stack test {uuid.uuid4().hex}"
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "test@example.com", "dev@example.com", subject
    message.set_content("hello")
    with smtplib.SMTP("127.0.0.1", mail_port, timeout=10) as smtp:
        smtp.send_message(message)
    wait_until(lambda: subject in maildir_subjects(stack.dir / "var" / "mail"), 10, "the mail in var/mail")
    listing = subprocess.run([sys.executable, "-m", "scripts.read_mail"], cwd=stack.dir, capture_output=True,
                             text=True, timeout=30, check=False)
    assert subject in listing.stdout and "dev@example.com" in listing.stdout, listing.stdout + listing.stderr

    # A crash of the worker (by its PID, which the stack started) must not take the stack down.
    old = next(p for p in stack.record() if p.pid == worker.pid)
    os.kill(old.pid, signal.SIGKILL)
    wait_until(lambda: [w for w in live_workers(stack, connection) if w.pid != old.pid], 60,
               "a restarted worker to register")
    assert not old.alive()
    assert stack.make.poll() is None, "the stack went down with its worker:\n" + stack.tail()
    assert _answers(stack.url + "/auth/login")

    stack.stop(signal.SIGINT, group=True)  # what Ctrl-C in the terminal does
    assert_nothing_left(stack)
    assert not port_open("127.0.0.1", connection.connection_pool.connection_kwargs["port"])


def test_sigterm_stops_the_stack(running_stack: RunningStack) -> None:
    """SIGTERM to make alone (a process manager, `kill PID`) also stops every process."""
    stack = running_stack
    stack.wait_serving()
    connection = redis.Redis.from_url(stack.banner(r"REDIS_URL=(redis://127\.0\.0\.1:\d+/0)"))
    wait_until(lambda: live_workers(stack, connection), 60, "the worker to register")
    stack.stop(signal.SIGTERM, group=False)
    assert_nothing_left(stack)
