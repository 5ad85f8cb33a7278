"""The chaos soak: many users export while every kind of process dies at random.

30 users on 2 web processes and 3 workers (a private Redis, the SMTP server, SQLite or
PostgreSQL) keep launching exports (small ones and 100k-post ones), cancel some, reload pages,
open and close sockets. Meanwhile a chaos loop kills, every few seconds, one of: a work horse, a
worker (restarted), a web process (restarted on its port), Redis (restarted without persistence),
the SMTP server (down for a while). Then every process is back and the soak checks what users and
operators would: every task ended; none failed unless the soak killed its horse or Redis lost its
queued job; every finished file holds exactly its user's posts; no socket saw another user's task,
a task go backwards, or two different endings; every socket still open shows each final state.

Duration per database: CHAOS_SECONDS (`make test`: 60 s on SQLite + 60 s on PostgreSQL;
`make chaos`: 300 s each). Choices are seeded: the seed is printed, CHAOS_SEED=<seed> replays the
same choices (thread timing still varies).
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest
import requests
import sqlalchemy as sa
from rq.job import Job, JobStatus

from config import normalize_database_url
from tests.faults.conftest import horse_pids
from tests.harness import (TERMINAL, Browserless, Stack, Watcher, read_posts, seed, wait_until)

pytestmark = [pytest.mark.chaos, pytest.mark.faults, pytest.mark.timeout(3600)]

SECONDS = float(os.environ.get("CHAOS_SECONDS", "60"))
USERS = int(os.environ.get("CHAOS_USERS", "30"))
BIG_USERS = int(os.environ.get("CHAOS_BIG_USERS", "4"))  # they have 100k posts; the others a few hundred
BIG_POSTS = 100_000
FAULTS = ("horse", "worker", "web", "redis", "smtp")
SHOWN_WITHIN = 15  # seconds after the end by which every open socket shows every final state


@dataclass
class Ledger:
    """What the chaos did, so the end state can be judged exactly."""

    killed: set[str] = field(default_factory=set)  # tasks whose work horse the soak killed
    lost: set[str] = field(default_factory=set)  # tasks queued when Redis lost its data
    interrupted: set[str] = field(default_factory=set)  # tasks whose launch request a web crash cut off
    kills: Counter = field(default_factory=Counter)
    timeline: list[str] = field(default_factory=list)  # for the report of a failing soak
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, tasks: set[str] | None = None, into: str = "killed") -> None:
        """Record one fault and the tasks it may rightly have failed."""
        tasks = {t for t in tasks or () if t}
        with self.lock:
            self.kills[kind] += 1
            getattr(self, into).update(tasks)
            self.timeline.append(f"{datetime.now(timezone.utc):%H:%M:%S.%f} {kind} {sorted(tasks)}")


def rows(database_url: str, where: str = "1=1") -> list[sa.Row]:
    """Task rows of the deployment, read directly (an operator's view, not through the app)."""
    engine = sa.create_engine(normalize_database_url(database_url))
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(
                f"SELECT t.id, t.status, t.message, t.finished_at, t.seq, u.username FROM task t "
                f'JOIN "user" u ON u.id = t.user_id WHERE {where}')).all()
    finally:
        engine.dispose()


class ChaosUser(threading.Thread):
    """One user clicking around: exports, cancels, reloads, sockets opened and closed."""

    def __init__(self, stack: Stack, index: int, seed_value: int, ledger: Ledger, stop: threading.Event) -> None:
        super().__init__(name=f"user-{index}", daemon=True)
        self.stack, self.ledger, self.stop = stack, ledger, stop
        self.rng = random.Random(seed_value * 1000 + index)
        self.user = Browserless(stack.url.rsplit(":", 1)[0] + f":{stack.ports[index % len(stack.ports)]}")
        self.user.register().login()
        self.sockets: list[Watcher] = []  # open ones
        self.closed: list[Watcher] = []
        self.tasks: set[str] = set()
        self.launch_cut = False
        self.errors = Counter()

    def run(self) -> None:
        """Act until told to stop; errors a crashing server causes are expected and counted."""
        self.open_socket()
        while not self.stop.is_set():
            action = self.rng.choices(["export", "cancel", "reload", "open_socket", "close_socket"], [4, 1, 3, 1, 1])[0]
            try:
                getattr(self, action)()
            except (requests.RequestException, AttributeError, AssertionError, ValueError) as exc:
                # A server crashed mid-request (no CSRF token on an error page, a 5xx from the API).
                self.errors[type(exc).__name__] += 1
            self.stop.wait(self.rng.uniform(0.3, 1.5))

    def known(self) -> list[dict]:
        """The user's tasks from the API; tasks a cut-off launch created are recorded as such."""
        tasks = self.user.tasks()
        new = {t["task_id"] for t in tasks} - self.tasks
        if self.launch_cut and new:
            self.ledger.interrupted.update(new)
            self.launch_cut = False
        self.tasks |= new
        return tasks

    def export(self) -> None:
        """Launch an export unless one is active."""
        if any(t["status"] in ("queued", "started") for t in self.known()):
            return
        try:
            self.user.post("/export_posts", allow_redirects=False)
        except requests.RequestException:
            self.launch_cut = True  # the row may be committed and its job never enqueued
            raise
        self.known()

    def cancel(self) -> None:
        """Cancel the active export (409 if it just ended: fine)."""
        for t in self.known():
            if t["status"] in ("queued", "started"):
                self.user.post(f"/tasks/{t['task_id']}/cancel", allow_redirects=False)

    def reload(self) -> None:
        """Load a page, as a reload would."""
        self.user.get(self.rng.choice(["/tasks", "/index", f"/user/{self.user.username}"]))

    def open_socket(self) -> None:
        """Open another tab's socket (on either web server)."""
        if len(self.sockets) < 2:
            port = self.rng.choice(self.stack.ports)
            try:
                self.sockets.append(Watcher(f"http://127.0.0.1:{port}", self.user.cookie_header()))
            except Exception:  # that server is restarting
                self.errors["socket"] += 1

    def close_socket(self) -> None:
        """Close one tab's socket."""
        if self.sockets:
            watcher = self.sockets.pop(self.rng.randrange(len(self.sockets)))
            watcher.close()
            self.closed.append(watcher)


STARTED_JOB = re.compile(r"Worker [0-9a-f]{32}: [\w-]+: (?!Job OK).* \(([0-9a-f]{32})\)\"?$", re.M)


def last_started_job(worker) -> str | None:
    """The id of the job a worker's log last says it started (`Worker …: <queue>: <description> (<id>)`)."""
    found = STARTED_JOB.findall(worker.log_path.read_text(errors="replace"))
    return found[-1] if found else None


class Chaos(threading.Thread):
    """Every few seconds, one fault, recorded in the ledger."""

    def __init__(self, stack: Stack, seed_value: int, ledger: Ledger, stop: threading.Event) -> None:
        super().__init__(name="chaos", daemon=True)
        self.stack, self.ledger, self.stop = stack, ledger, stop
        self.rng = random.Random(seed_value)
        self.failure: BaseException | None = None

    def run(self) -> None:
        """Strike until told to stop; leave everything running at the end."""
        try:
            while not self.stop.wait(self.rng.uniform(2, 5)):
                getattr(self, self.rng.choice(FAULTS))()
        except BaseException as exc:  # the soak fails loudly if the chaos itself broke
            self.failure = exc

    def horse(self) -> None:
        """SIGKILL one running work horse, noting the task it ran."""
        for worker in self.rng.sample(self.stack.workers, len(self.stack.workers)):
            before = horse_pids(worker.pid)
            job = self.stack.current_job(worker)  # set by the horse itself, a moment after the fork
            if len(before) != 1 or not job or not self._runs(job, worker):
                continue
            if horse_pids(worker.pid) != before or not _alive(before[0]):
                continue
            try:
                os.kill(before[0], signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.ledger.note("horse", {job})  # read while that very horse was alive (pids unchanged)
            return

    def _runs(self, job_id: str, worker) -> bool:
        """Whether RQ says this job is running on this worker right now (not a stale record)."""
        try:
            job = Job.fetch(job_id, connection=self.stack.redis.client())
        except Exception:  # Redis restarting, the job gone: not a horse we can account for
            return False
        return job.get_status() == JobStatus.STARTED and bool(job.worker_name) and \
            f"Worker {job.worker_name}: " in worker.log_path.read_text(errors="replace")

    def worker(self) -> None:
        """SIGKILL a worker (its horse dies with it), then start a new one."""
        worker = self.rng.choice(self.stack.workers)
        job = self.stack.current_job(worker)
        # After a Redis restart RQ's record of the worker is gone while the job its horse runs goes
        # on (the heartbeat keeps it alive): the worker's own log still names the job it last started.
        logged = last_started_job(worker)
        self.stack.restart_worker(worker)
        self.ledger.note("worker", {job, logged, self.stack.current_job(worker)})  # RQ's record outlives the crash

    def web(self) -> None:
        """SIGKILL a web server and start it again on its port."""
        self.ledger.note("web")
        self.stack.restart_web(self.rng.choice(self.stack.webs))

    def redis(self) -> None:
        """Stop Redis (its data is gone), then start it again empty."""
        self.stack.redis.stop()
        queued = {r.id for r in rows(self.stack.database_url, "t.status = 'queued'")}
        self.ledger.note("redis", queued, into="lost")
        self.stop.wait(self.rng.uniform(0.5, 3))
        self.stack.redis.start()

    def smtp(self) -> None:
        """The mail server is down for a while."""
        self.ledger.note("smtp")
        self.stack.smtp.stop()
        self.stop.wait(self.rng.uniform(2, 6))
        self.stack.smtp.start()


def _try(fn) -> bool:
    """Whether fn ran without a request error (a server may still be starting)."""
    try:
        fn()
        return True
    except (requests.RequestException, AssertionError, AttributeError, ValueError):
        return False


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def judge_sockets(users: list[ChaosUser], owner_of: dict[str, str]) -> list[str]:
    """What no socket may have seen: others' tasks, a task going backwards, two different endings."""
    wrong = []
    for u in users:
        for w in u.sockets + u.closed:
            by_task: dict[str, list[dict]] = defaultdict(list)
            for e in list(w.events):
                by_task[e["task_id"]].append(e)
            for task_id, events in by_task.items():
                if owner_of.get(task_id, u.user.username) != u.user.username:
                    wrong.append(f"{u.user.username} saw {owner_of[task_id]}'s task {task_id}")
                seqs, progress = [e["seq"] for e in events], [e["progress"] for e in events]
                endings = {(e["status"], e["message"]) for e in events if e["status"] in TERMINAL}
                first_end = next((i for i, e in enumerate(events) if e["status"] in TERMINAL), len(events))
                if seqs != sorted(seqs) or progress != sorted(progress):
                    wrong.append(f"{task_id} went backwards on a socket: {list(zip(seqs, progress))}")
                if len(endings) > 1 or any(e["status"] not in TERMINAL for e in events[first_end:]):
                    wrong.append(f"{task_id}: {[e['status'] for e in events]} on one socket")
    return wrong


def shows_final(watcher: Watcher, final: list[sa.Row]) -> list[str]:
    """Tasks whose final status this open socket does not show (its newest event by seq): those it
    heard of, and those that ended while it was open."""
    newest: dict[str, dict] = {}
    for e in list(watcher.events):
        if e["task_id"] not in newest or e["seq"] >= newest[e["task_id"]]["seq"]:
            newest[e["task_id"]] = e
    opened = datetime.fromtimestamp(watcher.opened_at, timezone.utc).replace(tzinfo=None)
    return [r.id for r in final
            if (r.id in newest or _naive(r.finished_at) >= opened)
            and (r.id not in newest or newest[r.id]["status"] != r.status)]


def describe_stale(users: list[ChaosUser], final: list[sa.Row]) -> list[str]:
    """Each stale socket with what a reader of a failed soak needs: the row, and what the socket saw."""
    out = []
    for u in users:
        mine = [r for r in final if r.username == u.user.username]
        for w in u.sockets:
            for task_id in shows_final(w, mine):
                row = next(r for r in mine if r.id == task_id)
                seen = [(e["status"], e["seq"]) for e in w.of(task_id)]
                out.append(f"{u.user.username}:{task_id} row={row.status}/seq {row.seq} ended {row.finished_at} "
                           f"socket {w.base_url} opened {datetime.fromtimestamp(w.opened_at, timezone.utc):%H:%M:%S.%f} "
                           f"connects={w.connects} connected={w.client.connected} saw={seen}")
    return out


def _naive(value: datetime | str) -> datetime:
    """A timestamp as stored (SQLite hands back text)."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value.replace(tzinfo=None)


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_chaos_soak(make_stack, db: str) -> None:
    """Nothing wrongly failed, nothing lost, nothing out of order, whatever dies meanwhile."""
    seed_value = int(os.environ.get("CHAOS_SEED") or random.randrange(1 << 30))
    began = time.monotonic()
    print(f"\nCHAOS seed={seed_value} db={db} seconds={SECONDS:.0f} (replay: CHAOS_SEED={seed_value})")
    stack = make_stack(db=db, workers=0, held=False, EXPORT_RATE_LIMIT="100000 per hour",
                       REGISTER_RATE_LIMIT="100000 per hour", MAIL_TIMEOUT="3")
    stack.start_web()
    for _ in range(3):
        stack.start_worker()
    ledger, stop, chaos_stop = Ledger(), threading.Event(), threading.Event()
    users = [ChaosUser(stack, i, seed_value, ledger, stop) for i in range(USERS)]
    rng = random.Random(seed_value)
    for u in users:
        seed(stack.database_url, u.user.username, BIG_POSTS if users.index(u) < BIG_USERS else rng.randint(1, 400))
    chaos = Chaos(stack, seed_value, ledger, chaos_stop)
    started = time.monotonic()
    for u in users:
        u.start()
    chaos.start()
    chaos_stop.wait(SECONDS)
    chaos_stop.set()
    chaos.join(60)
    stop.set()
    for u in users:
        u.join(60)
    assert chaos.failure is None, f"the chaos loop broke: {chaos.failure!r}"
    for u in users:  # attribute the tasks of launches cut off just before the end
        wait_until(lambda: _try(u.known), 30, f"{u.user.username}'s task list")

    # Everything is up again: every task must end (the sweep ends those whose horse died).
    wait_until(lambda: not rows(stack.database_url, "t.status IN ('queued', 'started')"), 180,
               "every task to end")
    ended_at = time.monotonic()
    final = rows(stack.database_url)
    owner_of = {r.id: r.username for r in final}
    by_status = Counter(r.status for r in final)
    excused = ledger.killed | ledger.lost | ledger.interrupted
    wrong = [f"{r.id} of {r.username} failed: {r.message}" for r in final
             if r.status == "failed" and r.id not in excused]

    # Every finished task's file holds exactly its user's posts (downloaded as the user would).
    lost = []
    expected: dict[str, list[dict]] = {}
    for u in users:
        for r in (r for r in final if r.username == u.user.username and r.status == "finished"):
            response = u.user.get(f"/tasks/{r.id}/download")
            if response.status_code != 200:
                lost.append(f"{r.id}: download answered {response.status_code}")
                continue
            if u.user.username not in expected:
                expected[u.user.username] = read_posts(stack.database_url, u.user.username)
            if json.loads(response.content)["posts"] != expected[u.user.username]:
                lost.append(f"{r.id}: the file does not hold exactly {u.user.username}'s posts")

    # Every socket still open shows each final state within 15 s.
    try:
        wait_until(lambda: not describe_stale(users, final), SHOWN_WITHIN, "every open socket to show every final state")
    except AssertionError:
        wrong.append(f"open sockets not current {SHOWN_WITHIN} s after the end: {describe_stale(users, final)[:10]}")
    wrong += judge_sockets(users, owner_of)
    for u in users:
        for w in u.sockets:
            w.close()

    kills = sum(ledger.kills.values())
    print(f"CHAOS db={db} tasks={len(final)} finished={by_status['finished']} failed={by_status['failed']} "
          f"canceled={by_status['canceled']} kills={kills} ({', '.join(f'{k}={v}' for k, v in sorted(ledger.kills.items()))}) "
          f"wrong={len(wrong)} lost={len(lost)}")
    print(f"CHAOS db={db} excused: horse-killed={len(ledger.killed)} lost-with-redis={len(ledger.lost)} "
          f"launch-cut={len(ledger.interrupted)}; set-up {started - began:.0f} s, chaos {SECONDS:.0f} s, drained in "
          f"{ended_at - started - SECONDS:.1f} s, checked in {time.monotonic() - ended_at:.0f} s; client errors {sum((u.errors for u in users), Counter())}")
    if wrong or lost:
        print("CHAOS problems:\n  " + "\n  ".join(wrong[:30] + lost[:30]))
        print("CHAOS timeline:\n  " + "\n  ".join(ledger.timeline))
    assert not wrong and not lost, "\n".join(wrong + lost)
    assert by_status["finished"] > 0 and kills > 0
