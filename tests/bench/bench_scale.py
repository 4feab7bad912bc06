"""Scale benchmark: 100 tunnels with 100 connections each through one kubetray, and its idle cost.

    /work/venv/bin/python tests/bench/bench_scale.py [--tunnels 100] [--per-tunnel 100]
        [--size 4096] [--idle-seconds 60] [--base-port 21000] [--load-timeout 120]

(any venv with the project installed). Loopback only, Linux only (reads /proc). One run:
  1. `python -m trayapp.sim serve --scenario scenario_scale.yaml` in its own process: a
     statefulset `echo` with 100 pods, each an `echo` backend on container port 7000;
  2. `kubetray --headless --json` with one pod rule per pod (written to a temporary rules file,
     local ports base+N); time from its start to the last of the 100 `forwarding` events;
  3. idle window: kubetray's CPU (utime + stime) over --idle-seconds with no traffic, and its RSS;
  4. load: --per-tunnel connections on every tunnel at once from an asyncio client in this
     process; each sends --size random bytes and must read them back unchanged, then stays open
     until all are done; kubetray's RSS, open fds and threads with all of them open; then all close
     and the same readings are taken again.
RLIMIT_NOFILE is raised (soft and hard, 65536 when allowed) before the children start, which
inherit it. Prints a Markdown table and PASS/MISS goals; exits 0 on a MISS (a measurement, not a
test), 1 if the bench itself could not run. See tests/bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from procs import Child, Children, cpu_seconds, run_bench, tcp_ext_counters, tcp_states
from setup_paths import BENCH_DIR, REPO, Sim, start_sim

SCENARIO = BENCH_DIR / "scenario_scale.yaml"
POD_PORT = 7000
WANTED_FDS = 65536
FDS_PER_CONNECTION = 3  # the most any one process needs: the simulator (WebSocket, backend pair)
FD_RESERVE = 1000  # listeners, watches, Python's own files
IDLE_CPU_GOAL = 0.1  # CPU seconds per 60 s idle
RSS_GOAL_MB = 120.0


def _log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Snapshot:
    """One reading of a process from /proc."""

    rss_mb: float
    fds: int
    threads: int
    cpu: float

    def text(self) -> str:
        return f"RSS {self.rss_mb:.1f} MB, {self.fds} fds, {self.threads} threads"


def snapshot(pid: int) -> Snapshot:
    """VmRSS and Threads from /proc/PID/status, the open fds, and utime + stime."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ":" in line)
    rss_kb = int(status["VmRSS"].split()[0])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return Snapshot(rss_kb / 1024, fds, int(status["Threads"]), cpu_seconds(pid))


def raise_fd_limit(wanted: int) -> tuple[int, str]:
    """Raise RLIMIT_NOFILE (soft and hard) to `wanted` if allowed, else the soft one to the hard
    one. Children inherit it. Returns the soft limit now in force and a line saying what happened."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
        return wanted, f"RLIMIT_NOFILE raised from {soft}/{hard} to {wanted}/{max(wanted, hard)} (soft/hard)"
    except (ValueError, OSError) as exc:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        why = " - root, but without CAP_SYS_RESOURCE" if os.geteuid() == 0 else ""
        return hard, (f"RLIMIT_NOFILE: could not raise the hard limit {hard} to {wanted} ({exc}{why}); "
                      f"soft raised from {soft} to {hard}")


def plan_per_tunnel(limit: int, tunnels: int, wanted: int) -> tuple[int, str | None]:
    """Connections per tunnel that fit in `limit` fds per process; a note if fewer than wanted."""
    fits = max(1, (limit - FD_RESERVE) // (FDS_PER_CONNECTION * tunnels))
    if fits >= wanted:
        return wanted, None
    return fits, (f"the open-file limit {limit} fits only {fits} connections per tunnel "
                  f"({FDS_PER_CONNECTION} fds each in the simulator); asked for {wanted}")


def free_base(start: int, count: int) -> int:
    """The first base >= start with `count` consecutive free 127.0.0.1 ports. kubetray binds them a
    moment later (and falls back by itself if one got taken; the bench uses the ports it reports)."""
    base = start
    while base + count < 65000:
        busy = next((p for p in range(base, base + count) if not _port_free(p)), None)
        if busy is None:
            return base
        base = busy + 1
    raise RuntimeError(f"no {count} consecutive free ports above {start}")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def write_rules(path: Path, base: int, tunnels: int) -> None:
    """One pod rule per pod (kubetray rejects two rules with the same target)."""
    lines = ["# Written by bench_scale.py: one rule per echo pod.", "portForward:"]
    for n in range(tunnels):
        lines += ["  - resourceType: pod", f"    resourceName: echo-{n}", "    namespace: default",
                  f"    port: {POD_PORT}", f"    localPort: {base + n}"]
    path.write_text("\n".join(lines) + "\n")


@dataclass
class Startup:
    child: Child
    ports: list[int]
    seconds: float
    others: Counter[str] = field(default_factory=Counter)  # non-forwarding events while starting


def start_kubetray(children: Children, sim: Sim, rules: Path, tunnels: int, timeout: float) -> Startup:
    """kubetray as a subprocess; returns once every tunnel reported `forwarding`."""
    exe = shutil.which("kubetray", path=str(Path(sys.executable).parent))
    argv = [exe] if exe else [sys.executable, "-m", "trayapp"]
    started = time.monotonic()
    child = children.start("kubetray", [*argv, "--headless", "--json", "--config", str(rules),
                                        "--kubeconfig", str(sim.kubeconfig)], REPO)
    ports: dict[str, int] = {}
    others: Counter[str] = Counter()
    deadline = started + timeout

    def event_seen(line: str) -> bool:
        try:
            event = json.loads(line)
        except ValueError:
            return False
        if event.get("event") == "forwarding":
            ports[str(event["resourceName"])] = int(event["localPort"])
            return True
        others[_same_kind(f"{event.get('event')}: {event.get('message')}")] += 1
        return False

    while len(ports) < tunnels:
        child.expect(event_seen, max(0.1, deadline - time.monotonic()))
    seconds = time.monotonic() - started
    return Startup(child, [ports[f"echo-{n}"] for n in range(tunnels)], seconds, others)


@dataclass
class Load:
    """What happened to the connections of one load round."""

    wanted: int
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0  # launch to the last connection finished (echo checked or failed)
    latencies: list[float] = field(default_factory=list)  # per connection: connect + echo
    open_reading: Snapshot | None = None  # kubetray with every working connection open
    sim_reading: Snapshot | None = None  # the simulator at the same moment, for context
    stalled: str | None = None  # py-spy dump when the round did not finish in time
    cpu: float = 0.0  # kubetray's CPU seconds from launch to the open reading
    sim_cpu: float = 0.0
    overflows: int = 0  # TcpExt ListenOverflows during the round: SYNs dropped by full backlogs


async def echo_once(port: int, size: int, timeout: float) -> tuple[asyncio.StreamWriter, float]:
    """Connect, send `size` random bytes, read them back; the open writer and the time it took."""
    payload = os.urandom(size)
    started = time.perf_counter()
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(payload)
        await writer.drain()
        echoed = await asyncio.wait_for(reader.readexactly(size), timeout)
    except BaseException:
        writer.close()
        raise
    if echoed != payload:
        writer.close()
        raise ValueError("echo differs from what was sent")
    return writer, time.perf_counter() - started


def _error_key(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return f"IncompleteReadError: connection closed after {len(exc.partial)} of {exc.expected} bytes"
    if isinstance(exc, TimeoutError):
        return "TimeoutError: no connect or no full echo in time"
    return f"{type(exc).__name__}: {exc}"


async def run_load(pid: int, sim_pid: int, ports: list[int], per_tunnel: int, size: int, timeout: float) -> Load:
    """All connections at once; reads kubetray while every working one is open; closes them all."""
    load = Load(len(ports) * per_tunnel)
    cpu0, sim_cpu0 = cpu_seconds(pid), cpu_seconds(sim_pid)
    overflows0 = tcp_ext_counters("ListenOverflows")["ListenOverflows"]
    started = time.perf_counter()
    tasks = [asyncio.create_task(echo_once(port, size, timeout), name=f"echo:{port}:{i}")
             for port in ports for i in range(per_tunnel)]
    done, pending = await asyncio.wait(tasks, timeout=timeout + 5)
    load.seconds = time.perf_counter() - started
    if pending:
        load.stalled = py_spy_dump(pid)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        load.errors[f"still pending after {timeout + 5:.0f} s (cancelled)"] += len(pending)
    writers = []
    for task in done:
        if task.exception() is not None:
            load.errors[_error_key(task.exception())] += 1  # type: ignore[arg-type]
            continue
        writer, seconds = task.result()
        writers.append(writer)
        load.latencies.append(seconds)
    load.ok = len(writers)
    await asyncio.sleep(0.5)  # let kubetray settle its buffers before the reading
    load.open_reading = snapshot(pid)
    load.sim_reading = snapshot(sim_pid)
    load.cpu = load.open_reading.cpu - cpu0
    load.sim_cpu = load.sim_reading.cpu - sim_cpu0
    load.overflows = tcp_ext_counters("ListenOverflows")["ListenOverflows"] - overflows0
    for writer in writers:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
    return load


def py_spy_dump(pid: int) -> str:
    """py-spy's stack dump of every thread of `pid`, or why there is none."""
    exe = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if exe is None:
        return "(py-spy not found)"
    try:
        done = subprocess.run([exe, "dump", "--pid", str(pid)], capture_output=True, text=True,
                              timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "(py-spy dump timed out)"
    return done.stdout + done.stderr


def settle_fds(pid: int, target: int, timeout: float) -> tuple[Snapshot, float]:
    """The reading once kubetray's fds are back to `target` (+2), or after `timeout`; the wait.
    A measurement of how long the close takes, so it samples every 0.1 s."""
    started = time.monotonic()
    while True:
        reading = snapshot(pid)
        waited = time.monotonic() - started
        if reading.fds <= target + 2 or waited >= timeout:
            return reading, waited
        time.sleep(0.1)


def idle_cpu(pid: int, seconds: float) -> float:
    """CPU seconds `pid` used over `seconds` of wall time."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - before


def drain_events(child: Child) -> Counter[str]:
    """kubetray's JSON events printed since the last read (e.g. during the load), by kind."""
    seen: Counter[str] = Counter()
    while not child.lines.empty():
        line = child.lines.get_nowait()
        if line is None:
            seen["(kubetray's stdout closed: it exited)"] += 1
            break
        try:
            event = json.loads(line)
        except ValueError:
            seen[f"(not JSON) {line[:100]}"] += 1
            continue
        seen[_same_kind(f"{event.get('event')}: {event.get('message')}")] += 1
    return seen


@dataclass
class Result:
    """Everything one run measured, for the table and the goals."""

    tunnels: int
    per_tunnel: int
    size: int
    idle_seconds: float
    startup: Startup
    idle_reading: Snapshot
    idle_cpu: float
    load: Load
    closed_reading: Snapshot
    close_wait: float
    closed_states: Counter[str]
    load_events: Counter[str]
    stderr: list[str]
    notes: list[str] = field(default_factory=list)


def run(args: argparse.Namespace, limit_note: str, per_tunnel: int) -> Result:
    """Starts the simulator and kubetray, measures, and stops both (also on errors and Ctrl-C)."""
    with Children() as children, tempfile.TemporaryDirectory(prefix="kubetray-scale-") as folder:
        _log("starting the simulator")
        sim = start_sim(children, Path(folder), tuned=False, scenario=SCENARIO)
        rules = Path(folder) / "rules.yaml"
        write_rules(rules, free_base(args.base_port, args.tunnels), args.tunnels)
        _log(f"simulator at {sim.url}; starting kubetray with {args.tunnels} rules")
        startup = start_kubetray(children, sim, rules, args.tunnels, args.start_timeout)
        pid = startup.child.pid
        _log(f"{args.tunnels} tunnels forwarding after {startup.seconds:.2f} s; idle for {args.idle_seconds:.0f} s")
        time.sleep(2.0)  # the last tunnels' start-up work ends
        idle_reading = snapshot(pid)
        idle = idle_cpu(pid, args.idle_seconds)
        drain_events(startup.child)
        _log(f"opening {args.tunnels} x {per_tunnel} connections")
        load = asyncio.run(run_load(pid, sim.child.pid, startup.ports, per_tunnel, args.size,
                                    args.load_timeout))
        _log(f"{load.ok}/{load.wanted} worked in {load.seconds:.1f} s; closed them, waiting for kubetray")
        closed, waited = settle_fds(pid, idle_reading.fds, args.close_timeout)
        events = drain_events(startup.child)
        return Result(args.tunnels, per_tunnel, args.size, args.idle_seconds, startup, idle_reading,
                      idle, load, closed, waited, tcp_states(pid), events, startup.child.stderr_lines(), [limit_note])


def _ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.0f}"


def table(r: Result) -> str:
    """The Markdown table of one run."""
    load = r.load
    lat = load.latencies
    rows = [
        ("tunnels forwarding (start to last `forwarding` event)",
         f"{len(r.startup.ports)}/{r.tunnels} in {r.startup.seconds:.2f} s"),
        ("kubetray idle, tunnels up, no connections", r.idle_reading.text()),
        (f"kubetray idle CPU over {r.idle_seconds:.0f} s (utime+stime)", f"{r.idle_cpu:.3f} s"),
        (f"connections that worked ({r.size} B echoed and checked, all open at once)",
         f"{load.ok}/{load.wanted}"),
        ("time to establish all and get every echo", f"{load.seconds:.2f} s"),
        ("per connection connect+echo p50 / p99 / max",
         f"{_ms(lat, 0.5)} / {_ms(lat, 0.99)} / {_ms(lat, 1.0)} ms" if lat else "-"),
        ("CPU seconds during the load: kubetray / simulator", f"{load.cpu:.2f} / {load.sim_cpu:.2f}"),
        ("listen-queue overflows during the load (TcpExt ListenOverflows)", str(load.overflows)),
        (f"kubetray with {load.ok} connections open",
         load.open_reading.text() if load.open_reading else "-"),
        ("kubetray RSS per open connection",
         f"{(load.open_reading.rss_mb - r.idle_reading.rss_mb) * 1024 / load.ok:.1f} KB"
         if load.open_reading and load.ok else "-"),
        (f"kubetray after closing them ({r.close_wait:.1f} s later)", r.closed_reading.text()),
        ("kubetray's TCP sockets after closing, by state",
         ", ".join(f"{n} {state}" for state, n in r.closed_states.most_common())),
        ("simulator with all open (context)", load.sim_reading.text() if load.sim_reading else "-"),
        ("kubetray events during the load", _events(r.load_events)),
        ("kubetray stderr lines (whole run)", str(len(r.stderr))),
    ]
    lines = ["| measurement | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _events(events: Counter[str]) -> str:
    """Counts by event kind only; the messages go under the table."""
    kinds: Counter[str] = Counter()
    for text, n in events.items():
        kinds[text.split(":", 1)[0]] += n
    return ", ".join(f"{n} {kind}" for kind, n in kinds.most_common()) or "none"


def _same_kind(text: str) -> str:
    """An event's text with the pod number left out, so that events differing only in it group."""
    return re.sub(r"echo-\d+", "echo-N", text)


def table_notes(r: Result) -> list[str]:
    """What the reader needs to read the table right."""
    out = []
    if r.load.overflows:
        out.append(f"{r.load.overflows} SYNs were dropped by a full listen backlog. kubetray's listeners "
                   f"(backlog 128) and the pods' backends each got {r.per_tunnel} at once; the simulator's "
                   f"API port got all {r.load.wanted} of kubetray's WebSocket dials with asyncio's default "
                   "backlog of 100, so the drops are there (the kernel retries a dropped SYN after 1 s, "
                   "then 3 s, ...), which adds to the time to establish.")
    if r.load.open_reading and r.load.open_reading.threads > r.idle_reading.threads:
        out.append(f"kubetray's threads went from {r.idle_reading.threads} to "
                   f"{r.load.open_reading.threads} under load, for {r.load.ok} connections: a bounded "
                   "pool (asyncio's default executor, e.g. getaddrinfo for each dial), not one per connection.")
    return out


def goals(r: Result) -> list[str]:
    """PASS/MISS lines for the three goals."""
    cpu_goal = IDLE_CPU_GOAL * r.idle_seconds / 60
    checks = [
        (r.load.ok == r.load.wanted, f"all {r.load.wanted} connections work: {r.load.ok}/{r.load.wanted}"),
        (r.idle_cpu < cpu_goal,
         f"idle CPU < {cpu_goal:.3f} s over {r.idle_seconds:.0f} s: {r.idle_cpu:.3f} s"),
        (r.idle_reading.rss_mb < RSS_GOAL_MB,
         f"RSS with {r.tunnels} tunnels < {RSS_GOAL_MB:.0f} MB: {r.idle_reading.rss_mb:.1f} MB idle"
         + (f" ({r.load.open_reading.rss_mb:.1f} MB with every connection open)"
            if r.load.open_reading else "")),
    ]
    kept = r.closed_reading.fds - r.idle_reading.fds
    released = (f"(extra) kubetray lets go of closed connections within {r.close_wait:.0f} s: "
                f"{max(0, kept)} fds more than before the load")
    checks.append((kept <= 2, released))
    return [f"{'PASS' if ok else 'MISS'} {text}" for ok, text in checks]


def evidence(r: Result) -> list[str]:
    """Failure details for the engine's owner: errors by kind, kubetray's stderr, a stack dump."""
    out = []
    kept = r.closed_reading.fds - r.idle_reading.fds
    if kept > 2:
        out.append(f"- after every client closed its socket, kubetray still held {kept} more fds than "
                   f"before the load ({r.closed_reading.fds} vs {r.idle_reading.fds}), {r.close_wait:.0f} s "
                   f"later; its TCP sockets: {dict(r.closed_states)}. CLOSE_WAIT local sockets mean kubetray "
                   "read the client's EOF but keeps the connection and its WebSocket open (an echo pod "
                   "never ends its side).")
    for text, n in r.load.errors.most_common(8):
        out.append(f"- {n} x {text}")
    for text, n in r.startup.others.most_common(5):
        out.append(f"- kubetray event while starting: {n} x {text}")
    for text, n in r.load_events.most_common(8):
        out.append(f"- kubetray event during the load: {n} x {text}")
    if r.stderr:
        out.append(f"- kubetray stderr ({len(r.stderr)} lines), last ones:")
        out += [f"      {line}" for line in r.stderr[-15:]]
    if r.load.stalled:
        out.append("- py-spy dump of kubetray while connections were still pending:")
        out += [f"      {line}" for line in r.load.stalled.splitlines()[:80]]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kubetray at scale: many tunnels and connections, idle cost")
    parser.add_argument("--tunnels", type=int, default=100, help="pods and rules (default 100, at most 100)")
    parser.add_argument("--per-tunnel", type=int, default=100, help="connections per tunnel (default 100)")
    parser.add_argument("--size", type=int, default=4096, help="bytes each connection echoes (default 4096)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle window (default 60)")
    parser.add_argument("--base-port", type=int, default=21000, help="first local port (default 21000)")
    parser.add_argument("--start-timeout", type=float, default=90.0, help="for all tunnels to forward")
    parser.add_argument("--load-timeout", type=float, default=120.0,
                        help="per connection: connect, and read its echo (default 120)")
    parser.add_argument("--close-timeout", type=float, default=15.0,
                        help="for kubetray's fds to drop back after the close (default 15)")
    args = parser.parse_args(argv)
    if not 1 <= args.tunnels <= 100 or args.per_tunnel < 1 or args.size < 1 or args.idle_seconds < 0:
        parser.error("--tunnels 1..100, --per-tunnel and --size >= 1, --idle-seconds >= 0")

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through Children, which stops every subprocess

    signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    limit, limit_note = raise_fd_limit(WANTED_FDS)
    per_tunnel, scaled = plan_per_tunnel(limit, args.tunnels, args.per_tunnel)
    _log(limit_note + (f"; {scaled}" if scaled else ""))
    try:
        result = run(args, limit_note, per_tunnel)
    except (RuntimeError, TimeoutError, EOFError) as exc:
        print(f"bench could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if scaled:
        result.notes.append(f"SCALED DOWN: {scaled}")
    print(f"## Scale benchmark: {result.tunnels} tunnels x {result.per_tunnel} connections, "
          f"{result.size} B echo each, loopback, {time.strftime('%Y-%m-%d')}")
    print("\n".join(f"{note}" for note in result.notes) + "\n")
    print(table(result))
    for line in table_notes(result):
        print(f"\nNote: {line}")
    print("\nGoals:")
    for line in goals(result):
        print(f"- {line}")
    details = evidence(result)
    if details:
        print("\nWhat kubetray did (for the engine's owner):")
        print("\n".join(details))
    print(f"\n(run took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    run_bench(main)
