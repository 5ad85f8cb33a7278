"""The web process's garbage collection policy (app/gc_policy.py): what survives a collection of the
older generations is frozen out of later automatic ones, and the periodic thorough collection still
reclaims cycles among frozen objects."""
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


def test_install_freezes_what_exists_and_starts_the_thorough_task(policy):
    """Objects alive at start-up leave automatic collections; the thorough collection is scheduled."""
    assert gc.get_freeze_count() > 0
    (task, interval, _sleep), = policy
    assert task.__name__ == "_thorough_forever" and interval == 600


def test_survivors_of_an_older_collection_are_frozen(policy):
    """A live object that survives a generation-1 collection moves to the permanent generation."""
    keep, _ = cycle()
    frozen = gc.get_freeze_count()
    gc.collect(1)
    assert gc.get_freeze_count() >= frozen + 2
    assert not any(o is keep for o in gc.get_objects(2))  # no automatic collection walks it again
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
