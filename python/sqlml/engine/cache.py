"""The result cache: answers keyed by service, target and the exact payload.

Keys are ("comprehend", language, text) and ("sagemaker", endpoint, csv_line), so the
sentiment and confidence functions on the same text share one Comprehend answer, and a
warm-up (warmup.py) that fills it makes every later read a lookup by the row's own input:
a result can never land on another row. Bounded by entries and by bytes (least recently
used first out, within a write generation: below) and by age (ttl_s). ML answers are not
deterministic: within ttl_s a repeated input returns the cached answer, not a fresh one
(docs/sql.md: "The result cache").

Storage, for memory (about 45 bytes an entry in the server for a SageMaker answer to a
short CSV line, the answer included; bench/bench_memory.py measures it):
- one AnswerMap per write generation (native/answer_map.c: an insertion-ordered map kept
  in C, 32 bytes an entry plus its slot; a float answer is a double there, a str its
  characters, in the entry with the key when both fit, anything else a reference). Its
  key is one str: the target's id (every id has TARGET_ID_CHARS characters, and no two
  targets share one, so keys of two targets differ in those first characters) followed
  by the exact payload. The whole input is the key, compared in full on every lookup
  (after its str hash: keyed, so no input can be made to collide on purpose): two
  inputs never share an entry, no digest is involved.
- the expiry is the generation's: every entry written within GENERATION_FRACTION of
  ttl_s shares one generation, which expires ttl_s after it was opened, so an answer can
  expire up to that fraction of the TTL early (a fresh request then), never late.
- recency: a hit moves its entry to the end of its generation's map, and eviction takes
  the oldest generation's entries from its front: exact LRU among entries written in
  one generation, older generations first (they also expire first).
A key is in at most one generation: rewriting it moves it to the newest. The maps are
mechanism only; every rule above is this module's.

Every access takes the lock (one acquire per call, also for the bulk calls): the maps
rely on it (one that is used by two callers at once refuses the second).
"""

from __future__ import annotations

import gc
import threading
import time

from .. import host
from .._answer_map import AnswerMap

MISS = object()
# What an entry is charged besides its payload, for cache_max_mb: its AnswerMap entry
# (32 bytes), its slot (4 bytes at a load between a quarter and a half: 8 to 16) and,
# for a key too long to share the entry with its answer, the key's block's allocator
# header (16). A short payload with a short answer costs less (no block: about 45 bytes
# in all, bench/bench_memory.py); a long text answer costs its length more.
ENTRY_OVERHEAD_BYTES = 56
# A target's id: this many characters, each 1..127, so that the compact key stays an
# ASCII str when the payload is ASCII; 127**3 targets (ids are not reused).
TARGET_ID_CHARS = 3
# A generation holds what is written within this fraction of the TTL.
GENERATION_FRACTION = 1 / 8

_monotonic = time.monotonic
CLOCK_TICK_S = 0.05


class _CoarseClock:
    """time.monotonic(), read by a ticker thread every CLOCK_TICK_S.

    Reading the clock can cost more than a cache lookup on a virtual machine; reads
    compare expiries with this attribute instead, so an entry may live up to
    CLOCK_TICK_S past its TTL."""

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


def release_memory() -> None:
    """Hands what a cleared cache held back to the system, so that the server's RSS
    after sqlml_cache_clear() does not drift up from cycle to cycle (bench/bench_memory.py).

    Two allocators keep freed memory. Python's: a 1 MiB obmalloc arena goes back only
    when empty, and the interpreter's free lists keep a few thousand of the last tuples,
    floats and dicts freed, which after a statement over a million rows lie scattered
    over as many arenas and pin tens of MB; only a full collection empties those lists
    (it finds little garbage: the cost is the walk over the unfrozen objects, a few ms). Then
    the C allocator's: the pages of its free chunks (glibc's malloc_trim, or tcmalloc's
    free spans; native/pyhost.c)."""
    gc.collect()
    host.release_memory()


def entry_size(key: tuple) -> int:
    """The bytes one entry is charged: its payload (the key's last part) plus overhead."""
    return len(key[-1]) + ENTRY_OVERHEAD_BYTES


class _Generation:
    """The entries written from `opened` on, for GENERATION_FRACTION of the TTL."""

    __slots__ = ("items", "opened", "expires", "bytes")

    def __init__(self, opened: float, ttl_s: float):
        self.items = AnswerMap()  # compact key -> answer, least recently used first
        self.opened = opened
        self.expires = opened + ttl_s
        self.bytes = 0


class ResultCache:
    def __init__(self, max_entries: int, max_bytes: int, ttl_s: float, enabled: bool = True):
        self._lock = threading.Lock()
        self._gens: list[_Generation] = []  # oldest first
        self._n = 0
        self._bytes = 0
        self._ids: dict[str, dict[str, str]] = {}  # service -> target name -> its id
        self.configure(max_entries, max_bytes, ttl_s, enabled)
        _clock.start()

    def configure(self, max_entries: int, max_bytes: int, ttl_s: float, enabled: bool) -> None:
        with self._lock:
            if ttl_s != getattr(self, "ttl_s", ttl_s):  # the expiries kept were for the old TTL
                for g in self._gens:
                    g.expires = g.opened + ttl_s
            self.max_entries, self.max_bytes, self.ttl_s, self.enabled = max_entries, max_bytes, ttl_s, enabled
            if not enabled:
                self._drop_all()
                host.memo_invalidate()
            self._evict()

    # ---- compact keys ----------------------------------------------------------------

    def _id(self, service: str, name: str, make: bool) -> str | None:
        names = self._ids.get(service)
        found = names.get(name) if names is not None else None
        if found is not None or not make:
            return found
        n = sum(map(len, self._ids.values()))
        if n >= 127 ** TARGET_ID_CHARS:
            return None  # not cached: its reads miss, which is always safe
        digits = []
        for _ in range(TARGET_ID_CHARS):
            n, d = divmod(n, 127)
            digits.append(chr(d + 1))
        found = self._ids.setdefault(service, {})[name] = "".join(digits)
        return found

    def _compact(self, keys: list, make: bool) -> list:
        """Per key (service, name, payload), its compact key, or None (for None, or a
        target never stored when make is false: nothing of it can be cached)."""
        out: list = []
        append = out.append
        last_service = last_name = prefix = None
        for key in keys:
            if key is None:
                append(None)
                continue
            if key[1] is not last_name or key[0] is not last_service:  # mostly one target
                last_service, last_name = key[0], key[1]
                prefix = self._id(last_service, last_name, make)
            append(None if prefix is None else prefix + key[2])
        return out

    # ---- reads -----------------------------------------------------------------------

    def _find(self, compact: str):
        """(generation, answer) for a compact key in a live generation, or (None, MISS).
        Under the lock. Expired generations go on the way."""
        gens = self._gens
        if gens and gens[0].expires < _clock.now:
            self._expire()
        for g in reversed(gens):
            value = g.items.get(compact, MISS)
            if value is not MISS:
                return g, value
        return None, MISS

    def get(self, key):
        """The cached answer for key (and it becomes the most recently used), or MISS."""
        if not self.enabled:
            return MISS
        names = self._ids.get(key[0])  # _id(), inline: ids are only ever added, no lock needed to read
        prefix = names.get(key[1]) if names is not None else None
        if prefix is None:
            return MISS
        compact = prefix + key[2]
        with self._lock:
            gens = self._gens
            if len(gens) == 1 and gens[0].expires >= _clock.now:  # _find() of the usual case, inline
                g = gens[0]
                value = g.items.get(compact, MISS)
            else:
                g, value = self._find(compact)
            if value is MISS:
                return MISS
            g.items.move_to_end(compact)  # the most recently used of its generation
            return value

    def fresh(self, key) -> bool:
        """Whether key has an answer that has not expired; does not touch its recency."""
        if not self.enabled:
            return False
        prefix = self._id(key[0], key[1], False)
        if prefix is None:
            return False
        with self._lock:
            return self._find(prefix + key[2])[0] is not None

    def unanswered(self, keys: list) -> list[bool]:
        """Per key, whether it lacks a fresh answer (False for None): fresh() for many."""
        if not self.enabled:
            return [key is not None for key in keys]
        return [key is not None and value is MISS for key, value in zip(keys, self.peek_many(keys), strict=True)]

    def peek_many(self, keys: list) -> list:
        """Per key, its fresh answer or MISS (also for None); recency is not touched."""
        if not self.enabled:
            return [MISS] * len(keys)
        with self._lock:
            return self._peek(self._compact(keys, False))

    def peek_payloads(self, service: str, name: str, payloads: list) -> list:
        """peek_many() for the keys (service, name, payload) of one target, given by their
        payloads (None: MISS), without a key tuple per row (the warm-up's million rows)."""
        if not self.enabled:
            return [MISS] * len(payloads)
        prefix = self._id(service, name, False)
        if prefix is None:
            return [MISS] * len(payloads)
        compact = [None if p is None else prefix + p for p in payloads]
        with self._lock:
            return self._peek(compact)

    def unanswered_payloads(self, service: str, name: str, payloads: list) -> list[bool]:
        """unanswered() for the keys of one target, given by their payloads."""
        peeked = self.peek_payloads(service, name, payloads)
        return [p is not None and v is MISS for p, v in zip(payloads, peeked, strict=True)]

    def _peek(self, compact: list) -> list:
        """Under the lock: per compact key (or None), its fresh answer or MISS."""
        if self._gens and self._gens[0].expires < _clock.now:
            self._expire()
        gens = self._gens
        if not gens:
            return [MISS] * len(compact)
        if len(gens) == 1:
            return gens[0].items.get_many(compact, MISS)
        return [MISS if c is None else self._find(c)[1] for c in compact]

    def contains(self, key) -> bool:
        return self.get(key) is not MISS

    # ---- writes ----------------------------------------------------------------------

    def put(self, key, value) -> None:
        self.put_many([key], [value])

    def put_many(self, keys: list, values: list) -> None:
        """Stores values[i] under keys[i]: one lock and one eviction pass for a whole batch.

        A key already in the newest generation keeps its place and gets the new answer
        (and that generation's expiry); one in an older generation moves to the newest."""
        if not self.enabled or not keys:
            return
        with self._lock:
            compact = self._compact(keys, True)
            if None in compact:  # targets past the id space: not cached
                pairs = [(c, v) for c, v in zip(compact, values, strict=True) if c is not None]
                compact, values = [c for c, _ in pairs], [v for _, v in pairs]
            self._store(compact, values)

    def put_payloads(self, service: str, name: str, payloads: list[str], values: list) -> None:
        """put_many() for the keys (service, name, payload) of one target, given by their
        payloads, without a key tuple per row."""
        if not self.enabled or not payloads:
            return
        with self._lock:
            prefix = self._id(service, name, True)
            if prefix is not None:  # else past the id space: not cached
                self._store([prefix + p for p in payloads], values)

    def _store(self, compact: list[str], values: list) -> None:
        """Under the lock: put_many's work, for compact keys."""
        now = _monotonic()
        gens = self._gens
        if gens and gens[0].expires < now:
            self._expire(now)
        if not gens or now - gens[-1].opened > self.ttl_s * GENERATION_FRACTION:
            gens.append(_Generation(now, self.ttl_s))
        newest = gens[-1]
        per_entry = ENTRY_OVERHEAD_BYTES - TARGET_ID_CHARS
        older = gens[:-1]
        for g in older:  # a key lives in one generation only
            removed, chars = g.items.discard_many(compact)
            g.bytes -= chars + per_entry * removed
            self._n -= removed
        added, chars = newest.items.update_many(compact, values)
        newest.bytes += chars + per_entry * added
        self._n += added
        if older:
            self._bytes = sum(g.bytes for g in gens)
            self._drop_empty()
        else:  # the usual case within a TTL's first fraction, one answer at a time on the scalar path
            self._bytes = newest.bytes
        if self._n > self.max_entries or self._bytes > self.max_bytes:
            self._evict()

    def clear(self) -> int:
        with self._lock:
            n = self._n
            self._drop_all()
        host.memo_invalidate()  # and what statements running now keep in C (native/memo.h)
        release_memory()
        return n

    def stats(self) -> dict:
        with self._lock:
            return {"entries": self._n, "bytes": self._bytes, "max_entries": self.max_entries,
                    "max_bytes": self.max_bytes, "ttl_s": self.ttl_s, "enabled": self.enabled,
                    "generations": len(self._gens)}

    # ---- under the lock --------------------------------------------------------------

    def _drop_all(self) -> None:
        self._gens.clear()
        self._n = self._bytes = 0

    def _drop_empty(self) -> None:
        gens = self._gens
        gens[:-1] = [g for g in gens[:-1] if g.items]

    def _expire(self, now: float | None = None) -> None:
        """Drops the generations past their expiry (the oldest ones: opened in order)."""
        now = _clock.now if now is None else now
        gens = self._gens
        while gens and gens[0].expires < now:
            g = gens.pop(0)
            self._n -= len(g.items)
            self._bytes -= g.bytes

    def _evict(self) -> None:
        """Least recently used first, oldest generation first, until within both bounds."""
        gens = self._gens
        while gens and (self._n > self.max_entries or self._bytes > self.max_bytes):
            g = gens[0]
            popped, freed = g.items.pop_front(self._n - self.max_entries, self._bytes - self.max_bytes,
                                              ENTRY_OVERHEAD_BYTES - TARGET_ID_CHARS)
            g.bytes -= freed
            self._n -= popped
            self._bytes -= freed
            if not g.items:
                gens.pop(0)
