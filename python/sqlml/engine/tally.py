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


class _Pending:
    """Counts a statement's own thread keeps and folds into Counters with flush(): every
    FLUSH_EVERY, when the statement ends (the tally is dropped with its function), and
    before anyone reads the counters (flush_all)."""

    __slots__ = ("_counters", "_lock", "__weakref__")

    def __init__(self, counters: Counters):
        self._counters = counters
        self._lock = threading.Lock()
        with _live_lock:
            _live.add(self)

    def flush(self) -> None:
        raise NotImplementedError

    def __del__(self):
        self.flush()


class Tally(_Pending):
    __slots__ = ("hits", "_flushed")

    def __init__(self, counters: Counters):
        self.hits = 0  # written only by the thread running the statement
        self._flushed = 0
        super().__init__(counters)

    def flush(self) -> None:
        with self._lock:
            n = self.hits - self._flushed
            if n:
                self._flushed += n
                for name in HIT_COUNTERS:
                    self._counters.add(name, n)


class InlineTally(_Pending):
    """The same for the inline requests (dispatch.attempt_inline) of one statement's calls
    to one target that were answered: on the scalar path, counting each as it ends (two
    counters and Counters.request_done, under its lock) cost more than a few lines of
    the request itself. Failures are still counted as they happen."""

    __slots__ = ("requests", "seconds", "_flushed", "_flushed_s", "_target")

    def __init__(self, counters: Counters, target: tuple[str, str]):
        self.requests = 0  # written only by the thread running the statement
        self.seconds = 0.0
        self._flushed = 0
        self._flushed_s = 0.0
        self._target = target
        super().__init__(counters)

    def done(self, seconds: float) -> None:
        """One more request answered, in `seconds`."""
        self.requests += 1
        self.seconds += seconds
        if not self.requests % FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            n, seconds = self.requests - self._flushed, self.seconds - self._flushed_s
            if n:
                self._flushed += n
                self._flushed_s += seconds
                self._counters.add("actual_request_cnt", n)
                self._counters.inline_requests_done(self._target, n, seconds)
                self._counters.add("actual_response_cnt", n)


def flush_all() -> None:
    """Folds every live statement's tallies into the counters (before a snapshot)."""
    with _live_lock:
        tallies = list(_live)
    for tally in tallies:
        tally.flush()
