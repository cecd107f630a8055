"""The engine's counters: Aurora's seven, and sqlml's own per service and endpoint.

Aurora's meanings: logical_request_cnt counts rows evaluated (calls that needed a
service answer), logical_response_cnt the answers they got, actual_request_cnt and
actual_response_cnt the requests really sent and answered, cache_hit_cnt the rows
answered from the cache, retry_request_cnt the requests that were retries, and
single_request_cnt the calls evaluated without batching (one row, one request).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

AURORA = (
    "logical_request_cnt",
    "logical_response_cnt",
    "actual_request_cnt",
    "actual_response_cnt",
    "cache_hit_cnt",
    "retry_request_cnt",
    "single_request_cnt",
)
# sqlml's own totals, beside Aurora's.
EXTENDED = ("batched_row_cnt", "warmup_cnt")


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

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["mean_batch_rows"] = round(self.rows / self.requests, 3) if self.requests else 0.0
        d["service_time_s"] = round(self.service_time_s, 6)
        return d


@dataclass
class Counters:
    _lock: threading.Lock = field(default_factory=threading.Lock)
    totals: dict = field(default_factory=lambda: dict.fromkeys(AURORA + EXTENDED, 0))
    targets: dict = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.totals[name] += n

    def request_done(self, target: tuple[str, str], rows: int, seconds: float, *, error: bool = False,
                     throttled: bool = False, timed_out: bool = False) -> None:
        """Records one request sent to `target` (service, endpoint) and how it ended."""
        with self._lock:
            t = self.targets.get(target)
            if t is None:
                t = self.targets[target] = TargetStats()
            t.requests += 1
            t.rows += rows
            t.errors += error
            t.throttles += throttled
            t.timeouts += timed_out
            t.max_batch_rows = max(t.max_batch_rows, rows)
            t.service_time_s += seconds

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "aurora": {k: self.totals[k] for k in AURORA},
                "extended": {k: self.totals[k] for k in EXTENDED},
                "targets": [
                    {"service": s, "target": e, **stats.as_dict()} for (s, e), stats in sorted(self.targets.items())
                ],
            }

    def reset(self) -> None:
        with self._lock:
            self.totals = dict.fromkeys(AURORA + EXTENDED, 0)
            self.targets = {}
