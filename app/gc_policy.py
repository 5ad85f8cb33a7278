"""Garbage collection for a web process that holds thousands of sockets on one event loop.

CPython's collections walk their generation in one stretch that never yields, and on eventlet's
hub that stretch freezes every socket of the process. Nearly everything they walk is alive and
stays alive: the app, and each connected socket's state (its ping greenlet, timers, queues).
Measured here:
- full (generation 2) collections: 0.5 s at 3,000 connected sockets and 1.2 s at 10,000, every few
  seconds during a connect storm and every ~25 s at rest;
- once only older collections froze their survivors, generation-1 collections of 60,000-120,000
  objects, 70-190 ms every few seconds at 10,000 idle sockets: each walked what ten young
  collections had let through (eventlet's timers, timeouts and waiters, alive for seconds).

So what survives any collection is frozen (`gc.freeze()`: moved to the permanent generation, which
no automatic collection walks), and every collection walks only what was made since the last one.
A young collection also runs every YOUNG_INTERVAL seconds: CPython starts one after 700 more
allocations than frees, and on a busy process the frees of old objects held that count down while
tens of thousands of new ones piled up (one such collection took 112 ms).

Reference counting still frees frozen objects; what it cannot free, a cycle among frozen objects (a
socket that was frozen and later closed leaves ~30 objects in cycles), waits for the periodic
thorough collection: every `full_interval` seconds everything is unfrozen, collected and frozen
again, one long stretch (about 1 s at 10,000 sockets) instead of one every few seconds. Freezing
after young collections too did not change how fast the process grew (10,000 idle sockets: +1.3 and
+1.2 MiB per 30 s). CPython 3.12+ does not change this trade-off (3.14's incremental collector
would); no library does it for us.
"""
from __future__ import annotations

import gc
import logging
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

SLOW_MS = 100  # a collection that held the event loop longer is logged: every socket waited for it
YOUNG_INTERVAL = 0.1  # seconds between the young collections we run ourselves (see the module's doc)
_installed = False
_started = [0.0]


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    """gc callback: after every collection, move what survived out of every later automatic one
    (and log a collection that held the hub for long)."""
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    took_ms = (time.perf_counter() - _started[0]) * 1000
    if took_ms > SLOW_MS:
        log.warning("garbage collection of generation %d held every socket for %.0f ms (%d freed)",
                    info["generation"], took_ms, info["collected"])
    gc.freeze()


def install(full_interval: float, start_task: Callable[..., Any], sleep: Callable[[float], Any]) -> bool:
    """Freeze the app built so far, freeze survivors of each full collection, and collect thoroughly
    every `full_interval` seconds (0 or less: leave CPython's collector as it is). True if installed."""
    global _installed
    if full_interval <= 0 or _installed:
        return False
    _installed = True
    gc.collect()
    gc.freeze()  # modules, the app, its routes and templates: alive for the life of the process
    gc.callbacks.append(_freeze_survivors)
    start_task(_thorough_forever, full_interval, sleep)
    start_task(_young_forever, sleep)
    return True


def thorough_collection() -> tuple[int, float]:
    """Unfreeze, collect everything, freeze again: (objects freed, seconds it took)."""
    began = time.perf_counter()
    gc.unfreeze()
    freed = gc.collect()  # the callback freezes the survivors
    return freed, time.perf_counter() - began


def _young_forever(sleep: Callable[[float], Any]) -> None:
    """Collect the young generation every YOUNG_INTERVAL seconds, so it never grows large between
    the collections CPython starts (its callback then freezes the survivors)."""
    while True:
        sleep(YOUNG_INTERVAL)
        gc.collect(0)


def _thorough_forever(full_interval: float, sleep: Callable[[float], Any]) -> None:
    """Every `full_interval` seconds, reclaim the cycles frozen objects made since the last time."""
    while True:
        sleep(full_interval)
        try:
            freed, took = thorough_collection()
            log.info("thorough garbage collection: %d objects freed in %.0f ms, %d frozen",
                     freed, took * 1000, gc.get_freeze_count())
        except Exception:  # never end the loop: without it frozen cycles would accumulate for good
            log.exception("thorough garbage collection failed")


def uninstall() -> None:
    """Back to CPython's own behaviour (tests)."""
    global _installed
    if _freeze_survivors in gc.callbacks:
        gc.callbacks.remove(_freeze_survivors)
    gc.unfreeze()
    _installed = False
