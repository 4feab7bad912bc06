"""UI tests run offscreen (no X, no bus); the real desktop is tests/desktop's job."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before pytest-qt creates the QApplication.
os.environ["QT_QPA_PLATFORM"] = "offscreen"

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


@pytest.fixture(autouse=True)
def _own_user_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings, autostart entries and remembered ports go to a throwaway home."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    return home


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(autouse=True)
def _qt_garbage_dies_on_the_gui_thread() -> Iterator[None]:
    """A test's Qt objects left in reference cycles are collected here, on the GUI thread. Left
    to the cyclic GC, they die in whichever thread allocates next, e.g. a later test's engine
    thread: "Timers cannot be stopped from another thread", then a segmentation fault."""
    yield
    gc.collect()
