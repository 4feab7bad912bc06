"""What bench_faults.py watches while a fault runs: a prober on the local port, kubetray's events
and `status`, `kubectl port-forward` as the reference, and a stand-in for logind on a private
D-Bus system bus that says the machine sleeps and wakes. Times are `time.monotonic()` seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from procs import Child, Children

from trayapp.platform.instance import ask

SERVING_KINDS = {"forwarding", "reconnected", "fallback"}  # events after which a tunnel claims to serve


@dataclass(frozen=True)
class Attempt:
    """One GET / on a new connection to the local port."""

    started: float
    ended: float
    pod: str | None  # the X-Pod header of a 200 answer
    error: str | None  # why it failed: refused, reset, closed, timeout, ...

    @property
    def ok(self) -> bool:
        return self.pod is not None


class Prober:
    """Starts a GET / on the local port every `interval` s, each on its own connection and each
    given `timeout` s, on an event loop in a thread: a hanging attempt does not delay the next."""

    def __init__(self, port: int, interval: float, timeout: float) -> None:
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self.attempts: list[Attempt] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="bench:prober", daemon=True)

    def start(self) -> Prober:
        self._thread.start()
        return self

    def stop(self) -> list[Attempt]:
        self._stop.set()
        self._thread.join(self.timeout + 5)
        return sorted(self.attempts, key=lambda a: a.started)

    def served(self, pod: str, since: float) -> float | None:
        """When an answer from `pod` first arrived after `since`."""
        times = [a.ended for a in list(self.attempts) if a.pod == pod and a.ended >= since]
        return min(times, default=None)

    async def _run(self) -> None:
        pending: set[asyncio.Task[None]] = set()
        while not self._stop.is_set():
            task = asyncio.ensure_future(self._attempt())
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(self.interval)
        await asyncio.gather(*pending, return_exceptions=True)

    async def _attempt(self) -> None:
        started = time.monotonic()
        pod: str | None = None
        error: str | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                raw = await reader.read()
            pod, error = _parse(raw)
        except TimeoutError:
            error = "no answer in time"
        except ConnectionRefusedError:
            error = "refused"
        except ConnectionResetError:
            error = "reset"
        except OSError as exc:
            error = type(exc).__name__
        finally:
            if writer is not None:
                writer.close()
        self.attempts.append(Attempt(started, time.monotonic(), pod, error))


def _parse(raw: bytes) -> tuple[str | None, str | None]:
    if not raw:
        return None, "closed without an answer"
    head = raw.partition(b"\r\n\r\n")[0].decode(errors="replace").split("\r\n")
    if not head[0].startswith("HTTP/1.1 200"):
        return None, f"answered {head[0][:40]!r}"
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-pod":
            return value.strip(), None
    return None, "200 without X-Pod"


@dataclass(frozen=True)
class Event:
    at: float
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.data.get("event"))


class EventLog:
    """kubetray's JSON events, read from its stdout by a thread as they come."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.events: list[Event] = []
        self.ended = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, name=f"bench:{child.name}:events", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            line = self.child.lines.get()
            with self._changed:
                if line is None:
                    self.ended = True
                elif line.startswith("{"):
                    self.events.append(Event(getattr(line, "at", time.monotonic()), json.loads(line)))
                self._changed.notify_all()
            if line is None:
                return

    def wait_for(self, matches: Callable[[Event], bool], timeout: float) -> Event:
        with self._changed:
            found: list[Event] = []

            def seen() -> bool:
                found[:] = [e for e in self.events if matches(e)]
                return bool(found) or self.ended

            self._changed.wait_for(seen, timeout)
            if found:
                return found[0]
        if self.ended:
            raise EOFError(f"{self.child.name} exited: {self.child.stderr_tail()}")
        kinds = [e.kind for e in self.events[-8:]]
        raise TimeoutError(f"{self.child.name}: no such event within {timeout:.0f} s (last: {kinds})")

    def after(self, since: float) -> list[Event]:
        with self._changed:
            return [e for e in self.events if e.at >= since]

    def claim(self, at: float) -> str | None:
        """What the events said the tunnel does at `at`: forwarding, waiting, stopped; None before any.
        A `failed` event is one connection's failure and says nothing of the tunnel, so it is skipped."""
        claim = None
        with self._changed:
            for event in self.events:
                if event.at > at:
                    break
                if event.kind in SERVING_KINDS:
                    claim = "forwarding"
                elif event.kind in ("waiting", "stopped"):
                    claim = event.kind
        return claim


class StatusPoller:
    """`kubetray status --json`'s answer for one tunnel, asked over the instance socket every `interval` s."""

    def __init__(self, instance_folder: Path, port: int, interval: float = 0.2) -> None:
        self.folder = instance_folder
        self.port = port
        self.interval = interval
        self.samples: list[tuple[float, str | None, str | None]] = []  # (at, state, pod); None: no answer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench:status", daemon=True)

    def start(self) -> StatusPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            answer = ask({"request": "status"}, timeout=1.0, folder=self.folder)
            state = pod = None
            for tunnel in (answer or {}).get("tunnels") or []:
                if tunnel.get("localPort") == self.port:
                    state, pod = tunnel.get("state"), tunnel.get("pod")
            self.samples.append((time.monotonic(), state, pod))
            self._stop.wait(self.interval)

    def claim(self, at: float) -> str | None:
        """The state of the last answer at or before `at` (None if there was none in the last second)."""
        last = None
        for sample_at, state, _ in list(self.samples):
            if sample_at > at:
                break
            last = (sample_at, state)
        if last is None or at - last[0] > 1.0:
            return None
        return last[1]


class KubectlForward:
    """`kubectl port-forward TARGET :PORT` with its stdout and stderr time-stamped line by line.
    kubectl claims to forward for as long as it runs; it tells by printing an error or exiting."""

    _FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ")

    def __init__(self, kubeconfig: Path, namespace: str, target: str, port: int, cwd: Path) -> None:
        kubectl = shutil.which("kubectl") or "/usr/bin/kubectl"
        self.lines: list[tuple[float, str]] = []
        self.exited_at: float | None = None
        self.local_port: int | None = None
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [kubectl, "--kubeconfig", str(kubeconfig), "-n", namespace, "port-forward",
             "--address", "127.0.0.1", target, f":{port}"],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        )
        self._thread = threading.Thread(target=self._read, args=(self.proc.stdout,), name="bench:kubectl", daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            with self._changed:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                match = self._FORWARDING.search(line)
                if match and self.local_port is None:
                    self.local_port = int(match.group(1))
                self._changed.notify_all()
        self.proc.wait()
        with self._changed:
            self.exited_at = time.monotonic()
            self._changed.notify_all()

    def wait_listening(self, timeout: float) -> int | None:
        with self._changed:
            self._changed.wait_for(lambda: self.local_port is not None or self.exited_at is not None, timeout)
            return self.local_port

    def error_line(self) -> str:
        with self._changed:
            texts = [text for _, text in self.lines]
        return next((t for t in texts if "error" in t.lower()), texts[-1] if texts else "(no output)").strip()

    def told(self, since: float) -> tuple[float, str] | None:
        """When kubectl first said something was wrong after `since`: an error line, or its exit."""
        with self._changed:
            for at, text in self.lines:
                if at >= since and ("error" in text.lower() or "lost connection" in text.lower()):
                    return at, "error"
            if self.exited_at is not None and self.exited_at >= since:
                return self.exited_at, f"exited ({self.proc.returncode})"
        return None

    def claim(self, at: float) -> str | None:
        return "forwarding" if self.exited_at is None or at < self.exited_at else "exited"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
        self._thread.join(3)


_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class LogindStandIn:
    """A private D-Bus bus standing in for the system bus (given to kubetray as
    DBUS_SYSTEM_BUS_ADDRESS) on which the bench owns org.freedesktop.login1 and emits logind's
    PrepareForSleep(true) before a sleep and PrepareForSleep(false) on the wake."""

    def __init__(self, children: Children, folder: Path, cwd: Path) -> None:
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection

        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "system-bus.conf"
        config.write_text(_BUS_CONFIG.format(socket=folder / "system_bus_socket"))
        self.daemon = children.start("dbus-daemon", [
            shutil.which("dbus-daemon") or "dbus-daemon", f"--config-file={config}", "--nofork", "--print-address"],
            cwd)
        self.address = self.daemon.expect(lambda line: line.startswith("unix:"), 10).strip()
        self._conn = open_dbus_connection(bus=self.address)
        reply = self._conn.send_and_get_reply(message_bus.RequestName("org.freedesktop.login1"), timeout=5)
        if reply.body[0] != 1:  # DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER
            raise RuntimeError(f"could not own org.freedesktop.login1 on the private bus ({reply.body})")
        self._message_bus = message_bus

    def prepare_for_sleep(self, sleeping: bool) -> None:
        from jeepney import DBusAddress, new_signal

        manager = DBusAddress("/org/freedesktop/login1", interface="org.freedesktop.login1.Manager")
        self._conn.send(new_signal(manager, "PrepareForSleep", "b", (sleeping,)))

    def peers(self) -> int:
        """How many other connections the bus has (kubetray's listener is one, when it is there)."""
        reply = self._conn.send_and_get_reply(self._message_bus.ListNames(), timeout=5)
        return sum(1 for name in reply.body[0] if name.startswith(":")) - 1

    def close(self) -> None:
        self._conn.close()


def logind_unavailable() -> str | None:
    """Why the wake-signal row cannot run here, or None."""
    try:
        import importlib.util

        if importlib.util.find_spec("trayapp.platform.power") is None:
            return "not available: trayapp.platform.power (the logind PrepareForSleep listener) is not there yet"
        import jeepney  # noqa: F401
    except ImportError:
        return "not available: jeepney is not installed"
    if shutil.which("dbus-daemon") is None:
        return "not available: dbus-daemon is not installed"
    return None


def private_dirs(folder: Path) -> dict[str, str]:
    """A fresh XDG runtime, state and config folder: no instance socket, remembered port or
    settings of an earlier run."""
    env = {}
    for var, name in (("XDG_RUNTIME_DIR", "run"), ("XDG_STATE_HOME", "state"), ("XDG_CONFIG_HOME", "config")):
        path = folder / name
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        env[var] = str(path)
    return env
