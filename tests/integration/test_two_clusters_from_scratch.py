"""Issue 11's "done when", as a user does it: from an empty rules file to three forwards in two
clusters without an editor. Everything is a real process: `kubetray --headless --json` watching the
files, `kubetray add`/`pin`/`list` editing and reading the rules file, the real kubectl switching
the current context, and two simulated clusters behind one kubeconfig.

Top-level rules follow the current context (after the switch they forward from the new one, on the
same local ports); the pinned context's rule keeps forwarding and its open connection carries on;
the file reads as a person would have written it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from trayapp.sim import SimCluster
from trayapp.sim.runner import SimThread, Simulator, run_in_thread

from .conftest import SCENARIO
from .test_headless import Kubetray

KUBECTL = shutil.which("kubectl")
ANSWER_SECONDS = 15.0  # generous under load; a healthy run answers in well under a second

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="needs the real kubectl to switch contexts")


@pytest.fixture
def clusters() -> Iterator[tuple[SimThread, Simulator]]:
    simulator = Simulator({"dev": SimCluster("dev", scenario=SCENARIO), "prod": SimCluster("prod", scenario=SCENARIO)})
    with run_in_thread(simulator) as thread:
        yield thread, simulator


def kubetray(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig),
           "XDG_STATE_HOME": tempfile.mkdtemp(prefix="kubetray-test-state-")}
    result = subprocess.run([sys.executable, "-m", "trayapp", *args], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 0, f"kubetray {' '.join(args)}: {result.stderr}"
    return result


def web_pod(port: int) -> str:
    """The pod that answered an HTTP request through the local port."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=ANSWER_SECONDS) as answer:
        assert answer.status == 200
        return str(answer.headers["X-Pod"])


def echoes(connection: socket.socket, payload: bytes) -> None:
    connection.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = connection.recv(len(payload) - len(received))
        assert chunk, f"the connection closed after {received!r}"
        received += chunk
    assert received == payload


def echoes_on_a_new_connection(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_SECONDS) as connection:
        echoes(connection, payload)


def forwarding(name: str, context: str, port: int) -> Callable[[dict], bool]:
    return lambda e: (e["event"] == "forwarding" and e["resourceName"] == name and e["context"] == context
                      and e["localPort"] == port)


def seen_or_wait(app: Kubetray, predicate: Callable[[dict], bool]) -> dict:
    """The matching event, whether it came already (while waiting for another) or comes later."""
    earlier = [event for event in app.seen if predicate(event)]
    return earlier[0] if earlier else app.wait_for(predicate, ANSWER_SECONDS)


def test_three_forwards_in_two_clusters_from_an_empty_rules_file(
    clusters: tuple[SimThread, Simulator], tmp_path: Path, unused_tcp_port_factory
) -> None:
    thread, simulator = clusters
    dev, prod = thread.proxy(simulator["dev"]), thread.proxy(simulator["prod"])
    web_port, api_port, echo_port = (unused_tcp_port_factory() for _ in range(3))
    kubeconfig = simulator.write_kubeconfig(tmp_path / "kubeconfig", current="dev")
    rules = tmp_path / "rules.yaml"
    rules.write_text("")
    app = Kubetray("--headless", "--json", "--config", str(rules), "--kubeconfig", str(kubeconfig))
    try:
        # Two forwards in the current context, one in prod pinned; each add asks its cluster.
        for args in (("add", "svc/web", "80", "--local-port", str(web_port)),
                     ("add", "sts/api", "grpc", "--local-port", str(api_port)),
                     ("add", "pod/debug-shell", "7000", "--local-port", str(echo_port), "--context", "prod",
                      "--pin", "--name", "prod-echo")):
            added = kubetray(kubeconfig, *args, "--config", str(rules))
            assert added.stderr == ""  # the cluster has each resource: no warning
        pinned_output = added.stdout.splitlines()
        assert pinned_output[1].startswith("Context prod is now pinned")

        seen_or_wait(app, forwarding("web", "dev", web_port))
        assert web_pod(web_port) in dev.pod_names("default", "app=web")
        seen_or_wait(app, forwarding("api", "dev", api_port))
        echoes_on_a_new_connection(api_port, b"api in dev")
        pinned = seen_or_wait(app, forwarding("debug-shell", "prod", echo_port))
        assert pinned["pod"] == "debug-shell"
        held = socket.create_connection(("127.0.0.1", echo_port), timeout=ANSWER_SECONDS)
        try:
            echoes(held, b"prod before the switch")

            # The current context becomes prod: the top-level rules now forward from prod on the
            # same local ports; the pinned tunnel is not restarted and its connection carries on.
            subprocess.run([KUBECTL or "kubectl", "config", "use-context", "prod", "--kubeconfig", str(kubeconfig)],
                           check=True, capture_output=True, timeout=30)
            seen_or_wait(app, lambda e: e["event"] == "context" and e["context"] == "prod")
            seen_or_wait(app, forwarding("web", "prod", web_port))
            assert web_pod(web_port) in prod.pod_names("default", "app=web")
            seen_or_wait(app, forwarding("api", "prod", api_port))
            echoes_on_a_new_connection(api_port, b"api in prod")
            echoes(held, b"prod after the switch")
            echoes_on_a_new_connection(echo_port, b"a new connection to prod")
        finally:
            held.close()
        for name in ("web", "api"):
            seen_or_wait(app, lambda e, name=name: e["event"] == "stopped" and e["resourceName"] == name)
        pinned_events = [e for e in app.seen if e["resourceName"] == "debug-shell"]
        assert [e["event"] for e in pinned_events if e["event"] in ("forwarding", "stopped")] == ["forwarding"]
        assert {(e["resourceName"], e["context"]) for e in app.seen if e["event"] == "stopped"} == {
            ("web", "dev"), ("api", "dev")}
        assert app.stop(signal.SIGTERM) == 0
    finally:
        app.kill()

    assert rules.read_text() == (
        "portForward:\n"
        "  - resourceType: service\n"
        "    resourceName: web\n"
        "    port: 80\n"
        f"    localPort: {web_port}\n"
        "  - resourceType: statefulset\n"
        "    resourceName: api\n"
        "    port: grpc\n"
        f"    localPort: {api_port}\n"
        "contexts:\n"
        "  prod:\n"
        "    pinned: true\n"
        "    portForward:\n"
        "      - resourceType: pod\n"
        "        resourceName: debug-shell\n"
        "        port: 7000\n"
        f"        localPort: {echo_port}\n"
        "        name: prod-echo\n")
    listed = kubetray(kubeconfig, "list", "--config", str(rules)).stdout.splitlines()
    assert [row.split()[:2] for row in listed[1:]] == [
        [f"{rules}:2", "all"], [f"{rules}:6", "all"], [f"{rules}:14", "context"]]
    assert "service/web:80" in listed[1] and "statefulset/api:grpc" in listed[2]
    assert "pod/debug-shell:7000 (prod-echo)" in listed[3] and "context prod" in listed[3]
