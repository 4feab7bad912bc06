"""UI tests run offscreen (no X, no bus); the real desktop is tests/desktop's job."""

from __future__ import annotations

import argparse
import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from trayapp.sim import SimCluster
from trayapp.sim.runner import SimThread, run_in_thread
from trayapp.ui.app import TrayApp

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


# The tray app on the real engine and a simulated cluster, for tests/ui/test_app.py and its kin.
SCENARIO = """
deployments:
  - name: web
    replicas: 1
    labels: {app: web}
    ports: [{name: http, containerPort: 8080}]
services:
  - name: web
    selector: {app: web}
    ports: [{name: http, port: 80, targetPort: http}]
"""


@pytest.fixture
def sim() -> Iterator[SimThread]:
    with run_in_thread(SimCluster("ui", scenario=SCENARIO)) as thread:
        yield thread


@pytest.fixture
def app(qapp: QApplication, sim: SimThread, tmp_path: Path, unused_tcp_port: int) -> Iterator[TrayApp]:
    kubeconfig = tmp_path / "kubeconfig"
    sim.cluster.write_kubeconfig(kubeconfig, context="sim-ctx")
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"portForward:\n  - {{resourceType: service, resourceName: web, port: 80, "
                     f"localPort: {unused_tcp_port}, name: web}}\n", encoding="utf-8")
    args = argparse.Namespace(context=None, connect_timeout=5.0, verbose=False)
    tray_app = TrayApp(qapp, args, rules, str(kubeconfig))
    tray_app.start()
    yield tray_app
    tray_app.shutdown()
    assert not tray_app.engine.running
    if tray_app.status_window is not None:
        tray_app.status_window.deleteLater()
