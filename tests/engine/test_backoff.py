"""Backoff delays with an injected random source: no sleeps, exact numbers."""

from __future__ import annotations

import math

import pytest

from trayapp.engine.backoff import Backoff


def const(value: float):
    return lambda: value


def test_attempt_zero_is_initial_when_jitter_is_centred() -> None:
    assert Backoff().delay(0, const(0.5)) == pytest.approx(0.2)


def test_grows_by_factor() -> None:
    backoff = Backoff(initial=0.2, factor=2.0, cap=30.0)
    delays = [backoff.delay(n, const(0.5)) for n in range(6)]
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4])


def test_jitter_bounds_are_plus_minus_twenty_percent() -> None:
    backoff = Backoff()
    assert backoff.delay(3, const(0.0)) == pytest.approx(1.6 * 0.8)
    # rng() is in [0, 1): approaching 1 approaches +20%
    assert backoff.delay(3, const(0.999999)) == pytest.approx(1.6 * 1.2, rel=1e-5)


def test_capped_and_jitter_never_exceeds_cap() -> None:
    backoff = Backoff(cap=30.0)
    assert backoff.delay(20, const(0.5)) == 30.0
    assert backoff.delay(20, const(0.999999)) == 30.0
    assert backoff.delay(20, const(0.0)) == pytest.approx(24.0)


def test_huge_attempt_does_not_overflow() -> None:
    backoff = Backoff(factor=10.0)
    assert backoff.delay(100_000, const(0.5)) == 30.0
    assert math.isfinite(backoff.base(10**9))


def test_no_jitter_is_exact() -> None:
    backoff = Backoff(initial=1.0, factor=3.0, cap=100.0, jitter=0.0)
    assert [backoff.delay(n, const(0.9)) for n in range(6)] == [1.0, 3.0, 9.0, 27.0, 81.0, 100.0]


def test_default_rng_stays_in_bounds() -> None:
    backoff = Backoff()
    for attempt in range(12):
        base = backoff.base(attempt)
        for _ in range(50):
            value = backoff.delay(attempt)
            assert base * 0.8 - 1e-9 <= value <= min(base * 1.2, backoff.cap) + 1e-9


def test_negative_attempt_is_rejected() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().delay(-1, const(0.5))


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"initial": 0}, "initial"),
        ({"factor": 0.5}, "factor"),
        ({"initial": 5.0, "cap": 1.0}, "cap"),
        ({"jitter": 1.0}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        Backoff(**kwargs)


def test_frozen() -> None:
    with pytest.raises(AttributeError):
        Backoff().cap = 1.0  # type: ignore[misc]
