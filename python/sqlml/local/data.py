"""Training data for the local models: the built-in "demo-taxi" series and CSV columns.

The local service's Random Cut Forest endpoints train at start-up either on a column of
a CSV file (``train_csv``/``column``, read by :func:`read_csv_columns`) or on
:func:`demo_taxi_series`, a deterministic, project-made stand-in for the NAB NYC taxi
series (30-minute passenger counts with daily and weekly seasonality) so the demo needs
no data file. The same generator fills the demo table, so the SQL demo and the demo
endpoint see the same numbers. ``config.py`` names these sources; ``models.py`` uses them.

The injected anomalies (:data:`DEMO_TAXI_EVENTS`) are single half-hour points whose
value lies far outside the normal range (surges of 1.6-2x a weekday evening peak, drops
to about 1% of it), so that even a one-value-per-row forest (shingle_size 1, as in
Aurora's ``anomaly_score(value)`` example) ranks them among the top scores.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import random
from dataclasses import dataclass
from pathlib import Path

DEMO_TAXI_POINTS = 10_320  # 215 days of half hours, 2014-07-01 to 2015-01-31, like NAB's nyc_taxi
DEMO_TAXI_START = dt.datetime(2014, 7, 1)
DEMO_TAXI_STEP = dt.timedelta(minutes=30)
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
_SEED = 20140701
_NOISE_SIGMA = 0.04  # multiplicative noise per half hour

# Hourly passenger counts (thousands), interpolated to half hours. Shapes follow the
# real series: quiet at 5 am, a morning rise, an evening peak; weekends trade the
# morning rush for late nights.
_WEEKDAY = (10.5, 7.0, 4.8, 3.4, 2.6, 2.4, 5.5, 11.0, 16.5, 17.0, 15.5, 15.8,
            16.5, 16.3, 16.8, 16.5, 16.0, 19.5, 24.0, 25.5, 24.5, 23.0, 22.0, 16.0)
_WEEKEND = (19.0, 17.5, 15.0, 12.0, 8.0, 4.5, 3.5, 4.5, 6.5, 9.5, 12.5, 15.0,
            16.5, 17.0, 17.0, 16.8, 16.5, 17.5, 19.5, 21.0, 21.5, 21.5, 21.0, 19.0)


@dataclass(frozen=True)
class DemoEvent:
    """One injected anomaly: where (fraction of the series, hour of day) and how big."""

    name: str
    fraction: float  # position in the series, 0..1, snapped to the day then to `hour`
    hour: float  # time of day, in hours (half-hour resolution)
    level: float  # value = level * _PEAK: a multiple of a typical weekday evening peak


_PEAK = max(_WEEKDAY) * 1000.0
DEMO_TAXI_EVENTS: tuple[DemoEvent, ...] = (
    DemoEvent("stadium concert surge", 0.25, 22.5, 2.0),
    DemoEvent("power cut", 0.40, 13.0, 0.008),
    DemoEvent("city marathon surge", 0.57, 15.0, 1.75),
    DemoEvent("new year's eve surge", 0.85, 1.0, 1.6),
    DemoEvent("blizzard travel ban", 0.96, 12.0, 0.01),
)


def _expected(i: int, n: int) -> float:
    """Expected passenger count of half hour *i* (no noise, no anomaly)."""
    when = DEMO_TAXI_START + i * DEMO_TAXI_STEP
    weekday = when.weekday()  # Monday 0
    profile = _WEEKEND if weekday >= 5 else _WEEKDAY
    h = when.hour + when.minute / 60.0
    lo = profile[int(h)]
    hi = profile[(int(h) + 1) % 24]
    value = lo + (hi - lo) * (h - int(h))
    if weekday == 4 and h >= 19:  # Friday night out
        value *= 1.12
    if weekday == 6 and h >= 17:  # Sunday evening stays home
        value *= 0.85
    # a slow seasonal swing of +-5 % over the series, like summer/winter demand
    value *= 1.0 + 0.05 * math.sin(2.0 * math.pi * i / max(n, 1))
    return value * 1000.0


def _event_index(event: DemoEvent, n: int) -> int:
    day = int(event.fraction * n) // 48
    return min(day * 48 + int(round(event.hour * 2)), n - 1)


def demo_taxi_anomalies(n: int = DEMO_TAXI_POINTS) -> list[int]:
    """Indices (0-based, into :func:`demo_taxi_series` of the same *n*) of the injected anomalies."""
    _check_n(n)
    return sorted({_event_index(e, n) for e in DEMO_TAXI_EVENTS})


def demo_taxi_events(n: int = DEMO_TAXI_POINTS) -> dict[int, str]:
    """Index -> name of each injected anomaly (a later event wins if two collide in a tiny series)."""
    _check_n(n)
    return {_event_index(e, n): e.name for e in DEMO_TAXI_EVENTS}


def demo_taxi_series(n: int = DEMO_TAXI_POINTS) -> list[tuple[str, int]]:
    """A taxi-like series of *n* (timestamp, passenger count) pairs, 30 minutes apart.

    Deterministic: the same *n* always gives the same values (the noise comes from a
    fixed-seed ``random.Random``, using only ``random()``, whose output Python keeps
    stable across versions). Anomalies sit at :func:`demo_taxi_anomalies`.
    """
    _check_n(n)
    rng = random.Random(_SEED)
    levels = {_event_index(e, n): e.level for e in DEMO_TAXI_EVENTS}
    out: list[tuple[str, int]] = []
    for i in range(n):
        # Box-Muller by hand: random.gauss's algorithm is not promised to stay the same
        u1 = 1.0 - rng.random()
        u2 = rng.random()
        noise = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
        value = _expected(i, n) * (1.0 + _NOISE_SIGMA * noise)
        if i in levels:
            value = levels[i] * _PEAK
        when = DEMO_TAXI_START + i * DEMO_TAXI_STEP
        out.append((when.strftime(TIMESTAMP_FORMAT), max(0, int(round(value)))))
    return out


def _check_n(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > 10_000_000:
        raise ValueError(f"demo-taxi series length must be an integer from 1 to 10000000, got {n!r}")


def read_csv_columns(path: str | Path, columns: list[str]) -> list[list[float]]:
    """Rows of the named numeric *columns* of a CSV file with a header line, in file order.

    Raises ValueError naming the file, line and column when a column is missing or a
    value is not a number, so a bad training file fails its endpoint with a clear reason.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{path}: empty file (expected a header line)") from None
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r}; the header has {', '.join(header)}")
        positions = [header.index(c) for c in columns]
        rows: list[list[float]] = []
        for line_no, record in enumerate(reader, start=2):
            if not record:
                continue
            try:
                rows.append([float(record[p]) for p in positions])
            except (ValueError, IndexError):
                bad = next(c for c, p in zip(columns, positions, strict=True)
                           if p >= len(record) or not _is_float(record[p]))
                value = record[header.index(bad)] if header.index(bad) < len(record) else "(missing)"
                raise ValueError(f"{path}:{line_no}: column {bad!r} holds {value!r}, not a number") from None
    if not rows:
        raise ValueError(f"{path}: no data rows")
    return rows


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
