"""A small asyncio HTTP/1.1 client for the API server's list and watch calls, on h11.

One request per connection: lists are short and watches hold their connection for minutes, so
pooling would buy little. The connection itself (proxy, keepalive, TLS) comes from connect.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import h11

from trayapp.engine.aio import deadline
from trayapp.errors import ApiUnreachable, ResponseTooLarge

_READ_SIZE = 65536
log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]


class HttpStream:
    """One request and its streamed response body, every read under a deadline and a size cap.

    A dead path (a sleeping laptop, a dropped VPN) leaves a socket that neither sends nor fails;
    only a deadline tells it from a quiet server, so no read here waits without one. What the
    server sends is never buffered beyond the cap the caller gives: a hostile or broken server
    costs a bounded amount of memory and linear time.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: str = "") -> None:
        self._reader = reader
        self._writer = writer
        self._conn = h11.Connection(h11.CLIENT)
        self._who = f"the API server {server}" if server else "the API server"
        self._server = self._who[0].upper() + self._who[1:]
        self._content_length: int | None = None
        self._eof = False
        # The loop time by which the current read must return, and what to say when it does not.
        self._until: float | None = None
        self._late = ""

    def _expect_by(self, seconds: float | None, message: str) -> None:
        if seconds is None:
            self._until = None
            return
        self._until = asyncio.get_running_loop().time() + seconds
        self._late = message

    async def send(
        self, method: str, target: str, headers: list[tuple[str, str]], timeout: float | None = None
    ) -> Response:
        """Send the request; the response's head must arrive within `timeout` seconds."""
        if timeout is not None:
            self._expect_by(timeout, f"{self._server} did not answer within {timeout:g} s.")
        try:
            self._writer.write(self._conn.send(h11.Request(method=method, target=target, headers=headers)))
            self._writer.write(self._conn.send(h11.EndOfMessage()))
            await self._under_deadline(self._writer.drain())
        except (OSError, ConnectionError) as exc:
            raise self._broken(exc) from exc
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Response):
                response = Response(
                    event.status_code,
                    {k.decode().lower(): v.decode("latin-1") for k, v in event.headers},
                )
                length = response.headers.get("content-length", "")
                self._content_length = int(length) if length.isdigit() else None  # h11 checked it
                return response
            if isinstance(event, h11.InformationalResponse):
                continue
            raise ApiUnreachable(f"{self._server} closed the connection before answering.")

    async def _under_deadline(self, awaitable: Awaitable[_T]) -> _T:
        if self._until is None:
            return await awaitable
        remaining = self._until - asyncio.get_running_loop().time()
        try:
            async with deadline(max(remaining, 0.0)):
                return await awaitable
        except TimeoutError as exc:
            if getattr(exc, "errno", None) is not None:  # the socket's own ETIMEDOUT (keepalive gave up)
                raise
            raise ApiUnreachable(self._late) from None

    async def _next_event(self) -> Any:
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                if self._eof:
                    raise ApiUnreachable(f"{self._server} closed the connection in the middle of a response.") from exc
                log.debug("malformed HTTP from %s: %s", self._who, exc)
                raise ApiUnreachable(f"{self._server} sent a malformed HTTP response; kubetray closed that connection.") from exc
            if event is h11.NEED_DATA:
                try:
                    data = await self._under_deadline(self._reader.read(_READ_SIZE))
                except (OSError, ConnectionError) as exc:
                    raise self._broken(exc) from exc
                self._eof = not data
                self._conn.receive_data(data)
                continue
            return event

    def _broken(self, exc: BaseException) -> ApiUnreachable:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        return ApiUnreachable(f"The connection to {self._who} broke ({reason}).")

    async def body_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; h11 hands chunk data over as it comes, whatever size a chunk claims."""
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return

    async def body(
        self, limit: int, timeout: float | None = None, idle: float | None = None, *, until: float | None = None
    ) -> bytearray:
        """The whole body, refused past `limit` bytes; within `timeout` s, no read waiting over `idle` s.

        `until` (loop time) ends it sooner when the body is one part of a longer `timeout` (a page of a list).
        """
        declared = self._content_length
        if declared is not None and declared > limit:
            raise ResponseTooLarge(f"{self._server} announced {declared:,} bytes, more than kubetray accepts ({limit:,}).")
        loop = asyncio.get_running_loop()
        final = until if until is not None else None if timeout is None else loop.time() + timeout
        total = f"{timeout:g}" if timeout is not None else f"{(final or 0) - loop.time():.0f}"
        received = bytearray()
        while True:
            now = loop.time()
            if idle is not None and (final is None or now + idle < final):
                self._expect_by(idle, f"{self._server} stopped sending for {idle:g} s in the middle of a response.")
            elif final is not None:
                self._expect_by(final - now, f"{self._server} did not send the whole response within {total} s.")
            event = await self._next_event()
            if isinstance(event, h11.Data):
                if len(received) + len(event.data) > limit:
                    raise ResponseTooLarge(f"{self._server} sent a response larger than kubetray accepts ({limit:,} bytes).")
                received += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return received

    async def lines(
        self, max_line: int, silence: float | Callable[[], float] | None = None
    ) -> AsyncIterator[bytes]:
        """The body split into lines, as a watch streams one JSON event per line.

        Linear time: each byte is scanned once and copied at most twice (into a piece, then into
        its line). A line longer than `max_line` raises ResponseTooLarge before it is joined. With
        `silence`, a line must end within that many seconds of the previous one (or of the start):
        a stream that goes quiet for longer is taken for dead and raises ApiUnreachable. A callable
        `silence` is asked again after each line (the limit follows the server's bookmark pace).
        """
        def expect() -> None:
            limit = silence() if callable(silence) else silence
            # What happened, not what the caller does next: the informer retries, a tunnel keeps its port.
            late = (f"{self._server} sent nothing on a watch for {limit:g} s, so kubetray took the connection "
                    "for dead." if limit is not None else "")
            self._expect_by(limit, late)

        expect()
        pieces: list[bytes] = []
        held = 0
        async for chunk in self.body_chunks():
            start = 0
            while (newline := chunk.find(b"\n", start)) >= 0:
                if held + newline - start > max_line:
                    raise self._too_long(max_line)
                line = b"".join([*pieces, chunk[start:newline]]) if pieces else chunk[start:newline]
                pieces, held, start = [], 0, newline + 1
                if line.strip():
                    yield line
                    expect()
            if start < len(chunk):
                held += len(chunk) - start
                if held > max_line:
                    raise self._too_long(max_line)
                pieces.append(chunk[start:] if start else chunk)
        if held and (line := b"".join(pieces)).strip():
            yield line

    def _too_long(self, max_line: int) -> ResponseTooLarge:
        return ResponseTooLarge(
            f"{self._server} sent a watch line longer than {max_line:,} bytes, more than any real object needs, "
            "so kubetray closed that watch."
        )

    def close(self) -> None:
        self._writer.close()


def status_message(body: bytes | bytearray, fallback: str) -> str:
    """The `message` of a Kubernetes Status body, or the fallback."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return fallback
    if isinstance(parsed, dict) and parsed.get("message"):
        return str(parsed["message"])
    return fallback
