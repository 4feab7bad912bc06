"""`kubetray --headless` as a user runs it: a real process, JSON events on stdout, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from queue import Empty, Queue

import pytest

from trayapp.sim import SimCluster
from trayapp.sim.runner import SimThread, run_in_thread

from .conftest import SCENARIO

REQUIRED_FIELDS = {"event", "context", "resourceType", "resourceName", "namespace", "address", "localPort",
                   "requestedLocalPort", "port", "pod", "message"}


@pytest.fixture
def sim() -> Iterator[SimThread]:
    with run_in_thread(SimCluster("headless", scenario=SCENARIO)) as thread:
        yield thread


def isolated_env() -> dict[str, str]:
    """The user's environment, but remembered ports go to a throwaway state folder."""
    return {**os.environ, "XDG_STATE_HOME": tempfile.mkdtemp(prefix="kubetray-test-state-")}


class Kubetray:
    """A kubetray process whose JSON events are read on a thread, one per line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trayapp", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated_env(),
        )
        self.events: Queue[dict] = Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.put(json.loads(line))

    def wait_for(self, predicate, timeout: float = 15.0) -> dict:
        while True:
            try:
                event = self.events.get(timeout=timeout)
            except Empty:
                raise AssertionError(f"no matching event; saw {self.seen}") from None
            self.seen.append(event)
            if predicate(event):
                return event

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=15)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


RULES = """\
portForward:
  - {resourceType: service, resourceName: web, port: 80, localPort: WEB_PORT}
  - {resourceType: sevice, resourceName: broken, port: 80}
  - {resourceType: pod, resourceName: debug-shell, port: 7000}
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_json_events_then_clean_shutdown(sim: SimThread, tmp_path: Path, unused_tcp_port: int, signum) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    sim.cluster.write_kubeconfig(kubeconfig, context="sim-ctx")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("WEB_PORT", str(unused_tcp_port)), encoding="utf-8")
    app = Kubetray("--headless", "--json", "--config", str(rules), "--kubeconfig", str(kubeconfig))
    try:
        problem = app.wait_for(lambda e: e["event"] == "failed")
        assert f"{rules}:3" in problem["message"] and "sevice" in problem["message"]
        web = app.wait_for(lambda e: e["event"] == "forwarding" and e["resourceName"] == "web")
        assert REQUIRED_FIELDS <= set(web)
        assert web["context"] == "sim-ctx" and web["resourceType"] == "service" and web["namespace"] == "default"
        assert (web["address"], web["localPort"], web["requestedLocalPort"], web["port"]) == (
            "127.0.0.1", unused_tcp_port, unused_tcp_port, 80)
        with urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/", timeout=10) as answer:
            assert answer.headers["X-Pod"] == web["pod"]
        assert app.stop(signum) == 0
        stopped = [e for e in app.seen if e["event"] == "stopped"]
        while True:
            try:
                event = app.events.get(timeout=2)
            except Empty:
                break
            if event["event"] == "stopped":
                stopped.append(event)
        assert {e["resourceName"] for e in stopped} == {"web", "debug-shell"}
        with pytest.raises(OSError):  # the listener is closed
            urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/", timeout=2)
    finally:
        app.kill()


def test_human_lines_on_stderr(sim: SimThread, tmp_path: Path, unused_tcp_port: int) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    sim.cluster.write_kubeconfig(kubeconfig, context="sim-ctx")
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        f"portForward:\n  - {{resourceType: service, resourceName: web, port: 80, localPort: {unused_tcp_port}}}\n",
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "--headless", "--config", str(rules), "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=isolated_env(),
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert " forwarding " in line and f"127.0.0.1:{unused_tcp_port}" in line
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
        assert process.returncode == 0
        assert out == ""  # without --json nothing goes to stdout
        assert " stopped " in err
    finally:
        if process.poll() is None:
            process.kill()


def test_missing_kubeconfig_is_one_failure_then_recovers(sim: SimThread, tmp_path: Path, unused_tcp_port: int) -> None:
    missing = tmp_path / "not-yet" / "config"
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.replace("WEB_PORT", str(unused_tcp_port)), encoding="utf-8")
    app = Kubetray("--headless", "--json", "--config", str(rules), "--kubeconfig", str(missing))
    try:
        failed = app.wait_for(lambda e: e["event"] == "failed" and str(missing) in e["message"])
        assert "once the file is fixed" in failed["message"]
        sim.cluster.write_kubeconfig(missing, context="late")  # the folder did not exist either
        web = app.wait_for(lambda e: e["event"] == "forwarding" and e["resourceName"] == "web")
        assert web["context"] == "late"
        assert [e for e in app.seen if e["event"] == "failed" and str(missing) in e["message"]] == [failed]
        assert app.stop(signal.SIGTERM) == 0
    finally:
        app.kill()


def test_a_context_flag_naming_no_context_says_so(sim: SimThread, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    sim.cluster.write_kubeconfig(kubeconfig, context="sim-ctx")
    rules = tmp_path / "rules.yaml"
    rules.write_text("portForward: []\n", encoding="utf-8")
    app = Kubetray("--headless", "--json", "--config", str(rules), "--kubeconfig", str(kubeconfig),
                   "--context", "nope")
    try:
        failed = app.wait_for(lambda e: e["event"] == "failed")
        assert "'nope' named by --context does not exist" in failed["message"]
        assert "(it has: sim-ctx)" in failed["message"]
        assert "once the file is fixed" not in failed["message"]
        assert app.stop(signal.SIGTERM) == 0
    finally:
        app.kill()
