"""One kubetray per user: a local socket that the running instance answers on.

The running kubetray listens on a Unix socket in a folder only the user can open
($XDG_RUNTIME_DIR/kubetray, else a per-user folder in the temp dir). A second `kubetray` finds it
answering and hands over instead of starting (`ask`), and `kubetray status` asks it for its
tunnels. An exclusive lock file decides who runs, so two kubetrays started at once cannot both
win; a socket file left by a crashed instance is replaced.

Windows has no Unix sockets in asyncio: there the instance listens on 127.0.0.1 and writes its
port and a random key to a file in the user's local app-data folder; a request without the key is
refused, so other users on the machine cannot drive it. The same lock file decides who runs.

The protocol is one JSON object per line: a request {"request": "status"} and one answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from trayapp.errors import KubetrayError

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
_LIMIT = 1 << 20  # a status answer with hundreds of tunnels fits easily


class AlreadyRunning(KubetrayError):
    title = "kubetray is already running"


def instance_dir(environ: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    environ = os.environ if environ is None else environ
    platform = platform or sys.platform
    if platform == "win32":
        base = environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "kubetray"
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        return Path(runtime) / "kubetray"
    return Path(tempfile.gettempdir()) / f"kubetray-{os.getuid()}"


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if sys.platform != "win32":
        info = path.stat()
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            # Someone else's folder, or one others can enter: they could answer in our place.
            raise KubetrayError(f"The folder {path} belongs to another user or is open to others; "
                                "kubetray will not use it for its instance socket.")
    return path


class InstanceServer:
    def __init__(self, handler: Handler, folder: Path | None = None) -> None:
        self._handler = handler
        self._folder = folder or instance_dir()
        self._server: asyncio.AbstractServer | None = None
        self._key = secrets.token_hex(16)
        self._written: Path | None = None
        self._lock: int | None = None

    async def start(self) -> None:
        """Listen; raises AlreadyRunning when another kubetray answers on the socket."""
        folder = _private_dir(self._folder)
        if sys.platform == "win32":
            await self._start_tcp(folder)
            return
        self._lock = _hold_lock(folder / "instance.lock")
        path = folder / "instance.sock"
        # Holding the lock, any socket file there was left by an instance that crashed; asyncio
        # replaces it.
        self._server = await asyncio.start_unix_server(self._serve, path=str(path), limit=_LIMIT)
        self._written = path

    async def _start_tcp(self, folder: Path) -> None:
        self._lock = _hold_lock(folder / "instance.lock")
        self._server = await asyncio.start_server(self._serve, host="127.0.0.1", port=0, limit=_LIMIT)
        port = self._server.sockets[0].getsockname()[1]
        path = folder / "instance.json"
        path.write_text(json.dumps({"port": port, "key": self._key}), encoding="utf-8")
        self._written = path

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # A client that connects and says nothing must not hold up a quit.
            line = await asyncio.wait_for(reader.readline(), 5.0)
            request = json.loads(line or b"{}")
            if not isinstance(request, dict):
                raise ValueError("not an object")
            if sys.platform == "win32" and not secrets.compare_digest(str(request.get("key", "")), self._key):
                answer: dict[str, Any] = {"error": "refused"}
            elif request.get("request") == "ping":
                answer = {"pid": os.getpid()}
            else:
                answer = await self._handler(request)
            writer.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
            await writer.drain()
        except (ValueError, ConnectionError, TimeoutError) as exc:
            log.debug("ignored a bad instance request: %s", exc)
        except Exception:
            log.exception("answering an instance request failed")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._written is not None:
            self._written.unlink(missing_ok=True)
            self._written = None
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None


def _hold_lock(path: Path) -> int:
    """An exclusive lock held for the process's life; the OS drops it if the process dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise AlreadyRunning("Another kubetray is running for this user.") from None
    return fd


def ask(request: Mapping[str, Any], timeout: float = 3.0, folder: Path | None = None) -> dict[str, Any] | None:
    """Send one request to the running kubetray; None when none is running. Blocking."""
    folder = folder or instance_dir()
    payload = dict(request)
    try:
        if sys.platform == "win32":
            info = json.loads((folder / "instance.json").read_text(encoding="utf-8"))
            payload["key"] = info["key"]
            sock = socket.create_connection(("127.0.0.1", int(info["port"])), timeout=timeout)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(str(folder / "instance.sock"))
    except (OSError, ValueError, KeyError):
        return None
    with sock:
        try:
            sock.sendall(json.dumps(payload).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            answer = json.loads(data)
        except (OSError, ValueError):
            return None
    return answer if isinstance(answer, dict) else None
