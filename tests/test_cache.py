"""The result cache's bounds (entries, bytes, age) and its bulk writes, in-process."""

import time

from sqlml.engine import cache as cachemod
from sqlml.engine.cache import MISS, ResultCache, entry_size


def keys(n, prefix="p"):
    return [("sagemaker", "ep", f"{prefix}{i}") for i in range(n)]


def test_put_many_then_get_returns_each_keys_own_value():
    c = ResultCache(100, 1 << 20, 60)
    ks = keys(10)
    c.put_many(ks, [f"v{i}" for i in range(10)])
    assert [c.get(k) for k in ks] == [f"v{i}" for i in range(10)]
    assert c.get(("sagemaker", "ep", "other")) is MISS
    assert c.get(("sagemaker", "other-ep", "p1")) is MISS


def test_bytes_are_counted_once_per_key_even_when_rewritten_or_repeated():
    c = ResultCache(100, 1 << 20, 60)
    ks = keys(5)
    c.put_many(ks + ks[:2], list(range(7)))  # a repeated key in one batch: the later value wins
    assert c.get(ks[0]) == 5 and c.get(ks[1]) == 6
    c.put_many(ks, list(range(5)))           # rewriting existing keys adds no bytes
    assert c.stats()["bytes"] == sum(entry_size(k) for k in ks)
    assert c.stats()["entries"] == 5


def test_least_recently_used_goes_first_when_entries_are_bounded():
    c = ResultCache(3, 1 << 20, 60)
    a, b, d, e = keys(4)
    c.put_many([a, b, d], [1, 2, 3])
    assert c.get(a) == 1                    # a is now the most recently used
    c.put_many([e], [4])
    assert c.get(b) is MISS and c.get(a) == 1 and c.get(e) == 4
    assert c.stats()["bytes"] == sum(entry_size(k) for k in (a, d, e))


def test_bytes_bound_evicts():
    size = entry_size(keys(1)[0])
    c = ResultCache(1000, size * 4, 60)
    c.put_many(keys(10), list(range(10)))
    stats = c.stats()
    assert stats["entries"] == 4 and stats["bytes"] <= size * 4
    assert c.get(keys(10)[9]) == 9 and c.get(keys(10)[0]) is MISS


def test_entries_expire_after_ttl_within_a_clock_tick():
    c = ResultCache(100, 1 << 20, 0.2)
    k = keys(1)
    c.put_many(k, ["x"])
    assert c.fresh(k[0]) and c.get(k[0]) == "x"
    time.sleep(0.2 + 3 * cachemod.CLOCK_TICK_S)
    assert not c.fresh(k[0])
    assert c.get(k[0]) is MISS
    assert c.stats()["entries"] == 0 and c.stats()["bytes"] == 0


def test_disabled_cache_stores_nothing():
    c = ResultCache(100, 1 << 20, 60, enabled=False)
    c.put_many(keys(3), [1, 2, 3])
    assert c.get(keys(3)[0]) is MISS and c.stats()["entries"] == 0
