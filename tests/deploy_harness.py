"""Helpers for the scale-out tests: worker pools, live worker counts, several web servers."""
from __future__ import annotations

import sys
from pathlib import Path

from rq import Worker

from scripts.services import ManagedProcess
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

