"""HttpStream over real sockets: lines split in linear time under a cap, bodies under a cap, and
every read under a deadline, against a server that sends exactly the bytes each test needs."""

from __future__ import annotations

import asyncio
import socket
import struct
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from trayapp.engine.kube.httpclient import HttpStream
from trayapp.errors import ApiUnreachable, ResponseTooLarge

MiB = 1024 * 1024
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[HttpStream]]]:
    """Start a server with this handler and return a stream that sent it a GET."""
    servers: list[asyncio.Server] = []
    streams: list[HttpStream] = []

    async def start(handler: Handler) -> HttpStream:
        async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            try:
                await handler(reader, writer)
                while await reader.read(65536):  # hold the connection until the client goes
                    pass
            except ConnectionError:
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
        servers.append(server)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        stream = HttpStream(reader, writer, "http://test")
        streams.append(stream)
        return stream

    yield start
    for stream in streams:
        stream.close()
    for server in servers:
        server.close()


def rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dead middlebox or a rebooted server does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def chunked(*chunks: bytes) -> bytes:
    return b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks)


HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def writes(*parts: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for part in parts:
            writer.write(part)
            await writer.drain()
    return handler


async def collect(stream: HttpStream, max_line: int = MiB, silence: float | None = None) -> list[bytes]:
    await stream.send("GET", "/", [("Host", "x")], timeout=10)
    return [line async for line in stream.lines(max_line, silence)]


async def test_lines_split_across_chunks_skip_blank_lines_and_keep_a_last_unterminated_line(serve) -> None:
    stream = await serve(writes(HEAD + chunked(b'{"a":', b"1}\n\n{", b'"b":2}\n{"c"', b":3}\n  \n", b"tail"),
                                b"0\r\n\r\n"))
    assert await collect(stream) == [b'{"a":1}', b'{"b":2}', b'{"c":3}', b"tail"]


async def test_a_line_may_be_exactly_the_cap_but_not_longer(serve) -> None:
    stream = await serve(writes(HEAD + chunked(b"a" * 10 + b"\n", b"b" * 6, b"c" * 5 + b"\n"), b"0\r\n\r\n"))
    lines = stream.lines(10)
    await stream.send("GET", "/", [("Host", "x")], timeout=10)
    assert await anext(lines) == b"a" * 10
    with pytest.raises(ResponseTooLarge, match="longer than 10 bytes"):
        await anext(lines)


async def test_an_endless_line_stops_at_the_cap_with_bounded_memory(serve) -> None:
    cap = 16 * MiB

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD)
        block = b"x" * 65536
        for _ in range(64 * MiB // len(block)):  # 64 MiB without a newline
            writer.write(chunked(block))
            await writer.drain()

    stream = await serve(endless)
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge):
            await collect(stream, max_line=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The stated bound: an endless line costs at most twice the cap (the pieces and one join).
    assert peak < 2 * cap, f"peak {peak / MiB:.1f} MiB"


async def test_a_chunk_that_promises_a_terabyte_allocates_nothing_big(serve) -> None:
    async def promise(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD + f"{1 << 40:x}\r\n".encode() + b'{"a":1}\n' + b"y" * 1000)
        await writer.drain()

    stream = await serve(promise)
    tracemalloc.start()
    try:
        await stream.send("GET", "/", [("Host", "x")], timeout=10)
        lines = stream.lines(MiB, silence=0.5)
        assert await anext(lines) == b'{"a":1}'
        with pytest.raises(ApiUnreachable, match="sent nothing on a watch for 0.5 s"):
            await anext(lines)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MiB, f"peak {peak / MiB:.1f} MiB"


async def test_body_refuses_a_content_length_over_the_cap_before_reading_it(serve) -> None:
    stream = await serve(writes(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n{" % (1 << 40)))
    await stream.send("GET", "/", [("Host", "x")], timeout=10)
    with pytest.raises(ResponseTooLarge, match="announced 1,099,511,627,776 bytes"):
        await stream.body(MiB, timeout=30)


async def test_body_refuses_a_chunked_body_that_grows_past_the_cap(serve) -> None:
    stream = await serve(writes(HEAD + chunked(b"z" * 600_000, b"z" * 600_000)))
    await stream.send("GET", "/", [("Host", "x")], timeout=10)
    with pytest.raises(ResponseTooLarge, match="larger than kubetray accepts"):
        await stream.body(MiB, timeout=30)


async def test_a_head_that_never_comes_times_out_naming_the_server(serve) -> None:
    stream = await serve(writes())
    with pytest.raises(ApiUnreachable, match=r"The API server http://test did not answer within 0.3 s"):
        await stream.send("GET", "/", [("Host", "x")], timeout=0.3)


async def test_a_body_that_stops_hits_the_idle_deadline(serve) -> None:
    stream = await serve(writes(HEAD + chunked(b"part")))
    await stream.send("GET", "/", [("Host", "x")], timeout=10)
    with pytest.raises(ApiUnreachable, match="stopped sending for 0.3 s"):
        await stream.body(MiB, timeout=30, idle=0.3)


async def test_a_body_sent_a_byte_at_a_time_hits_the_total_deadline(serve) -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD)
        for _ in range(10_000):
            writer.write(chunked(b"x"))
            await writer.drain()
            await asyncio.sleep(0.05)

    stream = await serve(drip)
    await stream.send("GET", "/", [("Host", "x")], timeout=10)
    with pytest.raises(ApiUnreachable, match="did not send the whole response within 1 s"):
        await stream.body(MiB, timeout=1, idle=0.5)


async def test_a_connection_closed_mid_body_is_unreachable_not_a_protocol_error(serve) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD + chunked(b'{"a":1}\n{"b"'))
        await writer.drain()
        writer.close()

    stream = await serve(cut)
    with pytest.raises(ApiUnreachable, match="closed the connection in the middle of a response"):
        await collect(stream)


async def test_a_reset_is_unreachable(serve) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD + chunked(b'{"a":1}\n'))
        await writer.drain()
        rst(writer)

    stream = await serve(reset)
    with pytest.raises(ApiUnreachable, match="connection to the API server http://test broke"):
        await stream.send("GET", "/", [("Host", "x")], timeout=10)
        async for _ in stream.lines(MiB):
            await asyncio.sleep(0.2)  # let the reset arrive before the next read
