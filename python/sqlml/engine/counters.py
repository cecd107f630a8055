"""The engine's counters: Aurora's seven, sqlml's own totals, and per-target details.

Aurora's meanings: logical_request_cnt counts rows evaluated (calls that needed a
service answer), logical_response_cnt the answers they got, actual_request_cnt and
actual_response_cnt the requests really sent and answered, cache_hit_cnt the rows
answered from the cache, retry_request_cnt the requests that were retries, and
single_request_cnt the calls evaluated without batching (one row, one request).

Inside a server the totals live in sqlml.so's memory (native/counters.h lists them) as
the status variables Aurora_ml_* and Sqlml_*: the engine adds to them atomically, SHOW
GLOBAL STATUS reads them without waiting for Python, and FLUSH STATUS zeroes them.
Outside a server (tools, unit tests) the same names live in a dict here. The
per-(service, target) details stay in Python and show in sqlml_status().
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Callable

from .. import host
from ..crossing import STATUS_COUNTERS

PREFIXES = ("Aurora_ml_", "Sqlml_")
# Aurora's seven, and sqlml's own totals beside them (status variables Sqlml_<name>),
# by their names without the prefix (crossing.STATUS_COUNTERS declares them).
AURORA = tuple(name[len(PREFIXES[0]):] for _, name in STATUS_COUNTERS if name.startswith(PREFIXES[0]))
EXTENDED = tuple(name[len(PREFIXES[1]):] for _, name in STATUS_COUNTERS if name.startswith(PREFIXES[1]))


def _bare(status_name: str) -> str:
    for prefix in PREFIXES:
        if status_name.startswith(prefix):
            return status_name[len(prefix):]
    return status_name


@dataclass
class TargetStats:
    """Counters for one (service, endpoint-or-language) target."""

    requests: int = 0
    rows: int = 0
    errors: int = 0
    throttles: int = 0
    timeouts: int = 0
    max_batch_rows: int = 0
    service_time_s: float = 0.0
    inline_requests: int = 0  # sent from the calling server thread (dispatch.attempt_inline)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["mean_batch_rows"] = round(self.rows / self.requests, 3) if self.requests else 0.0
        d["service_time_s"] = round(self.service_time_s, 6)
        return d


class _PythonTotals:
    """The totals when no sqlml.so is loaded."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values = dict.fromkeys(AURORA + EXTENDED, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] += n

    def incrementer(self, name: str) -> Callable[[], None]:
        return functools.partial(self.add, name, 1)

    def bound(self, method: str, name: str) -> Callable[[int], None]:
        return functools.partial(getattr(self, method), name)

    def raise_to(self, name: str, value: int) -> None:
        with self._lock:
            self._values[name] = max(self._values[name], value)

    def values(self) -> dict:
        with self._lock:
            return dict(self._values)

    def reset(self) -> None:
        with self._lock:
            self._values = dict.fromkeys(self._values, 0)


class _NativeTotals:
    """The totals as status variables in sqlml.so (atomic adds, no lock here)."""

    def __init__(self, names: tuple):
        self._index = {_bare(name): i for i, name in enumerate(names)}
        self._count = host.counting_function()
        self._count_max = host.count_max_function()
        missing = set(AURORA + EXTENDED) - set(self._index)
        if missing:
            raise RuntimeError(f"sqlml.so lacks counters {sorted(missing)}: library and engine differ; reinstall")

    def add(self, name: str, n: int = 1) -> None:
        self._count(self._index[name], n)

    def incrementer(self, name: str) -> Callable[[], None]:
        return functools.partial(self._count, self._index[name], 1)  # a C call, no Python frame

    def bound(self, method: str, name: str) -> Callable[[int], None]:
        """add(name, n) or raise_to(name, n) as f(n): a C call, no Python frame."""
        return functools.partial({"add": self._count, "raise_to": self._count_max}[method], self._index[name])

    def raise_to(self, name: str, value: int) -> None:
        self._count_max(self._index[name], value)

    def values(self) -> dict:
        return {_bare(name): value for name, value in host.counters()}

    def reset(self) -> None:
        raise RuntimeError("the status variables are reset by FLUSH STATUS")


@dataclass
class Counters:
    _lock: threading.Lock = field(default_factory=threading.Lock)
    targets: dict = field(default_factory=dict)

    def __post_init__(self):
        names = tuple(name for name, _ in host.counters())
        self._totals = _NativeTotals(names) if names else _PythonTotals()
        # The totals' own add, straight: a request counts up to seven times on the scalar
        # path, and each call through this class's add() below was one more Python frame.
        self.add = self._totals.add
        # Every request's two, bound once (on the native totals, C calls).
        self._raise_batch_max_rows = self._totals.bound("raise_to", "batch_max_rows")
        self._add_service_time_us = self._totals.bound("add", "service_time_us")

    def add(self, name: str, n: int = 1) -> None:  # replaced per instance in __post_init__
        self._totals.add(name, n)

    def incrementer(self, name: str) -> Callable[[], None]:
        """A call that adds 1 to one total, its name looked up once: the scalar path
        counts five times per request."""
        return self._totals.incrementer(name)

    def request_done(self, target: tuple[str, str], rows: int, seconds: float, *, error: bool = False,
                     throttled: bool = False, timed_out: bool = False, inline: bool = False) -> None:
        """Records one request sent to `target` (service, endpoint) and how it ended."""
        self._record(target, 1, rows, rows, seconds, int(error), int(throttled), int(timed_out), int(inline))
        totals = self._totals
        if error:
            totals.add("error_cnt", 1)
        if throttled:
            totals.add("throttle_cnt", 1)
        if timed_out:
            totals.add("timeout_cnt", 1)

    def inline_requests_done(self, target: tuple[str, str], n: int, seconds: float) -> None:
        """request_done(target, 1, ..., inline=True) for n answered requests of one row
        each, `seconds` in all (engine/tally.py's InlineTally)."""
        self._record(target, n, n, 1, seconds, 0, 0, 0, n)

    def _record(self, target: tuple[str, str], requests: int, rows: int, max_rows: int, seconds: float,
                errors: int, throttles: int, timeouts: int, inline: int) -> None:
        """Adds to target's figures, and to the totals both share (largest batch, service time)."""
        with self._lock:
            t = self.targets.get(target)
            if t is None:
                t = self.targets[target] = TargetStats()
            t.requests += requests
            t.rows += rows
            t.errors += errors
            t.throttles += throttles
            t.timeouts += timeouts
            t.max_batch_rows = max(t.max_batch_rows, max_rows)
            t.inline_requests += inline
            t.service_time_s += seconds
        if max_rows:
            self._raise_batch_max_rows(max_rows)
        if seconds:
            self._add_service_time_us(int(seconds * 1e6))

    def snapshot(self) -> dict:
        values = self._totals.values()
        with self._lock:
            return {
                "aurora": {k: values[k] for k in AURORA},
                "extended": {k: values[k] for k in EXTENDED},
                "targets": [
                    {"service": s, "target": e, **stats.as_dict()} for (s, e), stats in sorted(self.targets.items())
                ],
            }

    def reset_targets(self) -> None:
        with self._lock:
            self.targets = {}
