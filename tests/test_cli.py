"""`flask seed-posts USERNAME COUNT`: bulk posts for demos and benchmarks."""
from __future__ import annotations

import itertools
from datetime import timedelta

from app.models import Post, utcnow
from tests.factories import count, post_bodies, post_rows


def test_seed_posts_adds_count_oldest_first(app, runner, make_user):
    """COUNT posts are added, oldest first, each with its own increasing time stamp, the newest one now."""
    alice = make_user("alice")
    before = utcnow()
    result = runner.invoke(args=["seed-posts", "alice", "50"])
    assert result.exit_code == 0, result.output
    assert "Added 50 posts to alice" in result.output
    assert count(app, Post) == count(app, Post, user_id=alice.id) == 50
    rows = post_rows(app, alice.id)
    assert [body for body, _ in rows] == [f"Seed post {i} of 50" for i in range(1, 51)]
    stamps = [stamp for _, stamp in rows]
    assert all(a < b for a, b in itertools.pairwise(stamps)), "timestamps must strictly increase in insertion order"
    # The newest seeded post is "now", so a post published next shows above them all.
    assert before - timedelta(seconds=1) <= stamps[-1] <= utcnow()


def test_seed_posts_larger_than_one_chunk_keeps_every_post_in_order(app, runner, make_user):
    """A seed spanning several chunks (and, on PostgreSQL, many reads of COPY's stream) loses and
    repeats nothing: every body once, in order, time stamps strictly increasing."""
    from app.cli import SEED_COPY_CHUNK

    alice = make_user("alice")
    total = SEED_COPY_CHUNK * 2 + 345  # three chunks, the last one partial; ~200 KB of COPY text
    result = runner.invoke(args=["seed-posts", "alice", str(total)])
    assert result.exit_code == 0, result.output
    rows = post_rows(app, alice.id)
    assert [body for body, _ in rows] == [f"Seed post {i} of {total}" for i in range(1, total + 1)]
    assert all(a < b for a, b in itertools.pairwise(stamp for _, stamp in rows))


def test_copy_stream_hands_out_every_byte_once_whatever_the_read_size():
    """COPY's file object: any read size gives back exactly the chunks' bytes, then b"" for ever."""
    from app.cli import _Stream

    chunks = ["ab", "", "cdé\n", "f" * 100]
    expected = "".join(chunks).encode()
    for size in (1, 3, 7, 64, 1 << 16, -1):
        stream, got = _Stream(iter(chunks)), b""
        while data := stream.read(size):
            assert size < 0 or len(data) <= size
            got += data
        assert got == expected, size
        assert stream.read(size) == b""


def test_seeded_posts_add_up_and_show_on_profile(app, client, auth, runner, make_user, make_posts):
    """Seeding twice adds up, other users keep their posts, and the profile shows the newest first."""
    alice = make_user("alice")
    bob = make_user("bob")
    make_posts(bob.id, 2)
    assert runner.invoke(args=["seed-posts", "alice", "3"]).exit_code == 0
    assert runner.invoke(args=["seed-posts", "alice", "4"]).exit_code == 0
    assert count(app, Post, user_id=alice.id) == 7
    assert count(app, Post, user_id=bob.id) == 2
    auth.login("alice")
    # Each run ends "now", one second apart, so the two runs interleave by time: the page follows time.
    newest_first = [body for body, _ in sorted(post_rows(app, alice.id), key=lambda row: row[1], reverse=True)]
    shown = post_bodies(client.get("/user/alice").get_data(as_text=True))
    assert shown[0] == "Seed post 4 of 4"
    assert shown == newest_first[:len(shown)] and len(shown) == 5


def test_seed_posts_unknown_user(app, runner, make_user):
    """An unknown user is a clear error, a failing exit code, and nothing is added."""
    make_user("alice")
    result = runner.invoke(args=["seed-posts", "nobody", "5"])
    assert result.exit_code != 0
    assert "No user named 'nobody'" in result.output
    assert "Traceback" not in result.output
    assert count(app, Post) == 0


def test_seed_posts_bad_count(app, runner, make_user, subtests):
    """A count that is not a whole number from 1 up is a clear error about COUNT; nothing is added."""
    make_user("alice")
    cases = [
        (["x"], "COUNT must be a whole number, got 'x'."),
        (["1.5"], "COUNT must be a whole number, got '1.5'."),
        (["0"], "COUNT must be between 1 and"),
        (["-5"], "COUNT must be between 1 and"),
        (["50000001"], "COUNT must be between 1 and"),
        ([], "Missing argument 'COUNT'"),
    ]
    for count_args, message in cases:
        with subtests.test(count=count_args):
            result = runner.invoke(args=["seed-posts", "alice", *count_args])
            assert result.exit_code != 0
            assert message in result.output, result.output
            assert "Traceback" not in result.output
            assert count(app, Post) == 0
