"""services.saver_inlet.routing: live savers, and one owner per routing key."""

from __future__ import annotations

from collections import Counter

from common.messages import route_key
from services.saver_inlet.routing import Savers

KEYS = [route_key(f"publication {i}") for i in range(400)]


def savers_heard(*ids: bytes, clock=lambda: 0.0) -> Savers:
    savers = Savers(ttl=3.0, clock=clock)
    for saver in ids:
        savers.heard(saver)
    return savers


def test_no_saver_no_owner():
    assert Savers(ttl=3.0).owner(KEYS[0]) is None


def test_every_key_has_one_owner_and_the_keys_spread():
    savers = savers_heard(b"s1", b"s2", b"s3", b"s4")
    owners = Counter(savers.owner(key) for key in KEYS)
    assert set(owners) == {b"s1", b"s2", b"s3", b"s4"}
    assert min(owners.values()) > 400 / 4 * 0.6
    # The same key, the same owner, whichever order the savers were heard in.
    again = savers_heard(b"s4", b"s2", b"s1", b"s3")
    assert [again.owner(k) for k in KEYS] == [savers.owner(k) for k in KEYS]


def test_a_saver_leaving_moves_only_its_own_keys():
    savers = savers_heard(b"s1", b"s2", b"s3", b"s4")
    before = {key: savers.owner(key) for key in KEYS}
    savers.forget(b"s3")
    after = {key: savers.owner(key) for key in KEYS}
    moved = [key for key in KEYS if before[key] != after[key]]
    assert moved == [key for key in KEYS if before[key] == b"s3"]
    assert b"s3" not in after.values()


def test_a_new_saver_takes_keys_only_for_itself():
    savers = savers_heard(b"s1", b"s2")
    before = {key: savers.owner(key) for key in KEYS}
    savers.heard(b"s3")
    after = {key: savers.owner(key) for key in KEYS}
    assert all(after[k] in (before[k], b"s3") for k in KEYS)
    assert 0 < sum(after[k] == b"s3" for k in KEYS) < 400 * 0.5


def test_a_silent_saver_expires():
    now = [0.0]
    savers = savers_heard(b"s1", b"s2", clock=lambda: now[0])
    now[0] = 2.0
    savers.heard(b"s1")
    now[0] = 4.0
    assert savers.expire() == [b"s2"]
    assert len(savers) == 1
    assert {savers.owner(k) for k in KEYS} == {b"s1"}
