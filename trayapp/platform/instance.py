"""One kubetray per user: a local socket that the running instance answers on.

The running kubetray listens on a Unix socket in a folder only the user can open
($XDG_RUNTIME_DIR/kubetray, else a per-user folder in the temp dir). A second `kubetray` finds it
answering and hands over instead of starting (`ask`), and `kubetray status` asks it for its
tunnels. An exclusive lock file decides who runs, so two kubetrays started at once cannot both
win; a socket file left by a crashed instance is replaced. When the folder or the lock cannot be
used at all (a runtime folder that is not writable, a file system without locks), that is an
InstanceUnavailable error with a sentence saying so, and kubetray runs without the lock.

Windows has no Unix sockets in asyncio: there the instance listens on 127.0.0.1 and writes its
port and a random key to a file in the user's local app-data folder. The key never crosses the
wire: each side proves it knows it with an HMAC over two fresh nonces, the instance first, so
a program that took over the port of a crashed kubetray (the file left behind still names it)
can neither answer for kubetray nor learn the key, and a client without the key is refused.
The same lock file decides who runs.

The protocol is one JSON object per line: a request {"request": "status"} and one answer. Over
TCP the request is preceded by {"hello": client nonce} -> {"nonce": ..., "proof": ...}, and it
carries the client's proof.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import hmac
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
_REQUEST_TIMEOUT = 5.0  # a client that connects and says nothing must not hold up a quit
_WITHOUT_LOCK = ("; kubetray runs anyway, but a second kubetray will not notice this one and "
                 "`kubetray status` cannot reach it.")


class AlreadyRunning(KubetrayError):
    title = "kubetray is already running"


class InstanceUnavailable(KubetrayError):
    """The instance folder, lock or socket cannot be used for a reason other than another kubetray."""

    title = "Single-instance lock unavailable"


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


def _why(exc: OSError) -> str:
    """An OS error in words of our own."""
    reasons = {
        errno.EACCES: "kubetray may not write there", errno.EPERM: "kubetray may not write there",
        errno.EROFS: "the file system is read-only", errno.ENOSPC: "the disk is full",
        errno.ENOTDIR: "a file stands where a folder should be", errno.EEXIST: "a file stands in the way",
        errno.EISDIR: "a folder stands where the file should be", errno.ENOLCK: "the file system has no locks",
        errno.ENAMETOOLONG: "the path is too long", errno.ENOENT: "a folder on the way does not exist",
    }
    return reasons.get(exc.errno or 0, f"the system refused: {errno.errorcode.get(exc.errno or 0, 'unknown error')}")


def _private_dir(path: Path) -> Path:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise InstanceUnavailable(f"kubetray could not make its instance folder {path} ({_why(exc)})"
                                  + _WITHOUT_LOCK) from None
    if sys.platform != "win32" and (info.st_uid != os.getuid() or info.st_mode & 0o077):
        # Someone else's folder, or one others can enter: they could answer in our place.
        raise InstanceUnavailable(f"The folder {path} belongs to another user or is open to others, so "
                                  "kubetray will not use it for its instance socket" + _WITHOUT_LOCK)
    return path


def _proof(key: str, role: bytes, client_nonce: str, server_nonce: str) -> str:
    message = b"kubetray-instance|" + role + b"|" + client_nonce.encode() + b"|" + server_nonce.encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


class InstanceServer:
    def __init__(self, handler: Handler, folder: Path | None = None, tcp: bool | None = None) -> None:
        self._handler = handler
        self._folder = folder or instance_dir()
        self._tcp = sys.platform == "win32" if tcp is None else tcp  # tcp=True: Windows' way, anywhere
        self._server: asyncio.AbstractServer | None = None
        self._key = secrets.token_hex(32)
        self._written: Path | None = None
        self._lock: int | None = None

    async def start(self) -> None:
        """Listen. Raises AlreadyRunning when another kubetray holds the lock, and
        InstanceUnavailable when the folder, lock or socket cannot be used at all."""
        folder = _private_dir(self._folder)
        self._lock = _hold_lock(folder / "instance.lock")
        try:
            if self._tcp:
                await self._start_tcp(folder)
            else:
                path = folder / "instance.sock"
                # Holding the lock, any socket file there was left by an instance that crashed;
                # asyncio replaces it.
                self._server = await asyncio.start_unix_server(self._serve, path=str(path), limit=_LIMIT)
                self._written = path
        except OSError as exc:
            await self.close()
            raise InstanceUnavailable(f"kubetray could not open its instance socket in {folder} ({_why(exc)})"
                                      + _WITHOUT_LOCK) from None

    async def _start_tcp(self, folder: Path) -> None:
        self._server = await asyncio.start_server(self._serve, host="127.0.0.1", port=0, limit=_LIMIT)
        port = self._server.sockets[0].getsockname()[1]
        path = folder / "instance.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"port": port, "key": self._key}, handle)
        self._written = path

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await self._request(reader, writer)
            if request is None:
                answer: dict[str, Any] = {"error": "refused"}
            elif request.get("request") == "ping":
                answer = {"pid": os.getpid()}
            else:
                answer = await self._handler(request)
            writer.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
            await writer.drain()
        except (ValueError, ConnectionError, TimeoutError) as exc:
            log.debug("ignored a bad instance request: %s", type(exc).__name__)
        except Exception:
            log.exception("answering an instance request failed")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> dict[str, Any] | None:
        """The client's request; None when a TCP client could not prove it knows the key."""
        first = await _read_object(reader)
        if not self._tcp:
            return first
        client_nonce = first.get("hello")
        if not isinstance(client_nonce, str) or not 16 <= len(client_nonce) <= 128:
            return None
        server_nonce = secrets.token_hex(16)
        proof = _proof(self._key, b"server", client_nonce, server_nonce)
        writer.write(json.dumps({"nonce": server_nonce, "proof": proof}).encode() + b"\n")
        await writer.drain()
        request = await _read_object(reader)
        expected = _proof(self._key, b"client", client_nonce, server_nonce)
        if not hmac.compare_digest(str(request.pop("proof", "")), expected):
            return None
        return request

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


async def _read_object(reader: asyncio.StreamReader) -> dict[str, Any]:
    async with asyncio.timeout(_REQUEST_TIMEOUT):  # unlike wait_for, never loses a cancel
        line = await reader.readline()
    value = json.loads(line or b"{}")
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def _hold_lock(path: Path) -> int:
    """An exclusive lock held for the process's life; the OS drops it if the process dies."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise InstanceUnavailable(f"kubetray could not open its lock file {path} ({_why(exc)})" + _WITHOUT_LOCK) from None
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        # flock says EWOULDBLOCK, msvcrt EACCES or EDEADLOCK, when another process holds the lock.
        held = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK))
        if exc.errno in held:
            raise AlreadyRunning("Another kubetray is running for this user.") from None
        raise InstanceUnavailable(f"kubetray could not lock its lock file {path} ({_why(exc)})" + _WITHOUT_LOCK) from None
    return fd


def ask(request: Mapping[str, Any], timeout: float = 3.0, folder: Path | None = None,
        tcp: bool | None = None) -> dict[str, Any] | None:
    """Send one request to the running kubetray; None when none is running (or, over TCP, when
    what answers cannot prove it is kubetray). Blocking."""
    folder = folder or instance_dir()
    tcp = sys.platform == "win32" if tcp is None else tcp
    try:
        if tcp:
            info = json.loads((folder / "instance.json").read_text(encoding="utf-8"))
            key = str(info["key"])
            sock = socket.create_connection(("127.0.0.1", int(info["port"])), timeout=timeout)
        else:
            key = ""
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(str(folder / "instance.sock"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    with sock:
        try:
            lines = _Lines(sock)
            payload = dict(request)
            if tcp:
                client_nonce = secrets.token_hex(16)
                sock.sendall(json.dumps({"hello": client_nonce}).encode() + b"\n")
                challenge = json.loads(lines.next())
                server_nonce = str(challenge.get("nonce", ""))
                expected = _proof(key, b"server", client_nonce, server_nonce)
                if not server_nonce or not hmac.compare_digest(str(challenge.get("proof", "")), expected):
                    log.info("the program answering on kubetray's instance port could not prove it is kubetray; "
                             "kubetray does not talk to it")
                    return None
                payload["proof"] = _proof(key, b"client", client_nonce, server_nonce)
            sock.sendall(json.dumps(payload).encode() + b"\n")
            answer = json.loads(lines.next())
        except (OSError, ValueError, AttributeError):
            return None
    return answer if isinstance(answer, dict) else None


class _Lines:
    """Newline-ended messages from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def next(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                break
            self._buffer += chunk
            if len(self._buffer) > _LIMIT * 4:
                raise ValueError("answer too long")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line
