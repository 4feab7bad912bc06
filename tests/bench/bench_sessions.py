"""Head-of-line benchmark: does one slow reader stall the other connections of a tunnel?

    .venv/bin/python tests/bench/bench_sessions.py                 # 1 GiB slow download, 200 connections
    .venv/bin/python tests/bench/bench_sessions.py --quick         # 64 MiB, 100 connections (~1 min)

SPDY carries every connection of a tunnel in one session, and the kubelet's SPDY has no flow
control: a local reader that stops reading must neither stall the session's other connections
nor make kubetray buffer without bound. Per kubetray transport (`--transport`, where this build
has it; else its default), plus kubectl's two carriers for comparison, against the simulator
(HTTPS, bearer token; `--rtt MS` puts the delay proxy in front of its API):
  1. idle: `--connections` new connections one after another, `GET /` with `Connection: close`
     each: the p50 of an idle tunnel;
  2. client A starts `GET /bytes/SIZE` on the same local port and reads it at `--rate` MB/s;
     after `--settle` seconds, client B makes the same new connections again: its p50;
  3. the forwarder's RSS (VmRSS) is sampled throughout; growth = highest during 2 minus before 1.
Goals (issue 10): B's p50 within 2x of idle; RSS growth < 64 MiB. One more check, not in the
issue: B's p99 within 10x of idle (at least 100 ms), because a handful of connections stalled
behind the slow reader leave the p50 alone. Exits 0 on a MISS.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpload
from procs import Child, Children, run_bench
from setup_paths import (
    Sim,
    far_kubeconfig,
    kubetray_transports,
    start_delay_proxy,
    start_kubectl,
    start_kubetray,
    start_sim,
)

MIB = 1 << 20
RSS_GOAL_MIB = 64.0
RATIO_GOAL = 2.0


def _log(text: str) -> None:
    print(f"[sessions {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class RssWatch(threading.Thread):
    """The highest RSS of one process, sampled every 100 ms until stopped (a measurement, so a
    sampling loop is the point here)."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="sessions:rss", daemon=True)
        self.pid = pid
        self.peak = rss_bytes(pid)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except OSError:
                return


class SlowReader(threading.Thread):
    """Client A: one download read at `rate` bytes per second, until stopped or done."""

    def __init__(self, address: tuple[str, int], size: int, rate: float) -> None:
        super().__init__(name="sessions:slow-reader", daemon=True)
        self.address, self.size, self.rate = address, size, rate
        self.got = 0
        self.error: str | None = None
        self.stopped = threading.Event()
        self.started_reading = threading.Event()

    def run(self) -> None:
        try:
            conn = httpload.tcp_connect(self.address)
        except OSError as exc:
            self.error = str(exc)
            self.started_reading.set()
            return
        try:
            conn.sendall(f"GET /bytes/{self.size} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            start = time.perf_counter()
            while not self.stopped.is_set() and self.got < self.size:
                data = conn.recv(64 * 1024)
                if not data:
                    self.error = f"closed after {self.got} bytes"
                    return
                self.got += len(data)
                self.started_reading.set()
                ahead = self.got / self.rate - (time.perf_counter() - start)
                if ahead > 0:
                    self.stopped.wait(ahead)
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.started_reading.set()
            conn.close()


@dataclass
class Result:
    label: str
    idle_p50: float | None = None
    idle_p99: float | None = None
    busy_p50: float | None = None
    busy_p99: float | None = None
    busy_seconds: float | None = None  # client B's whole run: a few stalled connections show here
    rss_before: int = 0
    rss_peak: int = 0
    slow_got: int = 0
    error: str | None = None

    def cells(self) -> list[str]:
        if self.error is not None:
            return [self.label, f"FAILED: {self.error}", *["-"] * 7]
        ratio = self.busy_p50 / self.idle_p50 if self.busy_p50 and self.idle_p50 else None
        growth = (self.rss_peak - self.rss_before) / MIB
        return [self.label, f"{self.idle_p50:.2f}" if self.idle_p50 else "-",
                f"{self.busy_p50:.2f}" if self.busy_p50 else "-", f"{ratio:.2f}" if ratio else "-",
                f"{self.busy_p99:.0f}" if self.busy_p99 else "-",
                f"{self.busy_seconds:.1f}" if self.busy_seconds else "-",
                f"{self.rss_before / MIB:.0f}", f"{growth:.1f}", f"{self.slow_got / 1e6:.1f}"]

    def goals(self) -> list[str]:
        if self.error is not None or not self.busy_p50 or not self.idle_p50:
            return [f"MISS  {self.label}: no numbers ({self.error})"]
        ratio = self.busy_p50 / self.idle_p50
        growth = (self.rss_peak - self.rss_before) / MIB
        return [f"{'PASS' if ratio <= RATIO_GOAL else 'MISS'}  {self.label}: p50 beside a slow reader "
                f"{ratio:.2f}x idle (goal <= {RATIO_GOAL:.0f}x)",
                f"{'PASS' if growth < RSS_GOAL_MIB else 'MISS'}  {self.label}: RSS grew {growth:.1f} MiB "
                f"(goal < {RSS_GOAL_MIB:.0f} MiB)",
                # Beyond the goal: a few connections stuck behind the slow reader do not
                # move the p50, but they are what a user notices.
                f"{'PASS' if (self.busy_p99 or 0) <= 10 * max(self.idle_p99 or 0, 10) else 'MISS'}  "
                f"{self.label}: p99 beside a slow reader {self.busy_p99:.0f} ms, idle {self.idle_p99:.0f} ms "
                f"(extra check, not in the issue: <= 10x idle, at least 100 ms)"]


def measure(label: str, child: Child, address: tuple[str, int], size: int, connections: int,
            rate: float, settle: float) -> Result:
    result = Result(label)
    connect = lambda: httpload.tcp_connect(address)  # noqa: E731 - one line, used twice
    try:
        httpload.latency(connect, 3, False, time.perf_counter() + 60)  # warm: the session exists
        result.rss_before = rss_bytes(child.pid)
        _log(f"({label}) idle: {connections} new connections")
        idle = httpload.latency(connect, connections, False, time.perf_counter() + 30 + connections)
        result.idle_p50, result.idle_p99 = idle.p50_ms, idle.p99_ms
        watch = RssWatch(child.pid)
        watch.start()
        slow = SlowReader(address, size, rate)
        slow.start()
        try:
            if not slow.started_reading.wait(30) or slow.error:
                raise httpload.CheckFailed(f"the slow download did not start: {slow.error}")
            slow.stopped.wait(settle)  # let every buffer on the way fill up
            _log(f"({label}) beside a slow reader: {connections} new connections")
            began = time.perf_counter()
            busy = httpload.latency(connect, connections, False, time.perf_counter() + 60 + 2 * connections)
            result.busy_seconds = time.perf_counter() - began
            result.busy_p50, result.busy_p99 = busy.p50_ms, busy.p99_ms
        finally:
            slow.stopped.set()
            slow.join(10)
            watch.stopped.set()
            watch.join(5)
        result.rss_peak = max(watch.peak, result.rss_before)
        result.slow_got = slow.got
        if slow.error:
            result.error = f"the slow download broke: {slow.error}"
    except (httpload.CheckFailed, OSError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def run(args: argparse.Namespace) -> list[Result]:
    size, rate = args.size_mib * MIB, args.rate * 1e6
    results: list[Result] = []
    with Children() as children, tempfile.TemporaryDirectory(prefix="kubetray-sessions-") as folder:
        sim: Sim = start_sim(children, Path(folder), tls=True, token=secrets.token_urlsafe(24))
        kubeconfig = sim.kubeconfig
        if args.rtt > 0:
            _, port = start_delay_proxy(children, sim.api_port, args.rtt / 1000, "delay")
            kubeconfig = far_kubeconfig(sim, port, Path(folder) / "kubeconfig-far")
        transports = kubetray_transports()
        _log(f"simulator at {sim.url}; kubetray transports: {', '.join(transports) or 'no --transport flag'}")
        subjects: list[tuple[str, object]] = [(f"kubetray {t or 'default'}", t) for t in (transports or [None])]
        if not args.no_kubectl:
            subjects += [("kubectl WEBSOCKETS=true", True), ("kubectl WEBSOCKETS=false", False)]
        for label, what in subjects:
            try:
                if isinstance(what, bool):
                    started_kubectl = start_kubectl(children, kubeconfig, what, label.replace(" ", "-"))
                    child, address = started_kubectl.child, started_kubectl.address
                else:
                    assert what is None or isinstance(what, str)
                    name = label.replace(" ", "-")
                    started = start_kubetray(children, sim, kubeconfig, what, name, Path(folder) / name)
                    child, address = started.child, started.address
            except (RuntimeError, TimeoutError, EOFError) as exc:
                results.append(Result(label, error=f"did not start: {exc}"))
                continue
            try:
                results.append(measure(label, child, address, size, args.connections, rate, args.settle))
            finally:
                children.stop(child)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kubetray head-of-line benchmark (loopback, simulator)")
    parser.add_argument("--quick", action="store_true", help="64 MiB download, 100 connections")
    parser.add_argument("--size-mib", type=int, help="the slow download's size (default 1024; quick 64)")
    parser.add_argument("--connections", type=int, help="client B's new connections (default 200; quick 100)")
    parser.add_argument("--rate", type=float, default=1.0, help="the slow reader's MB/s (default 1)")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds the slow reader runs before client B starts (default 3)")
    parser.add_argument("--rtt", type=int, default=0, help="API round trip in ms (default 0)")
    parser.add_argument("--no-kubectl", action="store_true", help="skip kubectl's comparison rows")
    args = parser.parse_args(argv)
    args.size_mib = args.size_mib or (64 if args.quick else 1024)
    args.connections = args.connections or (100 if args.quick else 200)
    if args.size_mib < 1 or args.connections < 2 or args.rate <= 0 or args.rtt < 0:
        parser.error("--size-mib >= 1, --connections >= 2, --rate > 0, --rtt >= 0")

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    results = run(args)
    print(f"## Head-of-line benchmark: a {args.size_mib} MiB download read at {args.rate:g} MB/s beside "
          f"{args.connections} new connections, API round trip {args.rtt} ms, {time.strftime('%Y-%m-%d')}")
    print(f"Loopback, {os.cpu_count()} CPUs as the OS reports them, shared with whatever else runs.\n")
    header = ["path", "idle p50 ms", "p50 beside slow reader ms", "ratio", "p99 beside ms", "B's run s",
              "RSS before MiB",
              "RSS growth MiB", "slow reader got MB"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for result in results:
        print("| " + " | ".join(result.cells()) + " |")
    print("\nGoals (issue 10):")
    for result in results:
        for line in result.goals():
            print(f"- {line}")
    print(f"\n(run took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    run_bench(main)
