"""A private dbus-daemon standing in for the system bus, and fake logind and NetworkManager on it.

The fakes own the real well-known names and emit the real signals on the real paths and
interfaces, over jeepney (a D-Bus library kubetray does not use for this), so kubetray's
dbus-fast code is checked against an independent implementation and a real bus daemon.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="signal"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

LOGIN1 = ("org.freedesktop.login1", "/org/freedesktop/login1", "org.freedesktop.login1.Manager")
NETWORK_MANAGER = ("org.freedesktop.NetworkManager", "/org/freedesktop/NetworkManager",
                   "org.freedesktop.NetworkManager")
NM_CONNECTED_GLOBAL = 70
NM_DISCONNECTED = 20


def needs_dbus_daemon() -> None:
    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon is not installed (Debian: apt-get install dbus-daemon); "
                    "the sleep and network tests need a private bus to emit logind's signals on.")


class PrivateBus:
    """`dbus-daemon --nofork` with a config that lets anyone own any name and send signals."""

    def __init__(self, folder: Path) -> None:
        needs_dbus_daemon()
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "bus.conf"
        config.write_text(CONFIG.format(socket=folder / "system_bus_socket"), encoding="utf-8")
        self.process = subprocess.Popen(
            ["dbus-daemon", "--nofork", f"--config-file={config}", "--print-address=1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().strip()  # printed once it listens
        if not self.address:
            self.process.wait(5)
            raise RuntimeError(f"dbus-daemon did not start (exit status {self.process.returncode})")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


class FakeService:
    """A connection that owns a service's well-known name and emits its signals."""

    def __init__(self, address: str, service: tuple[str, str, str]) -> None:
        from jeepney import DBusAddress
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection

        self.name, path, interface = service
        self.emitter = DBusAddress(path, interface=interface)
        self.connection = open_dbus_connection(bus=address)
        reply = self.connection.send_and_get_reply(message_bus.RequestName(self.name), timeout=5)
        assert reply.body == (1,), f"could not own {self.name}: {reply.body}"  # 1: primary owner

    def signal(self, member: str, signature: str, *body: Any) -> None:
        from jeepney import new_signal

        self.connection.send(new_signal(self.emitter, member, signature, body))

    def properties_changed(self, changed: dict[str, tuple[str, Any]]) -> None:
        from jeepney import DBusAddress, new_signal

        properties = DBusAddress(self.emitter.object_path, interface="org.freedesktop.DBus.Properties")
        self.connection.send(new_signal(properties, "PropertiesChanged", "sa{sv}as",
                                        (self.emitter.interface, changed, [])))

    def close(self) -> None:
        self.connection.close()


@contextlib.contextmanager
def private_system_bus(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBus]:
    """A private bus that kubetray takes for the system bus (DBUS_SYSTEM_BUS_ADDRESS)."""
    pytest.importorskip("jeepney", reason="the fake logind and NetworkManager are written with jeepney")
    bus = PrivateBus(folder)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
    try:
        yield bus
    finally:
        bus.close()


@contextlib.contextmanager
def fake_service(bus: PrivateBus, service: tuple[str, str, str]) -> Iterator[FakeService]:
    fake = FakeService(bus.address, service)
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def system_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBus]:
    """A private dbus-daemon standing in for the system bus (DBUS_SYSTEM_BUS_ADDRESS points at it)."""
    with private_system_bus(tmp_path / "system-bus", monkeypatch) as bus:
        yield bus


@pytest.fixture
def logind(system_bus: PrivateBus) -> Iterator[FakeService]:
    with fake_service(system_bus, LOGIN1) as service:
        yield service


@pytest.fixture
def network_manager(system_bus: PrivateBus) -> Iterator[FakeService]:
    with fake_service(system_bus, NETWORK_MANAGER) as service:
        yield service
