"""The result cache: answers keyed by service, target and the exact payload.

Keys are ("comprehend", language, text) and ("sagemaker", endpoint, csv_line), so the
sentiment and confidence functions on the same text share one Comprehend answer, and a
warm-up (batch.py) that fills it makes every later read a lookup by the row's own input:
a result can never land on another row. Bounded by entries and by bytes (least recently
used first out) and by age (ttl_s). ML answers are not deterministic: within ttl_s a
repeated input returns the cached answer, not a fresh one (README: "Result cache").
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

MISS = object()
ENTRY_OVERHEAD_BYTES = 120  # tuple, key strings' headers, the OrderedDict node


class ResultCache:
    def __init__(self, max_entries: int, max_bytes: int, ttl_s: float, enabled: bool = True):
        self._lock = threading.Lock()
        self._items: OrderedDict = OrderedDict()  # key -> (value, size, expires_at)
        self._bytes = 0
        self.configure(max_entries, max_bytes, ttl_s, enabled)

    def configure(self, max_entries: int, max_bytes: int, ttl_s: float, enabled: bool) -> None:
        with self._lock:
            self.max_entries, self.max_bytes, self.ttl_s, self.enabled = max_entries, max_bytes, ttl_s, enabled
            if not enabled:
                self._items.clear()
                self._bytes = 0
            self._evict()

    def get(self, key):
        if not self.enabled:
            return MISS
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return MISS
            if item[2] < time.monotonic():
                self._drop(key)
                return MISS
            self._items.move_to_end(key)
            return item[0]

    def contains(self, key) -> bool:
        return self.get(key) is not MISS

    def put(self, key, value, size: int) -> None:
        if not self.enabled:
            return
        size += ENTRY_OVERHEAD_BYTES
        with self._lock:
            if key in self._items:
                self._drop(key)
            self._items[key] = (value, size, time.monotonic() + self.ttl_s)
            self._bytes += size
            self._evict()

    def clear(self) -> int:
        with self._lock:
            n = len(self._items)
            self._items.clear()
            self._bytes = 0
            return n

    def stats(self) -> dict:
        with self._lock:
            return {"entries": len(self._items), "bytes": self._bytes, "max_entries": self.max_entries,
                    "max_bytes": self.max_bytes, "ttl_s": self.ttl_s, "enabled": self.enabled}

    def _drop(self, key) -> None:
        _, size, _ = self._items.pop(key)
        self._bytes -= size

    def _evict(self) -> None:
        while self._items and (len(self._items) > self.max_entries or self._bytes > self.max_bytes):
            _, (_, size, _) = self._items.popitem(last=False)
            self._bytes -= size
