"""Request ids: 64 random bits as 16 hex digits, a trusted proxy's own id kept when it is a
plain token, and distinct in forked workers (the generator is in-process)."""

from __future__ import annotations

import os
import re

from authgate.logs import fresh_request_id, new_request_id

HEX16 = re.compile(r"^[0-9a-f]{16}$")


def test_fresh_ids_are_16_hex_digits_and_do_not_repeat() -> None:
    ids = [fresh_request_id() for _ in range(10_000)]
    assert all(HEX16.match(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_an_offered_id_is_kept_only_when_it_is_a_plain_token() -> None:
    assert new_request_id("proxy-42.a:b_c") == "proxy-42.a:b_c"
    for bad in ("", "has space", "x" * 129, "new\nline", "ü"):
        assert HEX16.match(new_request_id(bad))


def test_a_forked_worker_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out without running pytest's teardown
        os.close(read)
        os.write(write, " ".join(fresh_request_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    parent = {fresh_request_id() for _ in range(50)}
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    assert len(child) == 50
    assert not parent & child


def test_the_apps_own_seeding_of_random_does_not_repeat_ids() -> None:
    import random

    random.seed(0)
    first = [fresh_request_id() for _ in range(5)]
    random.seed(0)
    assert not set(first) & {fresh_request_id() for _ in range(5)}
