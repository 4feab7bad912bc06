"""Tokens through the real gnome-keyring of the desktop session: `kubetray token set|delete`,
secret-tool reading what kubetray wrote, SecretStore reading it back, a headless kubetray using
it to reach a token-protected cluster, and the message when no keyring is reachable.

And a keyring nobody unlocked (a session bus of the test's own, where gnome-keyring is only
D-Bus-activatable): the demo forwards without starting it or putting up its dialog, and a
locked keyring holding a stored token is neither unlocked nor waited for."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from trayapp.sim import SimCluster
from trayapp.sim.runner import run_in_thread

from .harness import Desktop, processes_with

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
            "import sys\nfrom trayapp.config.paths import state_dir\n"
            "from trayapp.platform.secrets import SecretStore\n"
            "print(SecretStore(state_dir()).get_token(sys.argv[1]))",
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


# --- a keyring nobody unlocked: kubetray must not be the one that asks -------------------------

SECRETS = "org.freedesktop.secrets"
PROMPTER = "gcr-prompter"
LOGIN_COLLECTION = "/org/freedesktop/secrets/collection/login"
OWN_MARKER = "KUBETRAY_KEYRING_TEST"


class FirstLogin:
    """A session bus of the test's own, on the desktop's screen, with a fresh home: a new
    account's first login, or a window manager that never unlocks a keyring. Nothing runs the
    Secret Service, but the bus starts gnome-keyring the moment anyone calls it (D-Bus
    activation), and gnome-keyring then puts its password dialog (gcr-prompter) on the screen."""

    def __init__(self, desktop: Desktop, root: Path) -> None:
        self.desktop = desktop
        self.root = root
        self.marker = uuid.uuid4().hex
        home, runtime = root / "home", root / "runtime"
        home.mkdir(parents=True)
        runtime.mkdir(mode=0o700)
        self.address = f"unix:path={root / 'bus'}"
        self.data_home = home / ".local" / "share"
        self.state_home = home / ".local" / "state"
        self.env = {
            **desktop.env, OWN_MARKER: self.marker, "DBUS_SESSION_BUS_ADDRESS": self.address,
            "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(self.data_home), "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_STATE_HOME": str(self.state_home),
        }
        # Services the bus starts inherit its environment: the desktop's DISPLAY, our marker.
        self.bus_log = (root / "bus.log").open("w", encoding="utf-8")
        self.bus = desktop.popen(["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address={self.address}",
                                  "--print-address=1"], env=self.env, stdout=subprocess.PIPE,
                                 stderr=self.bus_log, text=True)
        assert self.bus.stdout is not None
        assert self.bus.stdout.readline().startswith("unix:"), "the test's dbus-daemon did not start"

    def call(self, *args: str, dest: str = "org.freedesktop.DBus", path: str = "/org/freedesktop/DBus") -> str:
        answer = self.desktop.run(["dbus-send", f"--bus={self.address}", "--print-reply", f"--dest={dest}",
                                   path, *args], env=self.env)
        assert answer.returncode == 0, answer.stderr
        return answer.stdout

    def running(self, name: str) -> bool:
        # NameHasOwner never starts a service by D-Bus activation.
        return "boolean true" in self.call("org.freedesktop.DBus.NameHasOwner", f"string:{name}")

    def activatable(self) -> str:
        return self.call("org.freedesktop.DBus.ListActivatableNames")

    def processes(self) -> list[str]:
        return [name for _pid, name in processes_with(OWN_MARKER, self.marker)]

    def prompts(self) -> list[dict[str, Any]]:
        return [w for w in self.desktop.windows()
                if PROMPTER in (w["name"] or "") or PROMPTER in (w["wm_class"] or [])]

    def close(self) -> None:
        """Stop the bus and whatever it started (gnome-keyring, a prompter), by process id."""
        if self.bus.poll() is None:
            self.bus.terminate()
            self.bus.wait(timeout=10)
        for _ in range(50):
            left = processes_with(OWN_MARKER, self.marker)
            if not left:
                break
            for pid, _name in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        self.bus_log.close()
        self.desktop.wait_for(lambda: not self.prompts(), timeout=10, what="the keyring prompt to close")


@pytest.fixture
def first_login(desktop: Desktop, tmp_path: Path) -> Iterator[FirstLogin]:
    session = FirstLogin(desktop, tmp_path / "first-login")
    try:
        yield session
    finally:
        session.close()


def forwarding_all(app: subprocess.Popen[str], events: JsonLines, names: set[str], desktop: Desktop,
                   stderr_path: Path) -> dict[str, dict[str, Any]]:
    def seen() -> dict[str, dict[str, Any]] | bool:
        found = {e["resourceName"]: e for e in list(events.events) if e["event"] == "forwarding"}
        return found if set(found) >= names else app.poll() is not None

    result = desktop.wait_for(seen, timeout=30, what=f"kubetray to forward {sorted(names)}")
    assert isinstance(result, dict), stderr_path.read_text(encoding="utf-8")
    return result


def test_the_demo_forwards_without_starting_or_prompting_a_keyring(
    desktop: Desktop, first_login: FirstLogin, tmp_path: Path
) -> None:
    assert f'"{SECRETS}"' in first_login.activatable()  # one call would start gnome-keyring...
    assert not first_login.running(SECRETS)  # ...and nothing has made it yet
    stderr_path = tmp_path / "demo.stderr"
    with stderr_path.open("w", encoding="utf-8") as stderr:
        app = desktop.popen([sys.executable, "-m", "trayapp", "--demo", "--headless", "--json"],
                            env=first_login.env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            events = JsonLines(app)
            forwarding = forwarding_all(app, events, {"web", "api", "report", "debug-shell"}, desktop, stderr_path)
            with urllib.request.urlopen(f"http://127.0.0.1:{forwarding['web']['localPort']}/", timeout=10) as answer:
                assert answer.status == 200
            # kubetray never called the Secret Service: it would be running now, with its dialog up.
            assert not first_login.running(SECRETS)
            assert not first_login.prompts() and PROMPTER not in first_login.processes()
            assert not (first_login.data_home / "keyrings").exists()
        finally:
            app.terminate()
            assert app.wait(timeout=15) == 0

    # The check can fail: in the same session, one lookup through the keyring library, as
    # kubetray made at start-up before, starts gnome-keyring and puts up its dialog.
    lookup = desktop.popen([sys.executable, "-c", "import keyring; keyring.get_password('kubetray', 'kubetray-demo')"],
                           env=first_login.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        desktop.wait_for(lambda: first_login.running(SECRETS), timeout=20, what="the lookup to start gnome-keyring")
        desktop.wait_for(first_login.prompts, timeout=20, what="gnome-keyring's password dialog")
        assert lookup.poll() is None  # and the lookup waits for the user
    finally:
        lookup.kill()
        lookup.wait()


def unlocked_keyring(first_login: FirstLogin, desktop: Desktop) -> None:
    """gnome-keyring on the test's bus with a login keyring it created and unlocked."""
    password = first_login.root / "password"
    password.write_text("test", encoding="utf-8")
    with password.open("r", encoding="utf-8") as stdin:
        desktop.popen(["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                      env=first_login.env, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    desktop.wait_for(lambda: first_login.running(SECRETS) and (first_login.data_home / "keyrings" / "login.keyring").exists(),
                     timeout=20, what="gnome-keyring with an unlocked login keyring")


def collection_locked(first_login: FirstLogin) -> bool:
    answer = first_login.call("org.freedesktop.DBus.Properties.Get", "string:org.freedesktop.Secret.Collection",
                              "string:Locked", dest=SECRETS, path=LOGIN_COLLECTION)
    return "boolean true" in answer


def test_a_locked_keyring_is_not_unlocked_and_the_tunnels_do_not_wait(
    desktop: Desktop, first_login: FirstLogin, tmp_path: Path, unused_tcp_port: int
) -> None:
    unlocked_keyring(first_login, desktop)
    with run_in_thread(SimCluster("locked-keyring", scenario=SCENARIO)) as sim:  # needs no token
        kubeconfig = tmp_path / "kubeconfig"
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
        stored = desktop.run([sys.executable, "-m", "trayapp", "token", "set", CONTEXT], input=TOKEN, env=first_login.env)
        assert stored.returncode == 0, stored.stderr
        first_login.call("org.freedesktop.Secret.Service.Lock", f"array:objpath:{LOGIN_COLLECTION}",
                         dest=SECRETS, path="/org/freedesktop/secrets")
        assert collection_locked(first_login)

        stderr_path = tmp_path / "kubetray.stderr"
        with stderr_path.open("w", encoding="utf-8") as stderr:
            app = desktop.popen([sys.executable, "-m", "trayapp", "--headless", "--json", "--kubeconfig", kubeconfig,
                                 "--config", rules], env=first_login.env, stdout=subprocess.PIPE, stderr=stderr, text=True)
            try:
                events = JsonLines(app)
                forwarding_all(app, events, {"web"}, desktop, stderr_path)
                with urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/", timeout=10) as answer:
                    assert answer.status == 200
                assert not first_login.prompts() and PROMPTER not in first_login.processes()
                assert collection_locked(first_login)  # kubetray did not unlock it
            finally:
                app.terminate()
                assert app.wait(timeout=15) == 0
        said = stderr_path.read_text(encoding="utf-8")
        assert said.count("is locked, and kubetray does not unlock it by itself") == 1, said
        assert TOKEN not in said
