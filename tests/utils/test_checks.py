"""The one integer/number check: accepted values pass through, others name the key, the value and the range."""

from __future__ import annotations

import math

import pytest

from difflab.utils.checks import check_int, check_number


@pytest.mark.parametrize(("value", "minimum", "maximum"), [(1, 1, None), (5, None, 5), (0, -1, 1), (7, None, None)])
def test_integers_in_range_pass_through(value, minimum, maximum):
    assert check_int("k", value, minimum, maximum) == value


@pytest.mark.parametrize(("value", "minimum", "maximum", "message"), [
    (0, 1, None, "k=0 must be an integer >= 1"),
    (9, 1, 8, "k=9 must be an integer in [1, 8]"),
    (9, None, 8, "k=9 must be an integer <= 8"),
    (True, 0, None, "k=True must be an integer >= 0"),
    (2.0, 0, None, "k=2.0 must be an integer >= 0"),
    ("3", None, None, "k='3' must be an integer"),
])
def test_bad_integers_are_named(value, minimum, maximum, message):
    with pytest.raises(ValueError) as err:
        check_int("k", value, minimum, maximum)
    assert str(err.value) == message


def test_a_note_says_why():
    with pytest.raises(ValueError, match=r"^dataset.image_size=2 must be an integer >= 4 \(the digits are 8x8\)$"):
        check_int("dataset.image_size", 2, 4, note="the digits are 8x8")


@pytest.mark.parametrize(("value", "kwargs"), [
    (0.0, dict(low=0.0, high=1.0, high_open=True)), (0.5, dict(low=0.0, low_open=True)), (3, dict(high=3)), (-2.5, {}),
])
def test_numbers_in_range_pass_through(value, kwargs):
    assert check_number("k", value, **kwargs) == float(value)


@pytest.mark.parametrize(("value", "kwargs", "message"), [
    (1.0, dict(low=0.0, high=1.0, high_open=True), "k=1.0 must be a number in [0, 1)"),
    (0, dict(low=0.0, low_open=True), "k=0 must be a number > 0"),
    (-1, dict(low=0.0), "k=-1 must be a number >= 0"),
    (4, dict(high=3, high_open=True), "k=4 must be a number < 3"),
    (math.nan, {}, "k=nan must be a finite number"),
    (math.inf, dict(low=0.0), "k=inf must be a number >= 0"),
    (False, {}, "k=False must be a finite number"),
    ("0.1", {}, "k='0.1' must be a finite number"),
])
def test_bad_numbers_are_named(value, kwargs, message):
    with pytest.raises(ValueError) as err:
        check_number("k", value, **kwargs)
    assert str(err.value) == message
