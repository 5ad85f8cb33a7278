"""Load without loss: many users, two tabs each, exports launched at once on two workers."""
from __future__ import annotations

import threading
import time

from tests.harness import assert_well_ordered, new_user

USERS = 20


def test_twenty_users_two_tabs_each(make_stack):
    """Every task ends; every tab receives its user's terminal event and nothing of anyone else's."""
    stack = make_stack(workers=2, held=False)  # real exports, free-running
    users = [new_user(stack, posts=2_000) for _ in range(USERS)]
    tabs = {u.username: (u.socket(), u.socket()) for u in users}
    try:
        barrier = threading.Barrier(USERS)
        tokens = {u.username: u.csrf() for u in users}
        codes: list[int] = []

        def click(user) -> None:
            barrier.wait()
            codes.append(user.http.post(f"{stack.url}/export_posts", data={"csrf_token": tokens[user.username]},
                                        allow_redirects=False).status_code)

        started = time.monotonic()
        threads = [threading.Thread(target=click, args=(u,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert codes == [303] * USERS
        task_of = {u.username: u.tasks()[0]["task_id"] for u in users}
        for user in users:
            for tab in tabs[user.username]:
                end = tab.terminal(task_of[user.username], timeout=180)
                assert end["status"] == "finished", end
                assert {e["task_id"] for e in tab.events} == {task_of[user.username]}, "foreign events"
                assert_well_ordered(tab.of(task_of[user.username]))
        print(f"\n{USERS} exports on 2 workers, all ended and seen by {2 * USERS} tabs in "
              f"{time.monotonic() - started:.1f} s")
        assert len({m.rcpt[0] for m in stack.smtp.mails}) == USERS
    finally:
        for pair in tabs.values():
            for tab in pair:
                tab.close()
