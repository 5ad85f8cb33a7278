"""The web process's garbage collection policy (app/gc_policy.py): what survives any collection is
frozen out of later automatic ones, young collections run on a timer too, and the periodic thorough
collection still reclaims cycles among frozen objects."""
from __future__ import annotations

import gc
import weakref

import pytest

from app import gc_policy


class Node:
    """A plain object that can sit in a reference cycle."""


@pytest.fixture
def policy():
    """The policy installed without its periodic task; CPython's behaviour restored afterwards."""
    started = []
    assert gc_policy.install(600, lambda *args: started.append(args), lambda s: None)
    yield started
    gc_policy.uninstall()


def cycle() -> tuple[Node, weakref.ref]:
    """Two objects referring to each other; a weak reference tells when they are freed."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


def test_install_freezes_what_exists_and_starts_the_periodic_tasks(policy):
    """Objects alive at start-up leave automatic collections; the thorough and young collections are scheduled."""
    assert gc.get_freeze_count() > 0
    (thorough, interval, _), (young, _) = policy
    assert thorough.__name__ == "_thorough_forever" and interval == 600
    assert young.__name__ == "_young_forever"


@pytest.mark.parametrize("generation", [0, 1])
def test_survivors_of_any_collection_are_frozen(policy, generation):
    """A live object that survives a collection, young or older, moves to the permanent generation."""
    keep, _ = cycle()
    frozen = gc.get_freeze_count()
    gc.collect(generation)
    assert gc.get_freeze_count() >= frozen + 2
    assert not any(o is keep for g in (0, 1, 2) for o in gc.get_objects(g))  # no automatic collection walks it again
    del keep


def test_young_collections_run_on_a_timer(policy):
    """_young_forever collects the young generation after each interval: what it finds alive is frozen."""
    class Stop(Exception):
        pass

    naps: list[float] = []
    keep, _ = cycle()

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            raise Stop

    frozen = gc.get_freeze_count()
    with pytest.raises(Stop):
        gc_policy._young_forever(sleep)
    assert naps == [gc_policy.YOUNG_INTERVAL] * 2
    assert gc.get_freeze_count() >= frozen + 2  # one collection ran between the two naps
    del keep


def test_young_cycles_are_still_collected(policy):
    """Garbage that dies before any older collection is freed by the ordinary young collections."""
    a, ref = cycle()
    del a
    gc.collect(0)
    assert ref() is None


def test_thorough_collection_frees_cycles_among_frozen_objects(policy):
    """A cycle that was alive when frozen and died later is freed by the periodic thorough collection."""
    a, ref = cycle()
    gc.collect(1)  # frozen while alive (a socket that stays a while)
    del a  # the socket closes: its cycle is garbage, but frozen
    gc.collect()
    assert ref() is not None  # automatic and ordinary full collections no longer see it
    freed, seconds = gc_policy.thorough_collection()
    assert ref() is None and freed >= 2 and seconds >= 0
    assert gc.get_freeze_count() > 0  # and the survivors are frozen again


def test_zero_interval_leaves_cpython_alone():
    """GC_FULL_INTERVAL=0 installs nothing."""
    assert not gc_policy.install(0, lambda *a: None, lambda s: None)
    assert gc_policy._freeze_survivors not in gc.callbacks
