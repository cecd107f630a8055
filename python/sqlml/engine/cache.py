"""The result cache: answers keyed by service, target and the exact payload.

Keys are ("comprehend", language, text) and ("sagemaker", endpoint, csv_line), so the
sentiment and confidence functions on the same text share one Comprehend answer, and a
warm-up (warmup.py) that fills it makes every later read a lookup by the row's own input:
a result can never land on another row. Bounded by entries and by bytes (least recently
used first out) and by age (ttl_s). ML answers are not deterministic: within ttl_s a
repeated input returns the cached answer, not a fresh one (README: "Result cache").

Reads are on every row of the batch path, so they take no lock: under the GIL one
OrderedDict lookup or move_to_end is atomic, and a read needs nothing more. Writes
(a whole batch's answers at once), eviction and clearing keep the byte count and take
the lock. An entry is (value, expires_at); its size is derived from its key, so the
byte count needs no per-entry number.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import OrderedDict
from itertools import repeat
from operator import itemgetter

from .. import host

MISS = object()
# Per entry besides the payload: key tuple, entry tuple, the answer object, the
# OrderedDict's slot and node, about 330 bytes by their sizes. (bench_batching: the
# server's RSS grew 391 MiB over 1M entries of short CSV lines, the warm-up's transient
# buffers included.)
ENTRY_OVERHEAD_BYTES = 330

_monotonic = time.monotonic
CLOCK_TICK_S = 0.05


class _CoarseClock:
    """time.monotonic(), read by a ticker thread every CLOCK_TICK_S.

    Reading the clock costs 0.2-1 µs on this kind of virtual machine, more than a
    cache lookup; reads compare expiries with this attribute instead, so an entry may
    live up to CLOCK_TICK_S past its TTL."""

    def __init__(self):
        self.now = _monotonic()
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                threading.Thread(target=self._tick, name="sqlml-clock", daemon=True).start()

    def _tick(self) -> None:
        while True:
            time.sleep(CLOCK_TICK_S)
            self.now = _monotonic()


_clock = _CoarseClock()


def entry_size(key: tuple) -> int:
    """The bytes one entry is charged: its payload (the key's last part) plus overhead."""
    return len(key[-1]) + ENTRY_OVERHEAD_BYTES


def release_memory() -> None:
    """Hands what a cleared cache held back to the system, so that the server's RSS
    after sqlml_cache_clear() does not drift up from cycle to cycle (bench/bench_memory.py).

    Two allocators keep freed memory. Python's: a 1 MiB obmalloc arena goes back only
    when empty, and the interpreter's free lists keep a few thousand of the last tuples,
    floats and dicts freed, which after a million entries lie scattered over as many
    arenas and pin some 60 MB; only a full collection empties those lists (it finds
    little garbage: the cost is the walk over the unfrozen objects, a few ms). Then
    the C allocator's: the pages of its free chunks (glibc's malloc_trim, or tcmalloc's
    free spans; native/pyhost.c)."""
    gc.collect()
    host.release_memory()


class ResultCache:
    def __init__(self, max_entries: int, max_bytes: int, ttl_s: float, enabled: bool = True):
        self._lock = threading.Lock()
        self._items: OrderedDict = OrderedDict()  # key -> (value, expires_at)
        self._bytes = 0
        self.configure(max_entries, max_bytes, ttl_s, enabled)
        _clock.start()

    def configure(self, max_entries: int, max_bytes: int, ttl_s: float, enabled: bool) -> None:
        with self._lock:
            self.max_entries, self.max_bytes, self.ttl_s, self.enabled = max_entries, max_bytes, ttl_s, enabled
            if not enabled:
                self._items.clear()
                self._bytes = 0
                host.memo_invalidate()
            self._evict()

    def get(self, key):
        """The cached answer for key (and it becomes the most recently used), or MISS."""
        item = self._items.get(key)
        if item is None or not self.enabled:
            return MISS
        if item[1] < _clock.now:
            self._expire(key, item)
            return MISS
        try:
            self._items.move_to_end(key)
        except KeyError:  # evicted or cleared by another thread just now
            pass
        return item[0]

    def fresh(self, key) -> bool:
        """Whether key has an answer that has not expired; does not touch its recency."""
        item = self._items.get(key)
        return item is not None and self.enabled and item[1] >= _clock.now

    def unanswered(self, keys: list) -> list[bool]:
        """Per key, whether it lacks a fresh answer (False for None): fresh() for many."""
        if not self.enabled:
            return [key is not None for key in keys]
        get, now = self._items.get, _clock.now
        return [key is not None and ((item := get(key)) is None or item[1] < now) for key in keys]

    def peek_many(self, keys: list) -> list:
        """Per key, its fresh answer or MISS (also for None); recency is not touched."""
        if not self.enabled:
            return [MISS] * len(keys)
        get, now = self._items.get, _clock.now
        return [MISS if key is None or (item := get(key)) is None or item[1] < now else item[0] for key in keys]

    def contains(self, key) -> bool:
        return self.get(key) is not MISS

    def put(self, key, value) -> None:
        self.put_many([key], [value])

    def put_many(self, keys: list, values: list) -> None:
        """Stores values[i] under keys[i]: one lock and one eviction pass for a whole batch.

        A key already present keeps its place and gets the new answer and expiry (its
        size, derived from the key, is unchanged)."""
        if not self.enabled or not keys:
            return
        items = self._items
        with self._lock:
            new_keys = [key for key in keys if key not in items]
            before = len(items)
            items.update(zip(keys, zip(values, repeat(_monotonic() + self.ttl_s))))
            if len(items) - before != len(new_keys):  # a key repeated within the batch
                new_keys = list(dict.fromkeys(new_keys))
            self._bytes += sum(map(len, map(itemgetter(-1), new_keys))) + ENTRY_OVERHEAD_BYTES * len(new_keys)
            self._evict()

    def clear(self) -> int:
        with self._lock:
            n = len(self._items)
            self._items.clear()
            self._bytes = 0
        host.memo_invalidate()  # and what statements running now keep in C (native/memo.h)
        release_memory()
        return n

    def stats(self) -> dict:
        with self._lock:
            return {"entries": len(self._items), "bytes": self._bytes, "max_entries": self.max_entries,
                    "max_bytes": self.max_bytes, "ttl_s": self.ttl_s, "enabled": self.enabled}

    def _expire(self, key, item) -> None:
        with self._lock:
            if self._items.get(key) is item:
                del self._items[key]
                self._bytes -= entry_size(key)

    def _evict(self) -> None:
        items = self._items
        while items and (len(items) > self.max_entries or self._bytes > self.max_bytes):
            key, _ = items.popitem(last=False)
            self._bytes -= entry_size(key)
