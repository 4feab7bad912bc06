"""The silence a watch may keep follows its server's bookmark pace, within a floor and a ceiling."""

import pytest

from trayapp.engine.kube.watchpace import WatchPace


def test_before_any_bookmark_the_ceiling_holds() -> None:
    assert WatchPace(ceiling=75).limit("/api/v1/pods") == 75


def test_three_gaps_of_a_steady_pace() -> None:
    pace = WatchPace(ceiling=75)
    for _ in range(3):
        pace.bookmark("/api/v1/pods", 5.0)
    assert pace.limit("/api/v1/pods") == 15.0
    assert pace.limit("/api/v1/services") == 75  # each collection learns its own pace


def test_never_below_the_floor_nor_above_the_ceiling() -> None:
    fast, slow = WatchPace(ceiling=75), WatchPace(ceiling=75)
    fast.bookmark("c", 0.5)
    slow.bookmark("c", 60.0)  # kube-apiserver's minute: keepalive and the ceiling cover it
    assert (fast.limit("c"), slow.limit("c")) == (10.0, 75)


def test_one_long_gap_widens_at_once_and_is_forgotten_slowly() -> None:
    pace = WatchPace(ceiling=75)
    pace.bookmark("c", 5.0)
    pace.bookmark("c", 12.0)  # a late bookmark: the limit must not stay tight
    assert pace.limit("c") == 36.0
    pace.bookmark("c", 5.0)
    assert pace.limit("c") == pytest.approx(3 * 12.0 * 0.8)
