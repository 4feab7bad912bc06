"""A delay line in front of a TCP listener: makes a server on 127.0.0.1 look far away.

Every byte between a client and the upstream server arrives half the round trip late, in each
direction, in order; nothing else changes (no loss, no bandwidth limit beyond a bounded amount in
flight). Two more things a far server costs are kept, because a client that opens connections
pays them on a real network: the TCP handshake is one round trip (bytes a client sends right
after `connect` returns start their way only one round trip after it connected), and a close or a
half-close travels like data (half a round trip).

TLS passes through untouched: the delay line sees only the encrypted bytes, so the upstream still
terminates TLS and checks tokens. The simulator puts one in front of its API listener when it has
a `latency` (SimCluster(latency=...), `serve --latency`); the forwarding benchmark runs one in its
own process with `python -m trayapp.sim.latency`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal
import sys
from dataclasses import dataclass

# Bytes one direction may hold in flight before it stops reading its source, like a TCP window.
# At 40 ms one way 16 MiB still lets ~400 MB/s through.
IN_FLIGHT_LIMIT = 16 << 20

_EOF = b""  # marker in a direction's queue: the source half-closed


class _Side(asyncio.Protocol):
    """One TCP connection of a pair: the accepted client, or the connection to the upstream."""

    def __init__(self, pair: _Pair) -> None:
        self.pair = pair
        self.transport: asyncio.Transport | None = None
        self.outgoing: _Direction | None = None  # bytes this side's peer sent, on their way here
        self.incoming: _Direction | None = None  # bytes read from this side, on their way over
        self.write_paused = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.outgoing is not None:
            self.outgoing.release()  # what fell due while the upstream was still connecting

    def data_received(self, data: bytes) -> None:
        assert self.incoming is not None
        self.incoming.push(data)

    def eof_received(self) -> bool:
        assert self.incoming is not None
        self.incoming.push(_EOF)
        return True  # keep the other direction open: a half-close must travel like data

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.outgoing is not None:
            self.outgoing.update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.outgoing is not None:
            self.outgoing.update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pair.side_lost(self)


class _Direction:
    """Chunks from one side to the other, each written `delay` seconds after it was read. One
    timer per direction (not one per chunk) keeps the order even when two chunks fall due at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, source: _Side, sink: _Side,
                 not_before: float) -> None:
        self._loop = loop
        self._delay = delay
        self._source = source
        self._sink = sink
        self._not_before = not_before  # the handshake: nothing starts its way before this
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self._queued = 0
        self._timer: asyncio.TimerHandle | None = None
        self._reading = True
        self.done = False  # the EOF went through, or the sink is gone

    def push(self, data: bytes) -> None:
        if self.done:
            return
        due = max(self._loop.time(), self._not_before) + self._delay
        self._queue.append((due, data))
        self._queued += len(data)
        self.update_reading()
        if self._timer is None and self._sink.transport is not None:
            self._timer = self._loop.call_at(due, self.release)

    def update_reading(self) -> None:
        want = self._queued < IN_FLIGHT_LIMIT and not self._sink.write_paused
        transport = self._source.transport
        if want == self._reading or transport is None or transport.is_closing():
            return
        self._reading = want
        if want:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def release(self) -> None:
        """Write every chunk that is due, then wait for the next one."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        sink = self._sink.transport
        if sink is None:
            return  # still connecting: connection_made releases
        now = self._loop.time()
        while self._queue and self._queue[0][0] <= now:
            _, data = self._queue.popleft()
            self._queued -= len(data)
            if sink.is_closing():
                continue
            if data:
                sink.write(data)
            else:
                self.done = True
                if sink.can_write_eof():
                    sink.write_eof()
                self._sink.pair.maybe_close()
        if self._queue:
            self._timer = self._loop.call_at(self._queue[0][0], self.release)
        self.update_reading()

    def last_due(self) -> float:
        """When the last queued chunk falls due (now if none): a close travels behind the data."""
        return self._queue[-1][0] if self._queue else self._loop.time()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self._queued = 0
        self.done = True


class _Pair:
    """A client connection and its upstream connection, joined by two directions."""

    def __init__(self, line: DelayLine) -> None:
        self.line = line
        self.client = _Side(self)
        self.upstream = _Side(self)
        self._closing = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        one_way = self.line.rtt / 2
        handshake_done = loop.time() + self.line.rtt
        up = _Direction(loop, one_way, self.client, self.upstream, handshake_done)
        down = _Direction(loop, one_way, self.upstream, self.client, 0.0)
        self.client.incoming = self.upstream.outgoing = up
        self.upstream.incoming = self.client.outgoing = down

    def side_lost(self, side: _Side) -> None:
        """One connection ended: the other one ends once what was already on its way arrived."""
        other = self.upstream if side is self.client else self.client
        toward_other = side.incoming
        assert toward_other is not None and side.outgoing is not None
        side.outgoing.cancel()  # nobody left to deliver it to
        loop = asyncio.get_running_loop()
        # The close itself travels half a round trip, behind whatever is still on its way.
        when = max(toward_other.last_due(), loop.time() + self.line.rtt / 2)
        loop.call_at(when + 1e-6, self._close_side, other)
        if other.closed or other.transport is None:
            self.line.pairs.discard(self)

    def maybe_close(self) -> None:
        up, down = self.client.incoming, self.upstream.incoming
        if up is not None and down is not None and up.done and down.done:
            self.close()

    def _close_side(self, side: _Side) -> None:
        if side.transport is not None and not side.transport.is_closing():
            side.transport.close()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        for side in (self.client, self.upstream):
            self._close_side(side)

    def abort(self) -> None:
        for side in (self.client, self.upstream):
            for direction in (side.incoming, side.outgoing):
                if direction is not None:
                    direction.cancel()
            if side.transport is not None:
                side.transport.abort()


class DelayLine:
    """Listens on `host:port` and joins each connection to `upstream` through the delay."""

    def __init__(self, upstream: tuple[str, int], rtt: float, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        if rtt < 0:
            raise ValueError("a round trip cannot be negative")
        self.upstream = upstream
        self.rtt = rtt
        self.host = host
        self.port = port
        self.pairs: set[_Pair] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reopen: asyncio.TimerHandle | None = None

    async def start(self) -> DelayLine:
        loop = asyncio.get_running_loop()
        # reuse_address: after `drop` the same port is bound again while old sockets sit in TIME_WAIT.
        self._server = await loop.create_server(self._accept, self.host, self.port, backlog=4096,
                                                reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def drop(self, down_for: float = 0.0) -> None:
        """Cut every connection at once; with `down_for` > 0 also refuse new ones that long (as
        the API server behind does when the simulator restarts it)."""
        if down_for > 0 and self._server is not None:
            self._server.close()
            self._server = None
            loop = asyncio.get_running_loop()

            def reopen() -> None:
                task = loop.create_task(self.start(), name="sim:latency:reopen")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

            self._reopen = loop.call_later(down_for, reopen)
        for pair in list(self.pairs):
            pair.abort()
        await asyncio.sleep(0)  # one turn, so connection_lost callbacks run before the caller goes on

    def _accept(self) -> _Side:
        pair = _Pair(self)
        self.pairs.add(pair)
        pair.start(asyncio.get_running_loop())
        task = asyncio.get_running_loop().create_task(self._connect(pair), name="sim:latency:connect")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return pair.client

    async def _connect(self, pair: _Pair) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: pair.upstream, *self.upstream)
        except OSError:
            pair.abort()  # the client sees a reset, as it would from a refused far connection
            self.pairs.discard(pair)
            return
        if pair.client.closed:
            pair.side_lost(pair.client)  # it left while we connected: deliver what it sent, then close

    async def stop(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
        if self._server is not None:
            self._server.close()
            self._server = None
        for pair in list(self.pairs):
            pair.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass(frozen=True)
class _Args:
    upstream: tuple[str, int]
    rtt: float
    port: int


def _parse(argv: list[str] | None) -> _Args:
    parser = argparse.ArgumentParser(prog="python -m trayapp.sim.latency",
                                     description="make a TCP server on this machine look far away")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the real server")
    parser.add_argument("--rtt", type=float, required=True, help="round trip to add, in seconds")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free one)")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    if not host or not port.isdigit():
        parser.error("--upstream takes HOST:PORT")
    if args.rtt < 0:
        parser.error("--rtt cannot be negative")
    return _Args((host, int(port)), args.rtt, args.port)


async def _serve(args: _Args) -> None:
    line = await DelayLine(args.upstream, args.rtt, port=args.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening 127.0.0.1:{line.port}", flush=True)
    try:
        await stop.wait()
    finally:
        await line.stop()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_serve(_parse(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
