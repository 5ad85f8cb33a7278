"""Operations against a real deployment: lifecycle logs, the dashboard's requeue and delete, a real
Prometheus scraping /metrics, and /healthz through Redis and database outages."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests
import sqlalchemy as sa

from scripts.services import ManagedProcess, free_port, wait_for_port
from tests.harness import (ROOT, Browserless, RedisServer, SmtpServer, Stack, migrate, new_database_url, new_user,
                           wait_until)

TOKEN = "metrics-test-token"
STEPS = ["queued", "started", "progress_25", "progress_50", "progress_75", "delivering", "finished"]


def flask(stack: Stack, *args: str) -> str:
    """Run a `flask` command against the deployment's database, as an operator would."""
    result = subprocess.run([sys.executable, "-m", "flask", *args], cwd=ROOT, capture_output=True, text=True,
                            env=stack.env(FLASK_APP="app:create_app"), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def user_id(stack: Stack, username: str) -> int:
    """The id of a user, read from the deployment's database."""
    engine = sa.create_engine(stack.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text('SELECT id FROM "user" WHERE username = :u'), {"u": username}).scalar_one()
    finally:
        engine.dispose()


def admin(stack: Stack) -> Browserless:
    """A logged-in admin (made one by `flask set-admin`)."""
    user = Browserless(stack.url).register()
    assert "is now an admin" in flask(stack, "set-admin", user.username)
    return user.login()


def block_exports(stack: Stack, uid: int) -> Path:
    """Make the user's export directory unusable (a plain file in its place): their export fails."""
    stack.export_dir.mkdir(parents=True, exist_ok=True)
    blocker = stack.export_dir / str(uid)
    blocker.write_text("not a directory")
    return blocker


def failed_export(stack: Stack) -> tuple[Browserless, "object", str, Path]:
    """A user whose export failed because its file could not be written."""
    user = new_user(stack, posts=30)
    blocker = block_exports(stack, user_id(stack, user.username))
    watcher = user.socket()
    task_id = user.export()
    end = watcher.terminal(task_id)
    assert end["status"] == "failed" and "could not be written" in end["message"], end
    return user, watcher, task_id, blocker


@pytest.fixture(scope="module")
def ops_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """SQLite deployment with JSON logs and a metrics token: one web server, one worker."""
    workdir = tmp_path_factory.mktemp("ops-stack")
    url, drop = new_database_url("sqlite", workdir)
    migrate(url)
    redis_server = RedisServer(workdir / "redis").start()
    smtp = SmtpServer().start()
    stack = Stack(workdir, url, redis_server, smtp,
                  extra_env={"LOG_FORMAT": "json", "METRICS_TOKEN": TOKEN, "MAIL_ATTACHMENT_MAX_BYTES": "100"})
    try:
        stack.start_web()
        stack.start_worker()
        yield stack
    finally:
        stack.stop()
        smtp.stop()
        redis_server.stop()
        drop()


def task_lines(stack: Stack, task_id: str) -> list[dict]:
    """Every JSON lifecycle line for a task, from the web and worker logs."""
    lines = []
    for proc in stack.webs + stack.workers:
        for raw in proc.log_path.read_text(errors="replace").splitlines():
            if raw.startswith("{") and task_id in raw:
                record = json.loads(raw)
                if record.get("event") == "task" and record.get("task_id") == task_id:
                    lines.append({**record, "source": proc.log_path.name})
    return lines


def test_lifecycle_logs_show_each_step_once_in_order(ops_stack):
    """A real export logs queued (web), then started, 25/50/75, delivering, finished (worker), one line each."""
    user = new_user(ops_stack, posts=20_000)
    watcher = user.socket()
    task_id = user.export()
    assert watcher.terminal(task_id)["status"] == "finished"
    uid = user_id(ops_stack, user.username)
    lines = wait_until(lambda: (found := task_lines(ops_stack, task_id)) and found[-1]["step"] == "finished"
                       and found, 10, "the finished line")
    assert [line["step"] for line in lines] == STEPS, [(l["step"], l["source"]) for l in lines]
    assert all(line["user_id"] == uid and isinstance(line["duration"], (int, float)) for line in lines)
    assert lines[0]["source"].startswith("web") and all(l["source"].startswith("worker") for l in lines[1:])
    stamps = [line["ts"] for line in lines]
    assert stamps == sorted(stamps) and lines[-1]["duration"] >= lines[1]["duration"] >= 0
    logs = ops_stack.logs() + "".join(p.log_path.read_text(errors="replace") for p in ops_stack.webs + ops_stack.workers)
    assert "Seed post" not in logs and "correct horse" not in logs  # no post body, no password
    # The email (large: linked, not attached) says until when the link works.
    assert "The download link works until " in ops_stack.smtp.wait_for(user.email).text()


def test_admin_requeues_a_failed_job_from_the_dashboard_and_it_reruns(ops_stack):
    """Failed export -> the cause is fixed -> an admin requeues it in /admin/rq -> the same task finishes."""
    user, watcher, task_id, blocker = failed_export(ops_stack)
    root = admin(ops_stack)
    listed = root.get("/admin/rq/0/data/jobs/microblog-tasks/failed/50/asc/1.json")
    assert listed.status_code == 200 and task_id in listed.text
    assert user.get("/admin/rq/0/data/jobs/microblog-tasks/failed/50/asc/1.json").status_code == 404
    blocker.unlink()
    # The dashboard's own endpoint, as its "Requeue" button posts it (from its own page).
    response = root.http.post(f"{ops_stack.url}/admin/rq/job/{task_id}/requeue",
                              headers={"Origin": ops_stack.url, "X-Requested-With": "XMLHttpRequest"})
    assert response.status_code == 200 and response.json() == {"status": "OK"}, response.text
    rerun = watcher.wait_for(lambda e: e["task_id"] == task_id and e["status"] == "finished", 60, "the rerun's end")
    assert rerun["download_url"] == f"/tasks/{task_id}/download" and rerun["message"] is None
    statuses = [e["status"] for e in watcher.of(task_id)]
    assert statuses[statuses.index("failed"):][:2] == ["failed", "started"], statuses
    assert user.get(f"/api/tasks/{task_id}").json()["status"] == "finished"
    assert user.get(f"/tasks/{task_id}/download").status_code == 200


def test_admin_deletes_a_failed_job_and_its_task_stays_failed_with_its_reason(ops_stack):
    """Deleting the job in the dashboard removes it from Redis; the task keeps its failure and reason."""
    user, _, task_id, blocker = failed_export(ops_stack)
    root = admin(ops_stack)
    response = root.http.post(f"{ops_stack.url}/admin/rq/job/{task_id}/delete", headers={"Origin": ops_stack.url})
    assert response.status_code == 200 and response.json() == {"status": "OK"}
    assert task_id not in root.get("/admin/rq/0/data/jobs/microblog-tasks/failed/50/asc/1.json").text
    body = user.get(f"/api/tasks/{task_id}").json()
    assert body["status"] == "failed" and "could not be written" in body["message"]
    blocker.unlink()


def cancel_running_export(stack: Stack) -> str:
    """An export canceled while it runs; returns its id."""
    user = new_user(stack, posts=400_000)
    watcher = user.socket()
    task_id = user.export()
    watcher.wait_for(lambda e: e["task_id"] == task_id and e["progress"] >= 2, 60, "the export to run")
    assert user.post(f"/tasks/{task_id}/cancel", allow_redirects=False).status_code == 303
    assert watcher.terminal(task_id)["status"] == "canceled"
    return task_id


def db_counts(stack: Stack) -> dict[str, int]:
    """Tasks that reached each status, straight from the database (launched, began, ended so)."""
    engine = sa.create_engine(stack.database_url)
    try:
        with engine.connect() as conn:
            counts = dict(conn.execute(sa.text("SELECT status, count(*) FROM task GROUP BY status")).all())
            counts["queued"], counts["started"] = conn.execute(
                sa.text("SELECT count(*), count(started_at) FROM task")).one()
            return counts
    finally:
        engine.dispose()


def start_prometheus(workdir: Path, target: str) -> tuple[ManagedProcess, str]:
    """Debian's Prometheus on a free port, scraping target every second with the metrics token."""
    port = free_port()
    token_file = workdir / "token"
    token_file.write_text(TOKEN)
    config = workdir / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "deploy" / "alerts.yml")],
        "scrape_configs": [{"job_name": "microblog", "metrics_path": "/metrics",
                            "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                            "static_configs": [{"targets": [target]}]}],
    }))
    proc = ManagedProcess(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                           f"--web.listen-address=127.0.0.1:{port}"], workdir / "prometheus.log").start()
    base = f"http://127.0.0.1:{port}"
    wait_for_port("127.0.0.1", port, 30)
    wait_until(lambda: requests.get(f"{base}/-/ready", timeout=2).status_code == 200, 30, "Prometheus to be ready")
    return proc, base


def query(base: str, promql: str) -> list[dict]:
    """An instant query through Prometheus' HTTP API."""
    body = requests.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_task_counts(ops_stack, tmp_path):
    """After exports that finish, fail and are canceled, Prometheus' API returns the same counts as the database."""
    user = new_user(ops_stack, posts=10)
    watcher = user.socket()
    assert watcher.terminal(user.export())["status"] == "finished"
    _, _, _, blocker = failed_export(ops_stack)
    blocker.unlink()
    cancel_running_export(ops_stack)
    expected = db_counts(ops_stack)
    assert min(expected.get(s, 0) for s in ("finished", "failed", "canceled")) >= 1, expected
    assert requests.get(f"{ops_stack.url}/metrics", timeout=5).status_code == 404  # no token, no session
    prometheus, base = start_prometheus(tmp_path, f"127.0.0.1:{ops_stack.ports[0]}")
    try:
        def scraped() -> dict[str, int] | None:
            series = query(base, 'microblog_tasks_total{name="export_posts"}')
            got = {s["metric"]["status"]: int(float(s["value"][1])) for s in series}
            return got if {k: v for k, v in got.items() if v} == expected else None

        wait_until(scraped, 30, f"Prometheus to report {expected}", interval=0.5)
        assert query(base, 'up{job="microblog"}')[0]["value"][1] == "1"
        ended = sum(expected.get(s, 0) for s in ("finished", "failed", "canceled"))
        count = query(base, 'microblog_task_duration_seconds_count{name="export_posts"}')
        assert int(float(count[0]["value"][1])) == ended
        assert float(query(base, "sum(microblog_workers)")[0]["value"][1]) == 1
        assert query(base, 'microblog_queue_depth{queue="microblog-tasks"}')[0]["value"][1] == "0"
        assert float(query(base, 'microblog_progress_events_total{direction="out"}')[0]["value"][1]) > 0
        rules = requests.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"][0]["rules"]
        assert {r["name"] for r in rules} == {"MicroblogNoWorkers", "MicroblogQueueBackingUp",
                                              "MicroblogTaskFailureRatio", "MicroblogTaskStuck"}
        assert all(r["health"] != "err" for r in rules), rules
    finally:
        prometheus.stop()


def test_promtool_accepts_the_shipped_rules_and_config():
    """deploy/alerts.yml and deploy/prometheus.yml pass promtool's checks."""
    rules = subprocess.run(["promtool", "check", "rules", str(ROOT / "deploy" / "alerts.yml")],
                           capture_output=True, text=True)
    assert rules.returncode == 0 and "SUCCESS: 4 rules found" in rules.stdout + rules.stderr, rules.stdout + rules.stderr
    syntax = subprocess.run(["promtool", "check", "config", "--syntax-only", str(ROOT / "deploy" / "prometheus.yml")],
                            capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr


# --- /healthz through outages (PostgreSQL, so the database can go away and come back) ------------

@pytest.fixture
def pg_stack(tmp_path: Path) -> Iterator[Stack]:
    """A PostgreSQL deployment whose Redis and database this test may take away."""
    url, drop = new_database_url("postgresql", tmp_path)
    migrate(url)
    redis_server = RedisServer(tmp_path / "redis").start()
    smtp = SmtpServer().start()
    stack = Stack(tmp_path, url, redis_server, smtp)
    try:
        stack.start_web()
        stack.start_worker()
        yield stack
    finally:
        stack.stop()
        smtp.stop()
        redis_server.stop()
        drop()


def healthz(stack: Stack) -> tuple[int, dict, float]:
    """(status, body, seconds it took) of one GET /healthz."""
    began = time.monotonic()
    response = requests.get(f"{stack.url}/healthz", timeout=10)
    return response.status_code, response.json(), time.monotonic() - began


def postgres_admin(sql: str) -> None:
    """Run one statement as the PostgreSQL superuser (outside a transaction)."""
    import psycopg2

    conn = psycopg2.connect(os.environ.get("TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1/postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def test_healthz_reflects_redis_and_database_outages(pg_stack):
    """200 with all up; 503 naming Redis, then the database, within 2 s of each going away; 200 once back."""
    code, body, _ = healthz(pg_stack)
    assert code == 200 and body == {"status": "ok", "database": "ok", "redis": "ok", "workers": 1}, body

    # A Redis that hangs (stopped, its sockets open) is a timeout, not a hung hub.
    os.kill(pg_stack.redis.process.pid, signal.SIGSTOP)
    try:
        code, body, took = healthz(pg_stack)
        assert code == 503 and took < 2 and "Timeout" in body["redis"], (code, took, body)
        began = time.monotonic()
        assert requests.get(f"{pg_stack.url}/auth/login", timeout=5).status_code == 200
        assert time.monotonic() - began < 1
    finally:
        os.kill(pg_stack.redis.process.pid, signal.SIGCONT)
    wait_until(lambda: healthz(pg_stack)[0] == 200, 10, "/healthz to recover after Redis resumed")

    pg_stack.redis.stop()
    code, body, took = healthz(pg_stack)
    assert code == 503 and took < 2, (code, took)
    assert body["status"] == "error" and body["database"] == "ok" and body["workers"] is None
    assert body["redis"] != "ok" and "refused" in body["redis"].lower(), body
    # While Redis is down the server still serves pages at once (nothing waits on the hub).
    assert requests.get(f"{pg_stack.url}/auth/login", timeout=5).status_code == 200
    pg_stack.redis.start()
    wait_until(lambda: healthz(pg_stack)[0] == 200, 10, "/healthz to recover after Redis came back")

    name = pg_stack.database_url.rsplit("/", 1)[1]
    postgres_admin(f'DROP DATABASE "{name}" WITH (FORCE)')
    code, body, took = healthz(pg_stack)
    assert code == 503 and took < 2, (code, took, body)
    assert body["redis"] == "ok" and body["database"] != "ok" and body["database"].startswith("OperationalError")
    assert "password" not in body["database"].lower()
    postgres_admin(f'CREATE DATABASE "{name}"')
    migrate(pg_stack.database_url)
    wait_until(lambda: healthz(pg_stack)[0] == 200, 10, "/healthz to recover after the database came back")
