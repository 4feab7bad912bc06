"""The client side of every benchmark phase, on one already connected socket (standard library only).

Used by the bench itself (paths a and b) and by `stock_driver.py` (path c), so every path runs the
same client code: a minimal HTTP/1.1 exchange with the simulator's `http` backend, checked as it
goes (downloads byte for byte against the known pattern, uploads by the server's sha256).
"""

from __future__ import annotations

import hashlib
import json
import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

CHUNK = 256 * 1024  # upload chunk size; also the simulator's pattern block, so chunks chain
RECV_SIZE = 1024 * 1024
SOCKET_TIMEOUT = 30.0
# Byte i of the backend's stream is i % 256; one long run covers any offset plus a full read.
_PATTERN = bytes(range(256)) * (RECV_SIZE // 256 + 1)


class Conn(Protocol):
    """What a phase needs of a socket (a real one, or the stock client's socketpair wrapper)."""

    def sendall(self, data: bytes, /) -> None: ...
    def recv(self, n: int, /) -> bytes: ...
    def close(self) -> None: ...


class CheckFailed(Exception):
    """The answer was wrong: the row shows FAILED with this text instead of a number."""


class PhaseTimeout(CheckFailed):
    """The phase ran past its deadline."""


@dataclass(frozen=True)
class Transfer:
    nbytes: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"nbytes": self.nbytes, "seconds": self.seconds}


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "count": self.count}


def upload_digest(size: int) -> str:
    """sha256 of the body `upload` sends (computed once, outside any timing)."""
    block = _PATTERN[:CHUNK]
    digest = hashlib.sha256()
    for _ in range(size // CHUNK):
        digest.update(block)
    digest.update(block[: size % CHUNK])
    return digest.hexdigest()


def _read_head(conn: Conn, deadline: float) -> tuple[int, bytes]:
    """Read a response head; return (Content-Length, body bytes already received)."""
    data = b""
    while b"\r\n\r\n" not in data:
        _check_deadline(deadline)
        chunk = conn.recv(65536)
        if not chunk:
            raise CheckFailed(f"connection closed before a response head ({len(data)} bytes came)")
        data += chunk
        if len(data) > 65536:
            raise CheckFailed("response head larger than 64 KiB")
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or status[1] != b"200":
        raise CheckFailed(f"unexpected status line {lines[0][:80]!r}")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip()), rest
    raise CheckFailed("response without Content-Length")


def _read_body(conn: Conn, length: int, rest: bytes, deadline: float) -> bytes:
    body = rest
    while len(body) < length:
        _check_deadline(deadline)
        chunk = conn.recv(length - len(body))
        if not chunk:
            raise CheckFailed(f"connection closed after {len(body)} of {length} body bytes")
        body += chunk
    return body


def _check_deadline(deadline: float) -> None:
    if time.perf_counter() > deadline:
        raise PhaseTimeout("ran past its deadline")


def download(conn: Conn, size: int, deadline: float) -> Transfer:
    """GET /bytes/size; every byte compared with the pattern."""
    start = time.perf_counter()
    conn.sendall(f"GET /bytes/{size} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    length, first = _read_head(conn, deadline)
    if length != size:
        raise CheckFailed(f"Content-Length {length}, expected {size}")
    offset = 0
    data = first
    while True:
        if data:
            if offset + len(data) > size:
                raise CheckFailed(f"more than {size} body bytes")
            at = offset % 256
            if data != _PATTERN[at : at + len(data)]:
                raise CheckFailed(f"pattern mismatch in bytes {offset}..{offset + len(data)}")
            offset += len(data)
        if offset == size:
            break
        _check_deadline(deadline)
        data = conn.recv(min(RECV_SIZE, size - offset))
        if not data:
            raise CheckFailed(f"connection closed after {offset} of {size} bytes")
    return Transfer(size, time.perf_counter() - start)


def upload(conn: Conn, size: int, digest: str, deadline: float) -> Transfer:
    """POST /upload with Content-Length size in CHUNK pieces; the server's sha256 must match."""
    start = time.perf_counter()
    conn.sendall(
        f"POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {size}\r\n\r\n".encode()
    )
    block = _PATTERN[:CHUNK]
    sent = 0
    while sent < size:
        _check_deadline(deadline)
        piece = block if size - sent >= CHUNK else block[: size - sent]
        conn.sendall(piece)
        sent += len(piece)
    length, rest = _read_head(conn, deadline)
    answer = json.loads(_read_body(conn, length, rest, deadline))
    if answer.get("bytes") != size:
        raise CheckFailed(f"server counted {answer.get('bytes')} bytes, {size} were sent")
    if answer.get("sha256") != digest:
        raise CheckFailed(f"server sha256 {str(answer.get('sha256'))[:12]}..., sent {digest[:12]}...")
    return Transfer(size, time.perf_counter() - start)


def small_get(conn: Conn, deadline: float, close: bool = False) -> bytes:
    """GET / once (with `Connection: close` when `close`); the body must name a pod. Returns it."""
    conn.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n" + (b"Connection: close\r\n" if close else b"")
                 + b"\r\n")
    length, rest = _read_head(conn, deadline)
    body = _read_body(conn, length, rest, deadline)
    if not body.startswith(b"pod="):
        raise CheckFailed(f"GET / answered {body[:40]!r}")
    return body


def latency(connect: Callable[[], Conn], count: int, keepalive: bool, deadline: float) -> Latency:
    """`count` GET / requests: each on a new connection (connect time included), or all on one."""
    samples: list[float] = []
    shared = connect() if keepalive else None
    try:
        for _ in range(count):
            start = time.perf_counter()
            conn = shared if shared is not None else connect()
            try:
                small_get(conn, deadline, close=shared is None)
            finally:
                if shared is None:
                    conn.close()
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        if shared is not None:
            shared.close()
    return summarize(samples)


def burst(connect: Callable[[], Conn], count: int, deadline: float) -> float:
    """`count` new connections at once, one `GET /` with `Connection: close` each, from as many
    threads released together: milliseconds until the last answer came. CheckFailed if any failed."""
    go = threading.Event()
    done: list[float] = []
    errors: list[str] = []

    def one() -> None:
        go.wait()
        try:
            conn = connect()
            try:
                small_get(conn, deadline, close=True)
            finally:
                conn.close()
            done.append(time.perf_counter())
        except (CheckFailed, OSError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one, name=f"bench:burst:{i}", daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join(max(0.1, deadline - time.perf_counter()))
    if errors:
        raise CheckFailed(f"{len(errors)} of {count} failed, e.g. {errors[0]}")
    if len(done) < count:
        raise PhaseTimeout(f"{count - len(done)} of {count} still unanswered at the deadline")
    return (max(done) - start) * 1000


def summarize(samples: list[float]) -> Latency:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return Latency(statistics.median(samples), cuts[98], len(samples))


def tcp_connect(address: tuple[str, int]) -> socket.socket:
    """A loopback TCP connection with the phase's socket timeout and Nagle off."""
    sock = socket.create_connection(address, timeout=SOCKET_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
