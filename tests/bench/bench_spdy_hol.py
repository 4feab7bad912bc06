"""Head-of-line blocking on kubetray's SPDY sessions, measured at the dialer (issue 10's test):
one client downloads a large body reading only 1 MB/s while another makes N new connections
(`GET /`, `Connection: close`) to the same pod. Prints the new connections' p50/p99 on an idle
session and beside the slow download, and how much this process's RSS grew.

    .venv/bin/python tests/bench/bench_spdy_hol.py [--connections 200] [--rate-mb 1] [--carrier spdy|spdy-ws]

The simulator runs in its own process, so RSS is the client's. Goals (issue 10): p50 beside the
download within 2x of the idle p50, RSS growth under 64 MiB. It prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trayapp.engine.aio import deadline
from trayapp.engine.forward.spdydial import SpdyDialer
from trayapp.engine.kube import Credentials, KubeApi

SCENARIO = "pods:\n  - name: bench\n    ports: [{containerPort: 8080, kind: http}]\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one_request(dialer: SpdyDialer) -> float:
    start = time.perf_counter()
    conn = await dialer.open("default", "bench", 8080, 10)
    try:
        await conn.send(REQUEST)
        while await conn.receive():
            pass
    finally:
        await conn.close()
    return time.perf_counter() - start


async def requests(dialer: SpdyDialer, count: int) -> list[float]:
    return [await one_request(dialer) for _ in range(count)]


async def slow_download(dialer: SpdyDialer, rate: float, stop: asyncio.Event) -> int:
    conn = await dialer.open("default", "bench", 8080, 10)
    await conn.send(f"GET /bytes/{1 << 30} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
    got, start = 0, time.perf_counter()
    while not stop.is_set():
        chunk = await conn.receive()
        if not chunk:
            break
        got += len(chunk)
        ahead = start + got / rate - time.perf_counter()
        if ahead > 0:
            with contextlib.suppress(TimeoutError):
                async with deadline(ahead):
                    await stop.wait()
    await conn.close()
    return got


def summary(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{name:<28} p50 {1000 * statistics.median(ordered):7.2f} ms   p99 {1000 * p99:7.2f} ms"


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        scenario, kubeconfig = Path(tmp) / "scenario.yaml", Path(tmp) / "kubeconfig"
        scenario.write_text(SCENARIO)
        sim = subprocess.Popen([sys.executable, "-m", "trayapp.sim", "serve", "--scenario", str(scenario),
                                "--kubeconfig", str(kubeconfig)], stdout=subprocess.PIPE, text=True)
        try:
            assert sim.stdout is not None
            sim.stdout.readline()
            sim.stdout.readline()
            credentials = Credentials([kubeconfig], None)
            dialer = SpdyDialer(KubeApi(credentials.load(), credentials), over_websocket=args.carrier == "spdy-ws")
            await requests(dialer, 10)  # the session is up, the code warm
            idle = await requests(dialer, args.connections)
            before = rss_mib()
            stop = asyncio.Event()
            download = asyncio.create_task(slow_download(dialer, args.rate_mb * 1e6, stop))
            await asyncio.sleep(2)  # a measurement's settle time: the download's session fills and stalls
            busy = await requests(dialer, args.connections)
            grown = rss_mib() - before
            during = len(dialer.sessions("default", "bench"))
            stop.set()
            got = await download
            await dialer.aclose()
            credentials.close()
        finally:
            sim.terminate()
            sim.wait(10)
    print(f"carrier {args.carrier}, {args.connections} new connections each, download read at {args.rate_mb} MB/s")
    print(summary("idle session", idle))
    print(summary("beside the slow download", busy))
    print(f"ratio of p50s: {statistics.median(busy) / statistics.median(idle):.2f} (goal <= 2)")
    print(f"RSS growth during the busy run: {grown:.1f} MiB (goal < 64); downloaded {got / 1e6:.1f} MB; "
          f"sessions to the pod during the busy run: {during}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--rate-mb", type=float, default=1.0)
    parser.add_argument("--carrier", choices=["spdy", "spdy-ws"], default="spdy")
    asyncio.run(main(parser.parse_args()))
