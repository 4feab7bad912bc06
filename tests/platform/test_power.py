"""Sleep, wake and network signals: the real logind and NetworkManager signals on a private bus,
the burst window, and the quiet fallback when there is no bus or the bus hangs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from trayapp.platform.power import Change, Emit, NetworkWatcher, Reason
from trayapp.platform.power.linux import LinuxSource, NetworkManagerState

from .system_bus import NM_CONNECTED_GLOBAL, NM_DISCONNECTED, FakeService, PrivateBus

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux source only")

ACTIVE_CONNECTION = "/org/freedesktop/NetworkManager/ActiveConnection/3"


class Recorder:
    """The raw reasons a source emits, with a way to wait for the nth one."""

    def __init__(self) -> None:
        self.seen: list[Reason] = []
        self._changed = asyncio.Event()

    def __call__(self, reason: Reason) -> None:
        self.seen.append(reason)
        self._changed.set()

    async def wait_for(self, count: int) -> list[Reason]:
        async with asyncio.timeout(10):
            while len(self.seen) < count:
                self._changed.clear()
                await self._changed.wait()
        return list(self.seen)


@contextlib.asynccontextmanager
async def listening(emit: Emit) -> AsyncIterator[LinuxSource]:
    source = LinuxSource()
    await source.start(emit)
    try:
        yield source
    finally:
        await source.aclose()


@contextlib.asynccontextmanager
async def watching(watcher: NetworkWatcher) -> AsyncIterator[asyncio.Queue[Change]]:
    """The watcher's changes in a queue, the watcher listening before the block starts."""
    changes: asyncio.Queue[Change] = asyncio.Queue()

    async def pump() -> None:
        async for change in watcher.changes():
            changes.put_nowait(change)

    task = asyncio.get_running_loop().create_task(pump(), name="test:changes")
    try:
        async with asyncio.timeout(10):
            await watcher.listening.wait()
        yield changes
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def flush(service: FakeService) -> None:
    """Wait until the bus daemon has routed everything `service` sent so far (a round trip)."""
    from jeepney.bus_messages import message_bus

    service.connection.send_and_get_reply(message_bus.GetId(), timeout=5)


async def test_logind_sleep_then_wake(logind: FakeService) -> None:
    recorder = Recorder()
    async with listening(recorder):
        logind.signal("PrepareForSleep", "b", True)
        logind.signal("PrepareForSleep", "b", False)
        assert await recorder.wait_for(2) == [Reason.SLEEPING, Reason.WOKE]


async def test_network_manager_connected_and_primary_connection(network_manager: FakeService) -> None:
    recorder = Recorder()
    async with listening(recorder):
        network_manager.signal("StateChanged", "u", NM_DISCONNECTED)  # offline: nothing to restart on
        network_manager.properties_changed({"PrimaryConnection": ("o", "/")})  # offline too
        network_manager.properties_changed({"Connectivity": ("u", 4)})  # not a path change
        network_manager.signal("StateChanged", "u", NM_CONNECTED_GLOBAL)  # back online: restart
        network_manager.signal("StateChanged", "u", 60)  # still connected (site only): no restart
        network_manager.properties_changed({"PrimaryConnection": ("o", ACTIVE_CONNECTION)})  # route moved
        # one sender's signals arrive in order, so the last one's reason closes the list
        assert await recorder.wait_for(2) == [Reason.NETWORK, Reason.NETWORK]
        network_manager.signal("StateChanged", "u", NM_CONNECTED_GLOBAL)  # 60 -> 70: still connected
        network_manager.signal("StateChanged", "u", NM_DISCONNECTED)
        network_manager.signal("StateChanged", "u", 50)  # connected (local) again: restart
        assert await recorder.wait_for(3) == [Reason.NETWORK] * 3


async def test_only_the_real_logind_is_believed(system_bus: PrivateBus, logind: FakeService) -> None:
    """A process that does not own org.freedesktop.login1 cannot fake a wake."""
    impostor = FakeService.__new__(FakeService)
    from jeepney import DBusAddress
    from jeepney.io.blocking import open_dbus_connection

    impostor.emitter = DBusAddress("/org/freedesktop/login1", interface="org.freedesktop.login1.Manager")
    impostor.connection = open_dbus_connection(bus=system_bus.address)
    recorder = Recorder()
    try:
        async with listening(recorder):
            impostor.signal("PrepareForSleep", "b", False)
            flush(impostor)
            logind.signal("PrepareForSleep", "b", True)
            assert await recorder.wait_for(1) == [Reason.SLEEPING]
    finally:
        impostor.close()


async def test_a_wake_and_the_network_burst_after_it_are_one_change(
    logind: FakeService, network_manager: FakeService
) -> None:
    watcher = NetworkWatcher(LinuxSource())
    async with watching(watcher) as changes:
        logind.signal("PrepareForSleep", "b", True)
        logind.signal("PrepareForSleep", "b", False)
        network_manager.signal("StateChanged", "u", NM_CONNECTED_GLOBAL)
        network_manager.properties_changed({"PrimaryConnection": ("o", ACTIVE_CONNECTION)})
        change = await asyncio.wait_for(changes.get(), 10)
        assert change.reason is Reason.WOKE and change.slept is not None and change.slept >= 0
        assert change.text.startswith("the computer woke from sleep after ")
        # the burst ended with one change; a later signal is a change of its own
        network_manager.signal("StateChanged", "u", NM_DISCONNECTED)
        network_manager.signal("StateChanged", "u", NM_CONNECTED_GLOBAL)
        assert await asyncio.wait_for(changes.get(), 10) == Change(Reason.NETWORK)
        assert changes.empty()


class ManualSource:
    """A source the test drives by hand (for the burst window, which needs no bus)."""

    name = "the test"

    def __init__(self) -> None:
        self.emit: Emit | None = None
        self.closed = False

    async def start(self, emit: Emit) -> None:
        self.emit = emit

    async def aclose(self) -> None:
        self.closed = True


async def test_the_window_is_counted_from_the_first_signal() -> None:
    """Signals every 0.1 s for 1.2 s are several changes, not one held back until they stop: a
    wake acts within one window however noisy the network is after it."""
    source = ManualSource()
    watcher = NetworkWatcher(source, window=0.5)
    async with watching(watcher) as changes:
        assert source.emit is not None
        source.emit(Reason.WOKE)
        for _ in range(12):
            await asyncio.sleep(0.1)
            source.emit(Reason.NETWORK)
        first = await asyncio.wait_for(changes.get(), 10)
        second = await asyncio.wait_for(changes.get(), 10)
    assert first.reason is Reason.WOKE and second.reason is Reason.NETWORK
    assert source.closed


async def test_sleep_alone_restarts_nothing_and_the_wake_says_how_long() -> None:
    now = [1000.0]
    source = ManualSource()
    watcher = NetworkWatcher(source, window=0.01, clock=lambda: now[0])
    async with watching(watcher) as changes:
        assert source.emit is not None
        source.emit(Reason.SLEEPING)
        now[0] += 600
        source.emit(Reason.WOKE)
        change = await asyncio.wait_for(changes.get(), 10)
        assert change == Change(Reason.WOKE, slept=600.0)
        assert change.text == "the computer woke from sleep after 10 min"
        source.emit(Reason.WOKE)  # a wake without a sleep seen before it
        assert await asyncio.wait_for(changes.get(), 10) == Change(Reason.WOKE)
        assert changes.empty()


def test_network_manager_state_rules() -> None:
    state = NetworkManagerState()
    assert state.state_changed(70)  # the first state seen: something changed to get here
    assert not state.state_changed(60)
    assert not state.state_changed(20)
    assert state.state_changed(50)
    assert not NetworkManagerState.primary_changed("/")
    assert NetworkManagerState.primary_changed(ACTIVE_CONNECTION)


async def test_no_system_bus_is_said_once_and_yields_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-such-socket'}")
    caplog.set_level(logging.INFO, logger="trayapp.platform.power")
    watcher = NetworkWatcher(LinuxSource())
    async with watching(watcher) as changes:
        assert changes.empty()
    said = [r.getMessage() for r in caplog.records if "will not hear" in r.getMessage()]
    assert len(said) == 1 and "there is no system bus to listen on (FileNotFoundError)" in said[0]


async def test_a_bus_without_logind_or_network_manager_is_fine(
    system_bus: PrivateBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trayapp.platform.power")
    watcher = NetworkWatcher(LinuxSource())
    async with watching(watcher):
        pass
    assert not [r for r in caplog.records if "will not hear" in r.getMessage()]


async def test_a_hung_system_bus_neither_blocks_nor_keeps_kubetray_from_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bus that accepts the connection and never answers: stopping while it hangs is prompt,
    and waiting it out ends in the quiet fallback."""
    path = tmp_path / "hung_bus_socket"
    connected = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def never_answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        connected.set()

    server = await asyncio.start_unix_server(never_answer, path=str(path))
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={path}")
    caplog.set_level(logging.INFO, logger="trayapp.platform.power")
    try:
        watcher = NetworkWatcher(LinuxSource())
        task = asyncio.get_running_loop().create_task(anext(watcher.changes()))
        await asyncio.wait_for(connected.wait(), 10)
        task.cancel()  # Ctrl-C while the bus hangs
        async with asyncio.timeout(5):
            await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()

        connected.clear()
        watcher = NetworkWatcher(LinuxSource())
        async with watching(watcher):  # waits out the connect timeout, then listens to nothing
            assert connected.is_set()
        said = [r.getMessage() for r in caplog.records if "will not hear" in r.getMessage()]
        assert len(said) == 1 and "did not answer within 2 s" in said[0]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def test_the_source_for_this_os_and_the_others_compile() -> None:
    """macOS and Windows code is not run here; it must at least be valid Python."""
    from trayapp.platform import power

    assert isinstance(power.default_source(), LinuxSource)
    folder = Path(power.__file__).parent
    for name in ("macos.py", "windows.py"):
        compile((folder / name).read_text(encoding="utf-8"), name, "exec", dont_inherit=True)
