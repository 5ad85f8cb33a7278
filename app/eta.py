"""How long a running task has left: the recent rate over a moving window of (time, items) samples."""
from __future__ import annotations

import time
from collections import deque
from typing import Callable

# A window of a few seconds follows a rate that changes (the database warms up, the machine gets busy)
# without jumping about with every batch.
WINDOW_SECONDS = 3.0
# Before this share of the work and this much time nobody can tell the rate yet; a guess would mislead.
# One second is ten progress events (they are 0.1 s apart): enough for a rate. With two, a 2M-post
# export on a fast machine (2-3 s in all) showed its first estimate at 65-94 %, when it hardly mattered.
MIN_FRACTION = 0.05
MIN_ELAPSED = 1.0


class RateEstimator:
    """Items per second over the last `window` seconds, and the seconds left at that rate."""

    def __init__(self, window: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic,
                 min_fraction: float = MIN_FRACTION, min_elapsed: float = MIN_ELAPSED) -> None:
        self.window = window
        self.clock = clock
        self.min_fraction = min_fraction
        self.min_elapsed = min_elapsed
        self._samples: deque[tuple[float, int]] = deque()
        self._began = clock()

    def add(self, current: int) -> None:
        """Record that `current` items are done now."""
        now = self.clock()
        self._samples.append((now, current))
        # Keep one sample older than the window, so the window is always fully spanned.
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def rate(self) -> float | None:
        """Items per second over the window; None until two samples span some time."""
        if len(self._samples) < 2:
            return None
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        if t1 <= t0 or c1 <= c0:
            return None
        return (c1 - c0) / (t1 - t0)

    def eta_seconds(self, total: int | None) -> int | None:
        """Whole seconds left (the nearest, at least 1) at the recent rate; None while unknown or not yet telling."""
        if not total or not self._samples:
            return None
        current = self._samples[-1][1]
        rate = self.rate()
        if rate is None or current >= total:
            return None
        if current / total < self.min_fraction or self.clock() - self._began < self.min_elapsed:
            return None
        # The nearest whole second, not the next: in the last seconds of a fast export rounding up
        # overstated the time left by up to one second, +30 % of the 2.3 s left at half of 2M posts.
        return max(1, round((total - current) / rate))
