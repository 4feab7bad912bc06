"""Tokens through the real gnome-keyring of the desktop session: `kubetray token set|delete`,
secret-tool reading what kubetray wrote, SecretStore reading it back, a headless kubetray using
it to reach a token-protected cluster, and the message when no keyring is reachable."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from trayapp.sim import SimCluster
from trayapp.sim.runner import run_in_thread

from .harness import Desktop

CONTEXT = "desktop-ctx"
TOKEN = "desk-t0ken-for-kubetray"
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


def own_runtime_dir(tmp_path: Path) -> dict[str, str]:
    """A fresh private XDG_RUNTIME_DIR (mode 700, as mkdtemp makes it), so kubetray's
    single-instance lock never meets another kubetray of this or an earlier test."""
    return {"XDG_RUNTIME_DIR": tempfile.mkdtemp(prefix="runtime-", dir=tmp_path)}


def kubetray(desktop: Desktop, tmp_path: Path, *args: str, stdin: str = "",
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**(env if env is not None else desktop.env), **own_runtime_dir(tmp_path)}
    return desktop.run([sys.executable, "-m", "trayapp", *args], input=stdin, env=environment)


def secret_tool_lookup(desktop: Desktop, context: str) -> subprocess.CompletedProcess[str]:
    return desktop.run(["secret-tool", "lookup", "service", "kubetray", "username", context])


def test_token_set_read_and_delete_through_gnome_keyring(desktop: Desktop, tmp_path: Path) -> None:
    stored = kubetray(desktop, tmp_path, "token", "set", CONTEXT, stdin=TOKEN + "\n")
    assert stored.returncode == 0, stored.stderr
    assert "Stored the token" in stored.stdout
    assert TOKEN not in stored.stdout + stored.stderr  # never echoed
    try:
        lookup = secret_tool_lookup(desktop, CONTEXT)
        assert (lookup.returncode, lookup.stdout.rstrip("\n")) == (0, TOKEN)

        read_back = desktop.run([
            sys.executable, "-c",
            "import sys\nfrom trayapp.platform.secrets import SecretStore\n"
            "print(SecretStore().get_token(sys.argv[1]))",
            CONTEXT,
        ])
        assert (read_back.returncode, read_back.stdout) == (0, TOKEN + "\n"), read_back.stderr
    finally:
        deleted = kubetray(desktop, tmp_path, "token", "delete", CONTEXT)
    assert deleted.returncode == 0 and "Deleted the token" in deleted.stdout, deleted.stderr
    gone = secret_tool_lookup(desktop, CONTEXT)
    assert (gone.returncode, gone.stdout) == (1, "")
    again = kubetray(desktop, tmp_path, "token", "delete", CONTEXT)
    assert again.returncode == 0 and "held no token" in again.stdout


def test_no_session_bus_means_a_clear_message(desktop: Desktop, tmp_path: Path) -> None:
    # No bus address and a runtime dir without a `bus` socket: nothing can reach a keyring.
    without_bus = {k: v for k, v in desktop.env.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    result = kubetray(desktop, tmp_path, "token", "set", CONTEXT, stdin=TOKEN + "\n", env=without_bus)
    assert result.returncode == 1
    assert "Keyring unavailable" in result.stderr and "could not write to the OS keyring" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert secret_tool_lookup(desktop, CONTEXT).returncode == 1  # and nothing went to the real keyring


class JsonLines:
    """The JSON events a kubetray process prints, collected by a reader thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.events: list[dict[str, Any]] = []
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=lambda: self.events.extend(json.loads(line) for line in stdout),
                         name="kubetray-events", daemon=True).start()

    def find(self, event: str, resource: str) -> dict[str, Any] | None:
        return next((e for e in list(self.events) if e["event"] == event and e["resourceName"] == resource), None)


def test_headless_kubetray_reaches_a_cluster_with_the_stored_token(
    desktop: Desktop, tmp_path: Path, unused_tcp_port: int
) -> None:
    with run_in_thread(SimCluster("desktop-keyring", scenario=SCENARIO, token=TOKEN)) as sim:
        kubeconfig = tmp_path / "kubeconfig"
        # The user entry holds no credentials at all: only the keyring can supply the token.
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
            "clusters": [{"name": "sim", "cluster": {"server": sim.cluster.url}}],
            "users": [{"name": "nobody", "user": {}}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": "sim", "user": "nobody"}}],
        }), encoding="utf-8")
        rules = tmp_path / "rules.yaml"
        rules.write_text("portForward:\n"
                         f"  - {{resourceType: service, resourceName: web, port: 80, localPort: {unused_tcp_port}}}\n",
                         encoding="utf-8")
        stored = kubetray(desktop, tmp_path, "token", "set", CONTEXT, stdin=TOKEN)
        assert stored.returncode == 0, stored.stderr
        stderr = (tmp_path / "kubetray.stderr").open("w", encoding="utf-8")
        app = desktop.popen(
            [sys.executable, "-m", "trayapp", "--headless", "--json", "--kubeconfig", kubeconfig, "--config", rules],
            stdout=subprocess.PIPE, stderr=stderr, text=True, extra_env=own_runtime_dir(tmp_path),
        )
        try:
            events = JsonLines(app)
            forwarding = desktop.wait_for(
                lambda: events.find("forwarding", "web") or app.poll() is not None,
                timeout=20, what="kubetray to forward web")
            assert isinstance(forwarding, dict), (tmp_path / "kubetray.stderr").read_text(encoding="utf-8")
            assert forwarding["context"] == CONTEXT and forwarding["localPort"] == unused_tcp_port
            with urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/", timeout=10) as answer:
                assert answer.status == 200 and answer.headers["X-Pod"] == forwarding["pod"]
            failed = [e["message"] for e in events.events if e["event"] == "failed"]
            assert failed == []
        finally:
            app.terminate()
            app.wait(timeout=15)
            stderr.close()
            kubetray(desktop, tmp_path, "token", "delete", CONTEXT)
