"""The one check of a configured integer or number: a ValueError naming the key, the value and what is accepted."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_int", "check_number"]


def _accepted(noun: str, low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """``an integer >= 1``, ``a number in [0, 1)``, ``a number > 0``, ... (``noun`` alone without bounds)."""
    if low is not None and high is not None:
        return f"{noun} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{noun} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{noun} {'<' if high_open else '<='} {high:g}"
    return noun


def _within(value: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    return (low is None or (value > low if low_open else value >= low)) and \
           (high is None or (value < high if high_open else value <= high))


def _reject(key: str, value: Any, accepted: str, note: str) -> ValueError:
    return ValueError(f"{key}={value!r} must be {accepted}" + (f" ({note})" if note else ""))


def check_int(key: str, value: Any, minimum: int | None = None, maximum: int | None = None, note: str = "") -> int:
    """``value`` when it is an integer (a bool is not) in ``[minimum, maximum]``; otherwise ValueError such as
    ``dataset.batch_size=0 must be an integer >= 1``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or not _within(value, minimum, maximum, False, False):
        raise _reject(key, value, _accepted("an integer", minimum, maximum, False, False), note)
    return int(value)


def check_number(key: str, value: Any, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, note: str = "") -> float:
    """``float(value)`` when it is a finite real number in the interval from ``low`` to ``high`` (each end closed
    unless ``low_open``/``high_open``); otherwise ValueError such as ``ema.decay=1.5 must be a number in [0, 1)``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not _within(value, low, high, low_open, high_open):
        noun = "a number" if low is not None or high is not None else "a finite number"
        raise _reject(key, value, _accepted(noun, low, high, low_open, high_open), note)
    return float(value)
