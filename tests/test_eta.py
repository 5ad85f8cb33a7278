"""The time-left estimate (app/eta.py) and the counts the publisher sends, with a fake clock."""
from __future__ import annotations

import pytest

from app.eta import RateEstimator
from app.progress import ProgressPublisher
from tests.factories import get_task
from tests.test_progress import FakeClock, clock, emitter, task_id, user  # noqa: F401 (fixtures)


def test_no_estimate_before_five_percent_and_one_second():
    """A guess from the first instants would mislead: nothing until 5% and 1 s."""
    clock = FakeClock()
    eta = RateEstimator(clock=clock)
    clock.tick(0.5)
    eta.add(100_000)  # 5% after 0.5 s: fast, but too early
    assert eta.eta_seconds(2_000_000) is None
    clock.tick(0.5)
    eta.add(200_000)
    assert eta.eta_seconds(2_000_000) == 9  # 1.8M left at 200k/s
    slow = RateEstimator(clock=clock)
    clock.tick(5.0)
    slow.add(50_000)
    clock.tick(1.0)
    slow.add(90_000)  # 4.5% after 6 s: still too early to tell
    assert slow.eta_seconds(2_000_000) is None


def test_estimate_follows_the_recent_rate_not_the_average():
    """When the rate changes, the moving window follows it within a window's length."""
    clock = FakeClock()
    eta = RateEstimator(window=3.0, clock=clock)
    done = 0
    for _ in range(20):  # 10 s at 100k/s
        clock.tick(0.5)
        done += 50_000
        eta.add(done)
    assert eta.rate() == pytest.approx(100_000)
    for _ in range(8):  # then 4 s at 50k/s: the window (3 s) holds only the slow part
        clock.tick(0.5)
        done += 25_000
        eta.add(done)
    assert eta.rate() == pytest.approx(50_000)
    assert eta.eta_seconds(2_000_000) == round((2_000_000 - done) / 50_000)


def test_estimate_is_the_nearest_second_and_never_zero():
    """2.2 s left reads 2, 2.6 s reads 3, and 0.3 s still reads 1 (not "0 s left" while running)."""
    clock = FakeClock()
    eta = RateEstimator(clock=clock, min_elapsed=0)
    eta.add(0)
    clock.tick(1.0)
    eta.add(1_000_000)  # 1M/s
    assert eta.eta_seconds(3_200_000) == 2
    assert eta.eta_seconds(3_600_000) == 3
    assert eta.eta_seconds(1_300_000) == 1


def test_unknown_and_finished_have_no_estimate():
    """No total, no progress, or nothing left: null."""
    clock = FakeClock()
    eta = RateEstimator(clock=clock)
    assert eta.eta_seconds(None) is None and eta.eta_seconds(100) is None
    clock.tick(3)
    eta.add(10)
    clock.tick(1)
    eta.add(10)  # stalled: no rate
    assert eta.rate() is None and eta.eta_seconds(100) is None
    clock.tick(1)
    eta.add(100)
    assert eta.eta_seconds(100) is None


def test_publisher_sends_and_stores_counts(app, task_id, clock, emitter):
    """advance_count puts current/total in the event and on the row, and the ETA once it tells."""
    publisher = ProgressPublisher(task_id, clock=clock)
    publisher.start()
    clock.tick(1.0)
    publisher.advance_count(100_000, 2_000_000, share=95)
    first = emitter.payloads[-1]
    assert (first["progress"], first["current"], first["total"], first["eta_seconds"]) == (4, 100_000, 2_000_000, None)
    task = get_task(app, task_id)
    assert (task.current, task.total) == (100_000, 2_000_000)
    clock.tick(1.5)
    publisher.advance_count(400_000, 2_000_000, share=95)
    last = emitter.payloads[-1]
    assert last["rate"] == 200_000 and last["eta_seconds"] == 8  # 300k in 1.5 s; 1.6M left
