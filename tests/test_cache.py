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


# ---- the compact storage (issue 16) -------------------------------------------------------


def test_targets_never_share_an_entry_even_when_prefix_and_payload_could_concatenate_alike():
    """Keys are a target id plus the payload: an endpoint, a language or a payload that
    would spell another key's bytes when joined must still miss."""
    c = ResultCache(100, 1 << 20, 60)
    stored = [("sagemaker", "ab", "c"), ("sagemaker", "a", "bc"), ("comprehend", "ab", "c"),
              ("sagemaker", "", "abc"), ("sagemaker", "abc", "")]
    c.put_many(stored, [f"answer of {k}" for k in stored])
    assert [c.get(k) for k in stored] == [f"answer of {k}" for k in stored]
    for other in [("sagemaker", "abc", "c"), ("comprehend", "a", "bc"), ("sagemaker", "ab", "bc"),
                  ("comprehend", "", "abc"), ("sagemaker", "a", "b")]:
        assert c.get(other) is MISS, other
    assert c.peek_many(stored + [("comprehend", "a", "bc"), None]) == [f"answer of {k}" for k in stored] + [MISS, MISS]
    assert c.unanswered(stored + [("comprehend", "a", "bc"), None]) == [False] * 5 + [True, False]


def test_many_targets_keep_their_own_answers():
    c = ResultCache(100_000, 1 << 30, 60)
    for t in range(300):  # past one character of target id (127)
        c.put_many([("sagemaker", f"ep{t}", str(i)) for i in range(20)], [t * 100 + i for i in range(20)])
    for t in (0, 126, 127, 128, 299):
        assert c.peek_many([("sagemaker", f"ep{t}", str(i)) for i in range(20)]) == [t * 100 + i for i in range(20)]
    assert c.stats()["entries"] == 6000


def test_lru_order_follows_hits_across_many_entries():
    c = ResultCache(1000, 1 << 30, 60)
    ks = keys(1000)
    c.put_many(ks, list(range(1000)))
    for k in ks[:500:2]:  # hit every other one of the first half: they become the most recent
        assert c.get(k) is not MISS
    c.put_many(keys(250, "new"), list(range(250)))  # 250 must go: the 250 least recently used
    kept = c.peek_many(ks)
    assert kept[:500:2] == list(range(0, 500, 2))           # hit: kept
    assert kept[1:500:2] == [MISS] * 250                    # not hit, oldest: evicted
    assert kept[500:] == list(range(500, 1000))
    assert c.stats()["entries"] == 1000


def test_peek_and_fresh_do_not_change_recency():
    c = ResultCache(2, 1 << 20, 60)
    a, b, d = keys(3)
    c.put_many([a, b], [1, 2])
    assert c.fresh(a) and c.peek_many([a]) == [1] and not c.unanswered([a])[0]
    c.put_many([d], [3])  # a is still the least recently used
    assert c.peek_many([a, b, d]) == [MISS, 2, 3]


def test_byte_count_follows_every_path_out():
    size = entry_size(keys(1)[0])
    c = ResultCache(1000, 1 << 30, 60)
    c.put_many(keys(10), list(range(10)))
    assert c.stats()["bytes"] == 10 * size
    c.configure(4, 1 << 30, 60, True)  # lowering a bound evicts at once
    assert c.stats() == {**c.stats(), "entries": 4, "bytes": 4 * size}
    assert c.clear() == 4 and c.stats()["bytes"] == 0 and c.stats()["entries"] == 0


def test_a_rewrite_in_a_later_generation_moves_the_key_and_counts_it_once(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(cachemod, "_monotonic", lambda: now[0])
    monkeypatch.setattr(cachemod._clock, "now", 1000.0)
    c = ResultCache(100, 1 << 20, 80)  # generations of 10 s
    a, b = keys(2)
    c.put_many([a, b], ["a1", "b1"])
    now[0] = 1020.0
    cachemod._clock.now = 1020.0
    c.put_many([a], ["a2"])  # a new generation: a moves there, with its new expiry
    assert c.stats()["generations"] == 2 and c.stats()["entries"] == 2
    assert c.stats()["bytes"] == 2 * entry_size(a)
    now[0] = cachemod._clock.now = 1000.0 + 80.5  # b's generation has expired, a's not
    assert c.get(b) is MISS and c.get(a) == "a2"
    assert c.stats()["entries"] == 1 and c.stats()["bytes"] == entry_size(a)
    now[0] = cachemod._clock.now = 1020.0 + 80.5
    assert c.peek_many([a]) == [MISS] and c.stats()["entries"] == 0


def test_an_answer_never_outlives_its_ttl(monkeypatch):
    """The generation's expiry is its opening plus the TTL: an entry written later in
    it expires early, never late."""
    monkeypatch.setattr(cachemod._clock, "now", 0.0)
    now = [0.0]
    monkeypatch.setattr(cachemod, "_monotonic", lambda: now[0])
    c = ResultCache(100, 1 << 20, 80)
    for t in range(0, 200, 3):  # a write every 3 s
        now[0] = cachemod._clock.now = float(t)
        c.put_many([("sagemaker", "ep", f"at{t}")], [t])
        for u in range(0, t + 1, 3):  # nothing written more than 80 s ago is served
            got = c.peek_many([("sagemaker", "ep", f"at{u}")])[0]
            assert got is MISS or t - u <= 80, (t, u)
            if t - u <= 80 - 10:  # and what is well within its TTL is (generations: 10 s)
                assert got == u, (t, u)
    assert c.stats()["generations"] <= 10


def test_threads_reading_and_writing_never_see_another_keys_answer():
    import threading
    c = ResultCache(5000, 1 << 30, 60)
    errors = []

    def writer(w):
        for r in range(20):
            ks = [("sagemaker", f"ep{w % 2}", f"{w}-{r}-{i}") for i in range(300)]
            c.put_many(ks, [k[1] + k[2] for k in ks])

    def reader():
        for r in range(20):
            for w in range(4):
                ks = [("sagemaker", f"ep{w % 2}", f"{w}-{r}-{i}") for i in range(300)]
                for k, v in zip(ks, c.peek_many(ks), strict=True):
                    if v is not MISS and v != k[1] + k[2]:
                        errors.append((k, v))
                for k in ks[:30]:
                    v = c.get(k)
                    if v is not MISS and v != k[1] + k[2]:
                        errors.append((k, v))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)] + [threading.Thread(target=reader)
                                                                                  for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert c.stats()["entries"] <= 5000


def test_an_entry_costs_at_most_110_bytes_besides_its_answer():
    """Bytes per entry, by tracemalloc, over 200,000 sagemaker entries like the
    engine's (the keys given and the answers excluded: they exist anyway). The
    OrderedDict of key tuples -> (answer, expiry) took 161 here (its share of the key
    tuple not counted), this storage 98."""
    import gc
    import tracemalloc
    n = 200_000
    ks = [("sagemaker", "ep", repr(i * 0.25)) for i in range(1, n + 1)]
    values = [i * 0.5 for i in range(n)]
    gc.collect()
    tracemalloc.start()
    c = ResultCache(2 * n, 1 << 30, 60)
    for i in range(0, n, 10_000):
        c.put_many(ks[i:i + 10_000], values[i:i + 10_000])
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert c.stats()["entries"] == n
    assert used / n <= 110, used / n


def test_one_targets_payload_calls_are_the_keyed_calls(monkeypatch):
    """put_payloads / peek_payloads / unanswered_payloads (the warm-up's calls, without a
    key tuple per row) store and find exactly what put_many / peek_many do, across
    targets and generations, None payloads included."""
    now = [1000.0]
    monkeypatch.setattr(cachemod, "_monotonic", lambda: now[0])
    monkeypatch.setattr(cachemod._clock, "now", 1000.0)
    c = ResultCache(100, 1 << 20, 80)
    assert c.peek_payloads("sagemaker", "ep", ["p0", None]) == [MISS, MISS]  # a target never stored
    c.put_payloads("sagemaker", "ep", ["p0", "p1", "p2"], [0.5, "one", ("t",)])
    c.put_payloads("sagemaker", "ep2", ["p0"], ["other"])
    assert c.peek_many(keys(3)) == [0.5, "one", ("t",)]
    assert c.peek_payloads("sagemaker", "ep", ["p2", None, "p9", "p0"]) == [("t",), MISS, MISS, 0.5]
    assert c.peek_payloads("sagemaker", "ep2", ["p0", "p1"]) == ["other", MISS]
    assert c.unanswered_payloads("sagemaker", "ep", ["p1", None, "p9"]) == [False, False, True]
    assert c.stats()["entries"] == 4 and c.stats()["bytes"] == sum(entry_size(k) for k in keys(3) + keys(1))
    now[0] = cachemod._clock.now = 1020.0  # a later generation: the key moves, counted once
    c.put_payloads("sagemaker", "ep", ["p1"], ["uno"])
    assert c.stats()["generations"] == 2 and c.stats()["entries"] == 4
    assert c.peek_payloads("sagemaker", "ep", ["p0", "p1"]) == [0.5, "uno"]
    c.configure(100, 1 << 20, 80, False)
    assert c.peek_payloads("sagemaker", "ep", ["p0", None]) == [MISS, MISS]
    assert c.unanswered_payloads("sagemaker", "ep", ["p0", None]) == [True, False]
    c.put_payloads("sagemaker", "ep", ["p5"], [5])
    assert c.stats()["entries"] == 0
