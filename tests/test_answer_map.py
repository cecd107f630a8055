"""AnswerMap (native/answer_map.c): the result cache's storage, checked against a dict.

The cache's policy (tests/test_cache.py) rests on this map behaving as an insertion-ordered
dict of str -> answer. A failure here means the map returned an answer for the wrong key
or a changed answer, lost or kept an entry it should not have, broke insertion order,
leaked or over-released a reference, or held memory out of bounds. No server is
involved: the module is the same one the engine imports inside the server.
"""

import gc
import math
import random
import sys
from collections import defaultdict

import pytest

from sqlml._answer_map import AnswerMap


class Opaque:
    """An answer the map keeps as a reference."""

    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return isinstance(other, Opaque) and other.n == self.n

    __hash__ = None


def key_pool(rng: random.Random, n: int) -> list[str]:
    """Keys of every width and length: empty, ASCII around the inline limits, Latin-1,
    2- and 4-byte characters, a lone surrogate, and keys sharing long prefixes."""
    alphabets = ["abc", "é\xff", "Āλ€", "😀\U0010ffff", "a\ud800", "\x00\x01"]
    keys = {""}
    for _ in range(n):
        chars = rng.choice(alphabets) + rng.choice(alphabets)
        length = rng.choice([0, 1, 5, 9, 11, 14, 15, 16, 17, 19, 40])  # around the area's 22 bytes
        keys.add("\x01\x02\x03" + "".join(rng.choice(chars) for _ in range(length)))
    keys |= {"\x00\x01", "\u0100", "\x01\x00"}  # same bytes, different widths
    return sorted(keys)


def answer_pool(rng: random.Random) -> list:
    texts = ["", "a", "POSITIVE", "NEGATIVE9", "é", "ÿÿÿÿÿÿÿÿÿ", "λ", "λλλλ", "λλλλλ", "😀", "😀😀", "😀😀😀",
             "x\ud800", "0.5" * 30]
    return texts + [0.0, -0.0, 1.5, 1e308, float("inf"), float("nan"), None, 7, 2**80, ("t", 1), b"bytes",
                    Opaque(1), Opaque(2), True]


def same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return a == b


def check_equal(m: AnswerMap, model: dict, keys: list[str]) -> None:
    assert len(m) == len(model)
    assert m.front(len(model) + 5) == list(model)
    got = m.get_many(keys + [None], "MISSING")
    assert got[-1] == "MISSING"
    for key, value in zip(keys, got[:-1], strict=True):
        want = model.get(key, "MISSING")
        assert same(value, want), (key, value, want)
        assert (key in m) == (key in model)


@pytest.mark.parametrize("n_keys, batch, steps", [(400, 40, 6000), (12_000, 1500, 1500)])
def test_the_map_behaves_as_an_insertion_ordered_dict_under_every_operation(n_keys, batch, steps):
    # The second size passes the chunk size (2048 entries), so dead entries are compacted
    # away in the middle of the run and the table is made again many times.
    rng = random.Random(n_keys)
    keys, answers = key_pool(rng, n_keys), answer_pool(rng)
    m, model = AnswerMap(), {}
    max_batch = batch
    for step in range(steps):
        op = rng.random()
        if op < 0.35:
            batch = [rng.choice(keys) for _ in range(rng.randint(0, max_batch))]
            values = [rng.choice(answers) for _ in batch]
            new = [k for k in dict.fromkeys(batch) if k not in model]
            assert m.update_many(batch, values) == (len(new), sum(map(len, new)))
            model.update(zip(batch, values, strict=True))
        elif op < 0.55:
            for key in rng.sample(keys, min(len(keys), max_batch // 4 + 1)):
                assert m.move_to_end(key) == (key in model)
                if key in model:
                    model[key] = model.pop(key)
        elif op < 0.7:
            batch = [rng.choice(keys + [None]) for _ in range(rng.randint(0, max_batch))]
            gone = [k for k in dict.fromkeys(batch) if k in model]
            assert m.discard_many(batch) == (len(gone), sum(map(len, gone)))
            for k in gone:
                del model[k]
        elif op < 0.85:
            count, weight, overhead = rng.randint(-2, max_batch // 2), rng.randint(-5, 300), rng.randint(0, 50)
            popped, popped_weight = 0, 0
            while model and (popped < count or popped_weight < weight):
                key = next(iter(model))
                del model[key]
                popped += 1
                popped_weight += len(key) + overhead
            assert m.pop_front(count, weight, overhead) == (popped, popped_weight)
        elif op < 0.855:
            m.clear()
            model.clear()
        else:
            key = rng.choice(keys)
            assert same(m.get(key, "MISSING"), model.get(key, "MISSING"))
        if step % 50 == 0:
            check_equal(m, model, keys)
    check_equal(m, model, keys)


def test_a_key_never_finds_another_keys_answer_when_their_hashes_share_the_tag_or_the_bucket():
    # Keys whose str hashes agree in their low 32 bits (the map's tag and bucket) and keys
    # sharing the low 10 bits (one long probe run in a small table): only the full
    # comparison tells them apart.
    by_tag, by_bucket = defaultdict(list), defaultdict(list)
    for i in range(300_000):
        key = f"k{i}"
        by_tag[hash(key) & 0xFFFFFFFF].append(key)
        by_bucket[hash(key) & 0x3FF].append(key)
    same_tag = [group for group in by_tag.values() if len(group) > 1]
    assert same_tag, "no two of 300,000 keys share 32 hash bits: the birthday bound says ~10 should"
    crowded = max(by_bucket.values(), key=len)[:200]
    for group in same_tag + [crowded]:
        m = AnswerMap()
        m.update_many(group[:1], ["first"])
        assert all(m.get(k, "MISSING") == "MISSING" for k in group[1:])
        m.update_many(group, [f"answer of {k}" for k in group])
        assert m.get_many(group, None) == [f"answer of {k}" for k in group]
        m.discard_many(group[::2])
        assert m.get_many(group, None) == [None if i % 2 == 0 else f"answer of {k}" for i, k in enumerate(group)]


def test_references_kept_as_answers_are_released_on_every_way_out():
    answer = Opaque(9)
    base = sys.getrefcount(answer)
    m = AnswerMap()
    keys = [f"k{i}" for i in range(5000)]
    m.update_many(keys, [answer] * len(keys))
    assert sys.getrefcount(answer) == base + len(keys)
    m.update_many(keys[:100], [1.0] * 100)  # replaced
    m.discard_many(keys[100:200])
    m.pop_front(100, 0, 0)  # the replaced ones, now floats
    m.pop_front(100, 0, 0)
    for k in keys[300:2000]:
        m.move_to_end(k)  # moved entries keep their one reference
    assert sys.getrefcount(answer) == base + len(keys) - 300
    m.clear()
    assert sys.getrefcount(answer) == base
    m.update_many(keys, [answer] * len(keys))
    del m
    gc.collect()
    assert sys.getrefcount(answer) == base


def test_memory_stays_near_the_live_entries_through_moves_and_evictions():
    m = AnswerMap()
    n = 100_000
    keys = [f"\x01\x01\x01{i * 0.5}" for i in range(n)]
    m.update_many(keys, [float(i) for i in range(n)])
    per_entry = m.nbytes() / n
    assert per_entry <= 50, f"{per_entry:.1f} bytes an entry for short keys and float answers"
    for _ in range(3):
        for k in keys:
            m.move_to_end(k)  # every entry moved: the dead ones are compacted away
    assert m.nbytes() / n <= 1.6 * per_entry
    assert m.front(3) == keys[:3] and m.get(keys[5]) == 5.0
    m.pop_front(n - 10, 0, 0)
    assert len(m) == 10 and m.nbytes() < 70_000, m.nbytes()
    m.pop_front(10, 0, 0)
    assert len(m) == 0 and m.nbytes() < 200


def test_a_call_made_from_inside_another_call_is_refused_not_run_on_a_half_changed_map():
    m = AnswerMap()
    refused = []

    class Reentrant:
        def __del__(self):
            try:
                m.get("a")
            except RuntimeError as exc:
                refused.append(str(exc))

    m.update_many(["a", "b"], [Reentrant(), 1.0])
    m.discard_many(["a"])  # releasing the answer runs __del__ inside discard_many
    assert refused and "serialize access" in refused[0]
    assert m.get("b") == 1.0 and len(m) == 1


def test_bad_arguments_raise_clear_errors():
    m = AnswerMap()
    with pytest.raises(TypeError, match="keys are str"):
        m.update_many([b"bytes"], [1.0])
    with pytest.raises(ValueError, match="2 keys but 1 values"):
        m.update_many(["a", "b"], [1.0])
    with pytest.raises(TypeError, match="keys are str"):
        m.get(1)
    assert len(m) == 0
