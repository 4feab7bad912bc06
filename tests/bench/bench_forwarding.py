"""Forwarding benchmark: direct TCP vs kubetray vs the kubernetes client's stock portforward vs kubectl.

    /work/venv/bin/python tests/bench/bench_forwarding.py [--size-mib 256] [--requests 1000]

(any venv with the project installed: `.venv/bin/python tests/bench/bench_forwarding.py`).
One run, loopback only, against `python -m trayapp.sim serve` in its own process:
  (a) direct TCP to the pod's backend listener inside the simulator (no forwarding),
  (b) `kubetray --headless --json` as a subprocess, through its local port,
  (c) `kubernetes.stream.portforward` + `pf.socket(8080)` in its own driver process,
  (d) `kubectl port-forward`, tried for a few seconds (the simulator speaks only v4.channel.k8s.io).
Prints a Markdown table and the goal checks; exits 0 on a MISS (a measurement, not a test), 1 if
the bench itself could not run. See tests/bench/README.md for the columns.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import httpload
from kubectl_probe import probe_kubectl
from procs import Child, Children, cpu_seconds
from report import GIB, LatencyResult, Row, TransferResult, goals, notes, table
from setup_paths import DEPLOYMENT, POD_PORT, REPO, Sim, StockDriver, find_backend, start_kubetray, start_sim


def _log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, size: int, requests: int, repeat: int) -> None:
        self.size = size
        self.requests = requests
        self.repeat = repeat
        self.digest = httpload.upload_digest(size)
        self.transfer_timeout = 20.0 + size / (1 << 20) * 0.25  # at least ~4 MB/s
        self.latency_timeout = 10.0 + requests * 0.06

    def transfer(self, run: Callable[[float], httpload.Transfer], forwarder: Child | None,
                 sim: Sim) -> TransferResult:
        """Run one transfer `repeat` times: the median MB/s; the forwarder's and the simulator's
        CPU over all of them, per GiB moved. Also the bench's own (client) CPU per GiB."""
        fwd0 = forwarder.cpu() if forwarder else 0.0
        sim0 = sim.child.cpu()
        own0 = cpu_seconds(os.getpid())
        results = []
        try:
            for _ in range(self.repeat):
                results.append(run(time.perf_counter() + self.transfer_timeout))
        except (httpload.CheckFailed, OSError) as exc:
            return TransferResult(error=f"{type(exc).__name__}: {exc}")
        gib = sum(r.nbytes for r in results) / GIB
        return TransferResult(
            mbps=statistics.median(r.nbytes / r.seconds / 1e6 for r in results),
            cpu_per_gib=(forwarder.cpu() - fwd0) / gib if forwarder else None,
            sim_cpu_per_gib=(sim.child.cpu() - sim0) / gib,
            client_cpu_per_gib=(cpu_seconds(os.getpid()) - own0) / gib,
        )

    def latency(self, run: Callable[[float], httpload.Latency]) -> LatencyResult:
        try:
            result = run(time.perf_counter() + self.latency_timeout)
        except (httpload.CheckFailed, OSError) as exc:
            return LatencyResult(error=f"{type(exc).__name__}: {exc}")
        return LatencyResult(result.p50_ms, result.p99_ms)

    def over_tcp(self, key: str, label: str, address: tuple[str, int], forwarder: Child | None,
                 sim: Sim) -> Row:
        """Paths (a) and (b): our own sockets to a TCP address."""
        def one(work: Callable[[httpload.Conn], httpload.Transfer]) -> httpload.Transfer:
            conn = httpload.tcp_connect(address)
            try:
                return work(conn)
            finally:
                conn.close()

        row = Row(key, label)
        _log(f"({key}) download")
        row.download = self.transfer(
            lambda dl: one(lambda c: httpload.download(c, self.size, dl)), forwarder, sim)
        _log(f"({key}) upload")
        row.upload = self.transfer(
            lambda dl: one(lambda c: httpload.upload(c, self.size, self.digest, dl)), forwarder, sim)
        _log(f"({key}) latency")
        connect = lambda: httpload.tcp_connect(address)  # noqa: E731
        row.new_conn = self.latency(lambda dl: httpload.latency(connect, self.requests, False, dl))
        row.keepalive = self.latency(lambda dl: httpload.latency(connect, self.requests, True, dl))
        return row

    def stock(self, driver: StockDriver, sim: Sim) -> Row:
        """Path (c): the same work, done by the driver process through `pf.socket(...)`."""
        def transfer(op: str) -> Callable[[float], httpload.Transfer]:
            def run(deadline: float) -> httpload.Transfer:
                command = {"op": op, "size": self.size, "sha256": self.digest}
                answer = driver.run(command, deadline - time.perf_counter())
                return httpload.Transfer(int(answer["nbytes"]), float(answer["seconds"]))
            return run

        def latency(keepalive: bool) -> Callable[[float], httpload.Latency]:
            def run(deadline: float) -> httpload.Latency:
                command = {"op": "latency", "count": self.requests, "keepalive": keepalive}
                answer = driver.run(command, deadline - time.perf_counter())
                return httpload.Latency(answer["p50_ms"], answer["p99_ms"], answer["count"])
            return run

        row = Row("c", "kubernetes client stock portforward")
        _log("(c) download")
        row.download = self.transfer(transfer("download"), driver.child, sim)
        _log("(c) upload")
        row.upload = self.transfer(transfer("upload"), driver.child, sim)
        _log("(c) latency")
        row.new_conn = self.latency(latency(False))
        row.keepalive = self.latency(latency(True))
        return row


def failed_row(key: str, label: str, error: str) -> Row:
    row = Row(key, label)
    row.download = TransferResult(error=error)
    row.upload = TransferResult(error=error)
    row.new_conn = LatencyResult(error=error)
    row.keepalive = LatencyResult(error=error)
    return row


def run(bench: Bench) -> list[Row]:
    with Children() as children, tempfile.TemporaryDirectory(prefix="kubetray-bench-") as folder:
        _log("starting the simulator")
        sim = start_sim(children, Path(folder))
        _log(f"simulator at {sim.url}; starting kubetray")
        try:
            kubetray = start_kubetray(children, sim)
            b_error = None
        except (RuntimeError, TimeoutError, EOFError) as exc:
            kubetray, b_error = None, str(exc)
        pod = sim.ready_pod()
        backend = find_backend(sim, pod)
        _log(f"pod {pod}: backend {backend[0]}:{backend[1]}")
        rows = [bench.over_tcp("a", "direct TCP to the backend", backend, None, sim)]
        if kubetray is not None:
            rows.append(bench.over_tcp("b", "kubetray", kubetray.address, kubetray.child, sim))
            children.stop(kubetray.child)
        else:
            rows.append(failed_row("b", "kubetray", f"kubetray did not start forwarding: {b_error}"))
        try:
            driver = StockDriver(children, sim, pod)
            rows.append(bench.stock(driver, sim))
            children.stop(driver.child)
        except (TimeoutError, EOFError) as exc:
            rows.append(failed_row("c", "kubernetes client stock portforward", f"driver: {exc}"))
        _log("(d) trying kubectl port-forward")
        reason = probe_kubectl(children, sim.kubeconfig, f"deployment/{DEPLOYMENT}", POD_PORT, REPO)
        rows.append(Row("d", "kubectl port-forward", skipped=reason))
        return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kubetray forwarding benchmark (loopback, simulator)")
    parser.add_argument("--size-mib", type=int, default=256, help="download/upload size (default 256)")
    parser.add_argument("--requests", type=int, default=1000, help="small requests per latency test")
    parser.add_argument("--repeat", type=int, default=3,
                        help="transfers per cell; the median MB/s is shown (default 3)")
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.requests < 2 or args.repeat < 1:
        parser.error("--size-mib and --repeat must be >= 1, --requests >= 2")

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through Children, which stops every subprocess

    signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    rows = run(Bench(args.size_mib << 20, args.requests, args.repeat))
    print(f"## Forwarding benchmark: {args.size_mib} MiB transfers, {args.requests} requests, "
          f"median of {args.repeat} each, loopback, {time.strftime('%Y-%m-%d')}\n")
    print(table(rows))
    for line in notes(rows):
        print(f"\nNote: {line}")
    print("\nGoals (kubetray = b, stock client = c):")
    for line in goals(rows[1], rows[2]):
        print(f"- {line}")
    print(f"\n(run took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
