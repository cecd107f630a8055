"""Demo data written for the project: product reviews, and the taxi-like series."""

from __future__ import annotations

import csv
from pathlib import Path

REVIEWS = [
    (1, "This blender is fantastic. Smoothies in seconds and it cleans up easily."),
    (1, "Absolutely love it, the best kitchen purchase I have made this year."),
    (1, "Stopped working after two weeks. Very disappointed and support never answered."),
    (1, "It is a blender. It blends."),
    (1, "Powerful motor, but it is far too loud to use early in the morning."),
    (1, "Great value for the price, I would happily buy it again."),
    (1, "The lid cracked on the first use. Terrible quality control."),
    (1, "Works fine for soups; the glass jar is heavy."),
    (1, "Excellent! My kids make their own milkshakes now and they are thrilled."),
    (1, "Awful smell of burning plastic every time I run it. Returned it."),
    (2, "The kettle boils fast and looks beautiful on the counter."),
    (2, "Handle gets hot. Not safe, I am unhappy with this design."),
    (2, "Does what it says. Nothing more, nothing less."),
    (2, "Lovely color, quiet, and it switches off reliably. Recommended!"),
    (2, "Leaks from the base after a month. Waste of money."),
    (3, "The toaster browns evenly and the bagel setting is perfect."),
    (3, "Crumb tray is flimsy but the toast is good."),
    (3, "Broke on day one. Horrible."),
]


def read_taxi_csv(path: str) -> list[tuple[str, float]]:
    """(timestamp, value) rows of NAB's nyc_taxi.csv (columns timestamp,value)."""
    with open(Path(path), newline="") as f:
        return [(row["timestamp"], float(row["value"])) for row in csv.DictReader(f)]
