"""Axis helpers shared by the report and search figures, so that every axis reads at a glance:
numbers on every axis whatever the range, time in the unit that fits, whole job counts, and a note
instead of blank axes when there is nothing to draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.ticker as ticker

# (seconds per unit, name, abbreviation), smallest first.
TIME_UNITS = ((1.0, "seconds", "s"), (60.0, "minutes", "min"), (3600.0, "hours", "h"), (86400.0, "days", "d"))
# Bin widths for counts over time, in seconds: the first that needs at most ``max_bins`` bins is used.
NICE_BINS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
             2 * 86400, 7 * 86400)


def time_unit(span_seconds: float) -> tuple[float, str, str]:
    """The unit a span reads best in: seconds below 2 minutes, minutes below 2 hours, hours below
    2 days, else days."""
    for (size, name, short), (next_size, _, _) in zip(TIME_UNITS, TIME_UNITS[1:], strict=False):
        if span_seconds < 2 * next_size:
            return size, name, short
    return TIME_UNITS[-1]


def duration_text(seconds: float) -> str:
    """'45 s', '3.5 min', '2.0 h', '4.1 d'."""
    size, _, short = time_unit(seconds)
    value = seconds / size
    return f"{value:.0f} {short}" if size == 1.0 or value >= 100 else f"{value:.1f} {short}"


def bin_width(span_seconds: float, max_bins: int = 24) -> float:
    """A round bin width (1 s ... 1 week) that splits the span into at most ``max_bins`` bins."""
    for width in NICE_BINS:
        if span_seconds / width <= max_bins:
            return float(width)
    return float(NICE_BINS[-1])


def width_text(seconds: float) -> str:
    """A bin width in words: 'second', '10 s', '5 min', 'hour', '2 h', 'day'."""
    for size, name, short in reversed(TIME_UNITS):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return name[:-1] if count == 1 else f"{count} {short}"
    return f"{seconds:g} s"


def integer_axis(axis: Any) -> None:
    """Ticks at whole numbers only (job counts)."""
    axis.set_major_locator(ticker.MaxNLocator(integer=True, min_n_ticks=2))


def log_ticks(low: float, high: float, target: int = 5) -> list[float]:
    """Labelled tick positions for a log axis over [low, high]: powers of ten times 1, 2, 5 when
    the range spans enough of them, otherwise round numbers inside the range (a range within one
    power of ten still gets several labelled ticks)."""
    if not (low > 0 and high > 0 and math.isfinite(low) and math.isfinite(high)):
        return []
    low, high = min(low, high), max(low, high)
    decades = range(math.floor(math.log10(low)), math.floor(math.log10(high)) + 1)
    for steps in ((1,), (1, 3), (1, 2, 5)):
        ticks = [m * 10.0**d for d in decades for m in steps if low <= m * 10.0**d <= high]
        if len(ticks) >= 3 or (len(ticks) >= 2 and len(decades) > 3):
            return ticks
    if high == low:
        return [low]
    locator = ticker.MaxNLocator(nbins=target, steps=[1, 2, 2.5, 5, 10])
    return [float(t) for t in locator.tick_values(low, high) if low <= t <= high]


def readable_log_axis(axis: Any, values: Sequence[float], *,
                      formatter: ticker.Formatter | None = None) -> None:
    """Put labelled ticks on a log axis for data spanning ``values`` (minor labels off: they collide)."""
    positive = [float(v) for v in values if v and v > 0]
    if not positive:
        return
    low, high = min(positive), max(positive)
    ticks = log_ticks(low, high)
    axis.set_major_locator(ticker.FixedLocator(ticks))
    axis.set_major_formatter(formatter or ticker.EngFormatter(sep=""))
    axis.set_minor_formatter(ticker.NullFormatter())


def no_data(ax: Any, text: str = "no results yet") -> None:
    """Say so in the middle of empty axes instead of leaving them blank."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=13, color="0.35")
    ax.set_xticks([])
    ax.set_yticks([])
