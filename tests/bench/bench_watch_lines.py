"""How the watch client copes with long lines and many events: CPU and peak memory.

    .venv/bin/python tests/bench/bench_watch_lines.py

A server on 127.0.0.1 streams a chunked watch body to HttpStream.lines() (the code the informer
uses): one line of 1, 8 and 15 MiB (under the 16 MiB cap), an endless line that the cap stops,
and 100,000 small events. Before issue 9 the splitting was quadratic (8, 16, 32 MiB without a
newline cost 1.2, 4.2, 19 s of CPU); it must now grow linearly. CPU is this process's (server and
client share it); peak is tracemalloc's, which slows both, so the times are upper bounds.
Exits 0 whatever it measures: a measurement, not a test.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import Callable

from trayapp.engine.kube.api import MAX_WATCH_LINE_BYTES
from trayapp.engine.kube.httpclient import HttpStream
from trayapp.errors import ResponseTooLarge

MiB = 1024 * 1024
BLOCK = b"x" * 65536


def one_line(size: int) -> Callable[[], list[bytes]]:
    return lambda: [BLOCK] * (size // len(BLOCK)) + [b"\n"]


def many_events(count: int) -> Callable[[], list[bytes]]:
    event = b'{"type":"MODIFIED","object":{"metadata":{"name":"p","resourceVersion":"1"}}}\n'
    return lambda: [event * 500] * (count // 500)


async def run(body: Callable[[], list[bytes]]) -> tuple[int, str]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for part in body():
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client stopped at the cap and went away
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    stream = HttpStream(reader, writer, "bench")
    await stream.send("GET", "/", [("Host", "bench")], timeout=30)
    count, outcome = 0, "ok"
    try:
        async for _ in stream.lines(MAX_WATCH_LINE_BYTES):
            count += 1
    except ResponseTooLarge:
        outcome = "refused at the cap"
    stream.close()
    server.close()
    return count, outcome


def measure(name: str, body: Callable[[], list[bytes]]) -> None:
    cpu = time.process_time()
    count, outcome = asyncio.run(run(body))
    cpu = time.process_time() - cpu
    tracemalloc.start()
    asyncio.run(run(body))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"| {name:<28} | {count:>7} | {cpu:>6.2f} | {peak / MiB:>8.1f} | {outcome} |")


def main() -> None:
    print(f"cap {MAX_WATCH_LINE_BYTES / MiB:.0f} MiB per line")
    print("| body                         |   lines |  CPU s | peak MiB | outcome |")
    print("|---|---|---|---|---|")
    for size in (1, 8, 15):
        measure(f"one {size} MiB line", one_line(size * MiB))
    measure("64 MiB without a newline", lambda: [BLOCK] * (64 * MiB // len(BLOCK)))
    measure("100,000 small events", many_events(100_000))


if __name__ == "__main__":
    main()
