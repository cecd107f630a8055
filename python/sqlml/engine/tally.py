"""Per-statement tallies of cache hits, folded into the engine's counters in bulk.

A row answered from the cache counts once in logical_request_cnt, cache_hit_cnt and
logical_response_cnt. On the batch path that is every row, and three locked
Counters.add calls per row cost more than the lookup itself. So each prepared function
keeps a Tally: its own thread bumps `hits` (a plain int only that thread writes), and
the tally is folded into Counters (add(name, n), one call per counter) every
FLUSH_EVERY hits, when the statement ends (the tally is dropped with its function), and
before anyone reads the counters (`flush_all`, called by sqlml_status()): a snapshot is
never short of a row already answered.
"""

from __future__ import annotations

import threading
import weakref

from .counters import Counters

FLUSH_EVERY = 4096
HIT_COUNTERS = ("logical_request_cnt", "cache_hit_cnt", "logical_response_cnt")

_live: weakref.WeakSet = weakref.WeakSet()
_live_lock = threading.Lock()


class Tally:
    __slots__ = ("hits", "_flushed", "_counters", "_lock", "__weakref__")

    def __init__(self, counters: Counters):
        self.hits = 0  # written only by the thread running the statement
        self._flushed = 0
        self._counters = counters
        self._lock = threading.Lock()
        with _live_lock:
            _live.add(self)

    def flush(self) -> None:
        with self._lock:
            n = self.hits - self._flushed
            if n:
                self._flushed += n
                for name in HIT_COUNTERS:
                    self._counters.add(name, n)

    def __del__(self):
        self.flush()


def flush_all() -> None:
    """Folds every live statement's hits into the counters (before a snapshot)."""
    with _live_lock:
        tallies = list(_live)
    for tally in tallies:
        tally.flush()
