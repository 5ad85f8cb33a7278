"""`/metrics`: Prometheus text for the whole deployment, from any web process.

What happens in workers (task outcomes, durations) is read at scrape time from the database,
queues and workers from Redis, so every web process answers for the deployment; sockets and
relayed events are this process's own (app.ops.process_metrics). Every value is one aggregate
query or a few Redis reads: the cost does not grow with users or connections.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import redis
import sqlalchemy as sa
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from rq import Queue, Worker

from app.extensions import db
from app.models import Task, TaskStatus, utcnow
from app.ops import process_metrics

# Seconds; exports take from under a second to a few minutes.
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
WORKER_STATES = ("idle", "busy", "suspended")


def duration_seconds(dialect: str) -> sa.ColumnElement[float]:
    """finished_at - started_at in seconds, in the database's own date arithmetic."""
    if dialect == "sqlite":
        return (sa.func.julianday(Task.finished_at) - sa.func.julianday(Task.started_at)) * 86400.0
    if dialect in ("mysql", "mariadb"):
        return sa.func.timestampdiff(sa.text("MICROSECOND"), Task.started_at, Task.finished_at) / 1e6
    return sa.extract("epoch", Task.finished_at - Task.started_at)


class DeploymentCollector:
    """Tasks from the database, queue depth and workers from Redis, read when scraped."""

    def __init__(self, app: Flask) -> None:
        self.app = app  # per scrape only: a new collector is built for every request

    def collect(self) -> Iterator[Metric]:
        """Yield every deployment-wide metric."""
        yield self.tasks_total()
        yield self.durations()
        yield from self.running()
        yield from self.redis_metrics()

    def tasks_total(self) -> Metric:
        """microblog_tasks_total{name,status}: tasks that reached each status, so every series only grows.

        `queued` counts every task launched, `started` every one that began, and each ending the
        tasks that ended so (what is queued or running now: queued - started, started - ended).
        """
        family = CounterMetricFamily("microblog_tasks", "Tasks that reached each status, by name "
                                     "(queued: launched; started: began; finished/failed/canceled: ended so).",
                                     labels=["name", "status"])
        rows = db.session.execute(sa.select(Task.name, Task.status, sa.func.count()).group_by(Task.name, Task.status))
        counts = {(name, status.value if isinstance(status, TaskStatus) else status): n for name, status, n in rows}
        reached = db.session.execute(sa.select(Task.name, sa.func.count(), sa.func.count(Task.started_at))
                                     .group_by(Task.name)).all()
        db.session.commit()
        for name, launched, started in reached:
            counts[(name, TaskStatus.QUEUED.value)] = launched
            counts[(name, TaskStatus.STARTED.value)] = started
        names = {name for name, _ in counts} or {"export_posts"}
        for name in sorted(names):
            for status in TaskStatus:
                family.add_metric([name, status.value], counts.get((name, status.value), 0))
        return family

    def durations(self) -> Metric:
        """microblog_task_duration_seconds{name}: started -> ended, of tasks that ended after starting."""
        seconds = duration_seconds(db.engine.dialect.name)
        columns = [sa.func.sum(sa.case((seconds <= b, 1), else_=0)) for b in DURATION_BUCKETS]
        stmt = (sa.select(Task.name, sa.func.count(), sa.func.sum(seconds), *columns)
                .where(Task.started_at.is_not(None), Task.finished_at.is_not(None))
                .group_by(Task.name))
        rows = db.session.execute(stmt).all()
        db.session.commit()
        family = HistogramMetricFamily("microblog_task_duration_seconds",
                                       "Seconds from a task's start to its end.", labels=["name"])
        for name, count, total, *cumulative in rows:
            buckets = [(str(float(b)), int(c or 0)) for b, c in zip(DURATION_BUCKETS, cumulative)]
            buckets.append(("+Inf", int(count)))
            family.add_metric([name], buckets, float(total or 0))
        return family

    def running(self) -> Iterable[Metric]:
        """How long the oldest running task has run, beside the timeout it should have been stopped at."""
        oldest = db.session.scalar(sa.select(sa.func.min(Task.started_at)).where(Task.status == TaskStatus.STARTED))
        db.session.commit()
        age = GaugeMetricFamily("microblog_task_oldest_running_seconds",
                                "Seconds the longest-running started task has run (0 when none runs).")
        age.add_metric([], max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0)
        timeout = GaugeMetricFamily("microblog_task_timeout_seconds", "TASK_TIMEOUT: RQ stops a job after this.")
        timeout.add_metric([], float(self.app.config["TASK_TIMEOUT"]))
        return [age, timeout]

    def redis_metrics(self) -> Iterable[Metric]:
        """microblog_queue_depth{queue} and microblog_workers{state}."""
        try:
            return self._redis_metrics()
        except redis.exceptions.RedisError:
            return []  # Redis down: /healthz says so; the database's metrics still scrape

    def _redis_metrics(self) -> list[Metric]:
        connection = self.app.extensions["redis"]
        name = self.app.config["TASK_QUEUE"]
        depth = GaugeMetricFamily("microblog_queue_depth", "Jobs waiting in the queue.", labels=["queue"])
        depth.add_metric([name], Queue(name, connection=connection).count)
        workers = GaugeMetricFamily("microblog_workers", "RQ workers alive (by heartbeat), by state.",
                                    labels=["state"])
        states = {state: 0 for state in WORKER_STATES}
        for worker in Worker.all(connection=connection):
            state = str(getattr(worker.get_state(), "value", worker.get_state()))
            states[state] = states.get(state, 0) + 1
        for state, n in states.items():
            workers.add_metric([state], n)
        return [depth, workers]


class _ProcessCollector:
    """This process's own metrics, re-exported next to the deployment's."""

    def collect(self) -> Iterator[Metric]:
        """Yield the per-process metrics."""
        yield from process_metrics.REGISTRY.collect()


def render(app: Flask) -> bytes:
    """The Prometheus text exposition for one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeploymentCollector(app))
    registry.register(_ProcessCollector())
    return generate_latest(registry)
