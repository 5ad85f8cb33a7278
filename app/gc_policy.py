"""Garbage collection for a web process that holds thousands of sockets on one event loop.

CPython's full (generation 2) collection walks every live container in one stretch that never
yields. On eventlet's hub that stretch freezes every socket of the process: measured here, 0.5 s
at 3,000 connected sockets and 1.2 s at 10,000, every few seconds during a connect storm and every
~25 s at rest (the ping greenlets each socket starts live 25 s, so they reach generation 2 and
count towards the next full collection). Nearly everything such a collection walks is alive and
stays alive: the app, and each connected socket's state.

So after each collection of the older generations (1 and 2) its survivors are frozen (`gc.freeze()`:
moved to the permanent generation, which no automatic collection walks), and the next full
collection only walks what was made since. (Freezing after full collections alone still left
collections of 100 ms and more every few seconds in a storm: each walked all that survived since.) Reference counting still frees frozen objects; what it cannot free, a cycle among frozen
objects (a socket that was frozen and later closed leaves ~30 objects in cycles), waits for the
periodic thorough collection: every `full_interval` seconds everything is unfrozen, collected and
frozen again, one long stretch instead of one every few seconds. CPython 3.12+ does not change this
trade-off (3.14's incremental collector would); no library does it for us.
"""
from __future__ import annotations

import gc
import logging
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

SLOW_MS = 100  # a collection that held the event loop longer is logged: every socket waited for it
_installed = False
_started = [0.0]


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    """gc callback: after a collection of the older generations, move what survived out of every later
    automatic one (and log a collection that held the hub for long)."""
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    took_ms = (time.perf_counter() - _started[0]) * 1000
    if took_ms > SLOW_MS:
        log.warning("garbage collection of generation %d held every socket for %.0f ms (%d freed)",
                    info["generation"], took_ms, info["collected"])
    if info["generation"] >= 1:
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
    return True


def thorough_collection() -> tuple[int, float]:
    """Unfreeze, collect everything, freeze again: (objects freed, seconds it took)."""
    began = time.perf_counter()
    gc.unfreeze()
    freed = gc.collect()  # the callback freezes the survivors
    return freed, time.perf_counter() - began


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
