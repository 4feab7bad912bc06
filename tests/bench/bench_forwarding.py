"""Forwarding benchmark: direct TCP vs kubetray vs the kubernetes client's stock portforward vs kubectl.

    .venv/bin/python tests/bench/bench_forwarding.py [--size-mib 256] [--requests 1000] [--repeat 3]

(any venv with the project installed, e.g. /work/venv/bin/python; --untuned-sim: see README.md).
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
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpload
from kubectl_probe import probe_kubectl
from paths import ForwardPath, StockPath, TcpPath
from procs import Children, cpu_seconds, run_bench
from report import GIB, LatencyResult, Row, TransferResult, goals, notes, table
from setup_paths import (
    DEPLOYMENT,
    POD_PORT,
    REPO,
    SIM_MALLOC_ENV,
    Sim,
    StockDriver,
    find_backend,
    start_kubetray,
    start_sim,
)


def _log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class _Tally:
    """One path's transfers of one kind so far (CPU summed per transfer, so interleaving is fine)."""

    rates: list[float] = field(default_factory=list)
    nbytes: int = 0
    fwd_cpu: float = 0.0
    sim_cpu: float = 0.0
    own_cpu: float = 0.0
    error: str | None = None

    def result(self, measured_forwarder: bool) -> TransferResult:
        if self.error is not None:
            return TransferResult(error=self.error)
        gib = self.nbytes / GIB
        return TransferResult(mbps=statistics.median(self.rates),
                              cpu_per_gib=self.fwd_cpu / gib if measured_forwarder else None,
                              sim_cpu_per_gib=self.sim_cpu / gib, client_cpu_per_gib=self.own_cpu / gib)


class Bench:
    def __init__(self, size: int, requests: int, repeat: int, sim: Sim) -> None:
        self.size = size
        self.requests = requests
        self.repeat = repeat
        self.sim = sim
        self.digest = httpload.upload_digest(size)
        self.transfer_timeout = 20.0 + size / (1 << 20) * 0.25  # at least ~4 MB/s
        self.latency_timeout = 10.0 + requests * 0.06

    def transfers(self, paths: list[ForwardPath], op: str) -> dict[str, TransferResult]:
        """`repeat` rounds of one transfer on every path in turn (a, b, c, a, b, c, ...), so slow
        drifts of the machine hit every path alike. Median MB/s; CPU per GiB over all rounds."""
        tallies = {p.key: _Tally() for p in paths}
        for round_ in range(self.repeat):
            for path in paths:
                tally = tallies[path.key]
                if tally.error is not None:
                    continue
                _log(f"({path.key}) {op} {round_ + 1}/{self.repeat}")
                fwd0 = path.forwarder.cpu() if path.forwarder else 0.0
                sim0, own0 = self.sim.child.cpu(), cpu_seconds(os.getpid())
                deadline = time.perf_counter() + self.transfer_timeout
                try:
                    if op == "download":
                        result = path.download(self.size, deadline)
                    else:
                        result = path.upload(self.size, self.digest, deadline)
                except (httpload.CheckFailed, OSError) as exc:
                    tally.error = f"{type(exc).__name__}: {exc}"
                    continue
                tally.rates.append(result.nbytes / result.seconds / 1e6)
                tally.nbytes += result.nbytes
                tally.fwd_cpu += path.forwarder.cpu() - fwd0 if path.forwarder else 0.0
                tally.sim_cpu += self.sim.child.cpu() - sim0
                tally.own_cpu += cpu_seconds(os.getpid()) - own0
        return {p.key: tallies[p.key].result(p.forwarder is not None) for p in paths}

    def latency(self, path: ForwardPath, keepalive: bool) -> LatencyResult:
        _log(f"({path.key}) {self.requests} requests, {'keep-alive' if keepalive else 'new connection each'}")
        try:
            result = path.latency(self.requests, keepalive, time.perf_counter() + self.latency_timeout)
        except (httpload.CheckFailed, OSError) as exc:
            return LatencyResult(error=f"{type(exc).__name__}: {exc}")
        return LatencyResult(result.p50_ms, result.p99_ms)

    def measure(self, paths: list[ForwardPath]) -> list[Row]:
        rows = {p.key: Row(p.key, p.label) for p in paths}
        for key, result in self.transfers(paths, "download").items():
            rows[key].download = result
        for key, result in self.transfers(paths, "upload").items():
            rows[key].upload = result
        for path in paths:
            rows[path.key].new_conn = self.latency(path, keepalive=False)
            rows[path.key].keepalive = self.latency(path, keepalive=True)
        return list(rows.values())


def failed_row(key: str, label: str, error: str) -> Row:
    row = Row(key, label)
    row.download = TransferResult(error=error)
    row.upload = TransferResult(error=error)
    row.new_conn = LatencyResult(error=error)
    row.keepalive = LatencyResult(error=error)
    return row


def run(size: int, requests: int, repeat: int, tuned_sim: bool) -> list[Row]:
    with Children() as children, tempfile.TemporaryDirectory(prefix="kubetray-bench-") as folder:
        _log("starting the simulator")
        sim = start_sim(children, Path(folder), tuned_sim)
        _log(f"simulator at {sim.url}; starting kubetray and the stock-client driver")
        bench = Bench(size, requests, repeat, sim)
        failed: dict[str, Row] = {}
        paths: list[ForwardPath] = []
        try:
            kubetray = start_kubetray(children, sim)
        except (RuntimeError, TimeoutError, EOFError) as exc:
            kubetray = None
            failed["b"] = failed_row("b", "kubetray", f"kubetray did not start forwarding: {exc}")
        pod = sim.ready_pod()
        backend = find_backend(sim, pod)
        _log(f"pod {pod}: backend {backend[0]}:{backend[1]}")
        paths.append(TcpPath("a", "direct TCP to the backend", backend))
        if kubetray is not None:
            paths.append(TcpPath("b", "kubetray", kubetray.address, kubetray.child))
        try:
            paths.append(StockPath(StockDriver(children, sim, pod)))
        except (TimeoutError, EOFError) as exc:
            failed["c"] = failed_row("c", "kubernetes client stock portforward", f"driver: {exc}")
        rows = bench.measure(paths) + list(failed.values())
        _log("(d) trying kubectl port-forward")
        reason = probe_kubectl(children, sim.kubeconfig, f"deployment/{DEPLOYMENT}", POD_PORT, REPO)
        rows.append(Row("d", "kubectl port-forward", skipped=reason))
        return sorted(rows, key=lambda row: row.key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kubetray forwarding benchmark (loopback, simulator)")
    parser.add_argument("--size-mib", type=int, default=256, help="download/upload size (default 256)")
    parser.add_argument("--requests", type=int, default=1000, help="small requests per latency test")
    parser.add_argument("--repeat", type=int, default=3,
                        help="transfers per cell; the median MB/s is shown (default 3)")
    parser.add_argument("--untuned-sim", action="store_true",
                        help="run the simulator without its glibc malloc settings (see README)")
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.requests < 2 or args.repeat < 1:
        parser.error("--size-mib and --repeat must be >= 1, --requests >= 2")

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through Children, which stops every subprocess

    signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    rows = run(args.size_mib << 20, args.requests, args.repeat, not args.untuned_sim)
    print(f"## Forwarding benchmark: {args.size_mib} MiB transfers, {args.requests} requests, "
          f"median of {args.repeat} each, loopback, {time.strftime('%Y-%m-%d')}")
    sim_env = " ".join(f"{k}={v}" for k, v in SIM_MALLOC_ENV.items())
    print(f"Simulator: {'plain' if args.untuned_sim else sim_env} (forwarders: plain)\n")
    print(table(rows))
    for line in notes(rows):
        print(f"\nNote: {line}")
    print("\nGoals (kubetray = b, stock client = c):")
    for line in goals(rows[1], rows[2]):
        print(f"- {line}")
    print(f"\n(run took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    run_bench(main)
