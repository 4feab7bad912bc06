"""The Qt binding must not leak or steal references: the tray runs for days."""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QMenu


def test_void_calls_keep_none_and_true_alive(qapp) -> None:
    # PySide6-Essentials 6.12.0 on Python 3.11 dropped a reference to None per call of a method
    # returning nothing, so a long-running tray aborted with "none_dealloc" (pyproject excludes it).
    timer, menu = QTimer(), QMenu()
    before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(2000):
        timer.start(1000)
        timer.stop()
        menu.setEnabled(True)
        menu.addSeparator()
        menu.clear()
    after = sys.getrefcount(None), sys.getrefcount(True)
    assert after[0] - before[0] > -100, f"None lost {before[0] - after[0]} references"
    assert after[1] - before[1] > -100, f"True lost {before[1] - after[1]} references"


def test_signals_and_event_processing_keep_true_and_none_alive(qapp) -> None:
    # The Bridge emits once per engine event for as long as the tray runs.
    from trayapp.ui.bridge import Bridge

    bridge = Bridge()
    got: list[object] = []
    bridge.engine_event.connect(got.append)
    before = sys.getrefcount(None), sys.getrefcount(True)
    for i in range(2000):
        bridge.engine_event.emit(i)
        qapp.processEvents()
    after = sys.getrefcount(None), sys.getrefcount(True)
    assert len(got) == 2000
    assert after[0] - before[0] > -100, f"None lost {before[0] - after[0]} references"
    assert after[1] - before[1] > -100, f"True lost {before[1] - after[1]} references"
