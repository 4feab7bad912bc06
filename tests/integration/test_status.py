"""`kubetray status` and the single instance, between real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from trayapp.sim.runner import SimThread
from trayapp.status import status_text

from .test_headless import Kubetray, sim  # noqa: F401  (the sim fixture)


def kubetray(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": tempfile.mkdtemp(prefix="kubetray-test-state-")}
    return subprocess.run([sys.executable, "-m", "trayapp", *args], capture_output=True, text=True,
                          env=env, timeout=30)


def test_status_and_a_second_instance(sim: SimThread, tmp_path: Path, unused_tcp_port: int) -> None:  # noqa: F811
    kubeconfig = tmp_path / "kubeconfig"
    sim.cluster.write_kubeconfig(kubeconfig, context="sim-ctx")
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"portForward:\n  - {{resourceType: service, resourceName: web, port: 80, "
                     f"localPort: {unused_tcp_port}, name: web}}\n", encoding="utf-8")
    rules.write_text(rules.read_text(encoding="utf-8") + "  - {resourceType: statefulset, resourceName: api, "
                     "port: grpc, name: api}\n", encoding="utf-8")
    nothing = kubetray("status")
    assert nothing.returncode == 3 and "not running" in nothing.stderr

    app = Kubetray("--headless", "--json", "--config", str(rules), "--kubeconfig", str(kubeconfig))
    try:
        forwarding: dict[str, dict] = {}
        while len(forwarding) < 2:  # in whichever order the two tunnels come up
            event = app.wait_for(lambda e: e["event"] == "forwarding")
            forwarding[event["label"]] = event
        web, api = forwarding["web"], forwarding["api"]
        answer = json.loads(kubetray("status", "--json").stdout)
        assert answer["pid"] == app.process.pid and answer["mode"] == "headless"
        assert answer["context"] == "sim-ctx" and answer["contexts"] == ["sim-ctx"]
        tunnel, api_tunnel = answer["tunnels"]
        assert tunnel["state"] == "forwarding" and tunnel["rule"] == "web"
        assert tunnel["url"] == f"http://localhost:{unused_tcp_port}/" and tunnel["pod"] == web["pod"]
        assert tunnel["context"] == "sim-ctx" and tunnel["localPort"] == unused_tcp_port
        assert (tunnel["listen"], tunnel["openToNetwork"], tunnel["auto"], tunnel["source"]) == (
            f"localhost:{unused_tcp_port}", False, False, None)
        # gRPC is no web page: an address, no URL.
        assert (api_tunnel["url"], api_tunnel["listen"]) == (None, f"localhost:{api['localPort']}")

        text = kubetray("status")
        assert text.returncode == 0
        assert f"process {app.process.pid}, headless" in text.stdout
        assert f"forwarding   web  http://localhost:{unused_tcp_port}/  pod {web['pod']}" in text.stdout
        assert f"forwarding   api  localhost:{api['localPort']}  pod api-0" in text.stdout

        second = kubetray("--headless", "--config", str(rules), "--kubeconfig", str(kubeconfig))
        assert second.returncode == 1
        assert f"kubetray is already running (process {app.process.pid}, headless)" in second.stderr
        assert f"http://localhost:{unused_tcp_port}/" in second.stderr
        assert app.stop(signal.SIGTERM) == 0
    finally:
        app.kill()
    assert kubetray("status").returncode == 3


def test_the_tray_command_while_a_headless_one_runs(sim: SimThread, tmp_path: Path,  # noqa: F811
                                                    unused_tcp_port: int) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    sim.cluster.write_kubeconfig(kubeconfig, context="sim-ctx")
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"portForward:\n  - {{resourceType: service, resourceName: web, port: 80, "
                     f"localPort: {unused_tcp_port}}}\n", encoding="utf-8")
    app = Kubetray("--headless", "--json", "--config", str(rules), "--kubeconfig", str(kubeconfig))
    try:
        app.wait_for(lambda e: e["event"] == "forwarding")
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
        second = subprocess.run([sys.executable, "-m", "trayapp", "--config", str(rules)], capture_output=True,
                                text=True, env=env, timeout=30)
        assert second.returncode == 1
        assert f"kubetray is already running (process {app.process.pid}, headless)" in second.stderr
    finally:
        app.kill()


def tunnel(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"state": "forwarding", "rule": "db", "localPort": 5432, "listen": "localhost:5432",
                               "openToNetwork": False, "url": None, "pod": "db-0", "auto": False, "source": None}
    base.update(fields)
    return base


def lines_for(*tunnels: dict[str, object]) -> list[str]:
    return status_text({"context": "dev", "namespace": "default", "tunnels": list(tunnels)}).splitlines()[1:]


def test_status_prints_an_address_a_url_only_for_web_pages_and_says_what_is_open() -> None:
    assert lines_for(tunnel()) == ["  ok forwarding   db  localhost:5432  pod db-0"]
    assert lines_for(tunnel(listen="[::1]:5432")) == ["  ok forwarding   db  [::1]:5432  pod db-0"]
    assert lines_for(tunnel(rule="web", listen="0.0.0.0:8080, open to your network", openToNetwork=True,
                            url="http://127.0.0.1:8080/")) == [
        "  ok forwarding   web  http://127.0.0.1:8080/ (0.0.0.0:8080, open to your network)  pod db-0"]
    assert lines_for(tunnel(state="waiting", localPort=None, listen=None, pod=None)) == [
        "  .. waiting      db  no local port yet"]


def test_status_names_the_source_of_automatic_tunnels() -> None:
    assert lines_for(tunnel(auto=True, source="skaffold")) == [
        "  ok forwarding   db  localhost:5432  pod db-0  (automatic: Skaffold)"]
    assert lines_for(tunnel(auto=True, source="annotation"))[0].endswith(
        "(automatic: kubetray.dev/forward annotation)")
    assert lines_for(tunnel(auto=True, source="from-a-newer-kubetray"))[0].endswith("(automatic)")
