"""The one check of a configured integer or number: a ValueError naming the key, the value and what is accepted."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_int", "check_number"]


def _suffix(note: str) -> str:
    return f" ({note})" if note else ""


def check_int(key: str, value: Any, minimum: int | None = None, maximum: int | None = None, note: str = "") -> int:
    """``value`` when it is an integer (a bool is not) in ``[minimum, maximum]``; otherwise ValueError such as
    ``dataset.batch_size=0 must be an integer >= 1``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        if minimum is not None and maximum is not None:
            accepted = f"an integer in [{minimum}, {maximum}]"
        elif minimum is not None:
            accepted = f"an integer >= {minimum}"
        elif maximum is not None:
            accepted = f"an integer <= {maximum}"
        else:
            accepted = "an integer"
        raise ValueError(f"{key}={value!r} must be {accepted}{_suffix(note)}")
    return int(value)


def check_number(key: str, value: Any, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, note: str = "") -> float:
    """``float(value)`` when it is a finite real number in the interval from ``low`` to ``high`` (each end closed
    unless ``low_open``/``high_open``); otherwise ValueError such as ``ema.decay=1.5 must be a number in [0, 1)``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (low is None or (value > low if low_open else value >= low)) and \
             (high is None or (value < high if high_open else value <= high))
    if not ok:
        if low is not None and high is not None:
            accepted = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            accepted = f"a number {'>' if low_open else '>='} {low:g}"
        elif high is not None:
            accepted = f"a number {'<' if high_open else '<='} {high:g}"
        else:
            accepted = "a finite number"
        raise ValueError(f"{key}={value!r} must be {accepted}{_suffix(note)}")
    return float(value)
