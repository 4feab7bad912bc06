"""Fault benchmark: what kubetray says and does when the path to the API server fails the way a
sleeping laptop's or a dropped VPN's does, measured through the fault proxy the tests own.

    .venv/bin/python tests/bench/bench_faults.py [--faults sleep,wake-signal,blackhole,reset,slow,503]
        [--sleep-seconds 30] [--blackhole-seconds 60] [--observe-seconds 60] [-v] [--log-dir DIR]

Loopback only, Linux only. One simulator (`python -m trayapp.sim serve`: deployment `web`, one
replica, behind service `web`), the fault proxy (tests/support/faultproxy.py) in a thread in front
of its API, and a kubeconfig whose server is the proxy. For each fault a fresh
`kubetray --headless --json` forwards service/web, and while the fault runs the bench probes the
local port (a GET / on a new connection every --probe-interval s, reading the X-Pod header) and
asks `status` every 0.2 s. The pod behind the tunnel is deleted during each outage, so "serving
again" means its replacement answers on the same local port. Prints a Markdown table, PASS/MISS
goals, and what `kubectl port-forward` does in the same fault where it can run; exits 0 on a MISS
(a measurement, not a test), 1 if the bench could not run. See tests/bench/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Protocol

from fault_observe import (
    Attempt,
    EventLog,
    KubectlForward,
    LogindStandIn,
    Prober,
    StatusPoller,
    logind_unavailable,
    private_dirs,
)
from procs import Children, run_bench
from setup_paths import REPO, START_TIMEOUT, Sim

from trayapp.sim.kubeconfig import ClusterEntry, write_kubeconfig

sys.path.insert(0, str(REPO / "tests" / "support"))
from faultproxy import Counts, FaultProxyThread  # found through the line above

TOLD_GOAL = 45.0  # seconds from the path dying to the first event that is not `forwarding`
SERVE_GOAL = 5.0  # seconds from the path coming back to the replacement answering on the same port
SIGNAL_SERVE_GOAL = 1.0  # the same when the wake signal arrives
NAMESPACE = "default"
APP = "web"  # the deployment and the service
SERVICE_PORT = 80

SCENARIO = """# Written by bench_faults.py.
deployments:
  - name: web
    namespace: default
    replicas: 1
    readyDelay: {ready_delay}
    ports: [{{name: http, containerPort: 8080, kind: http}}]
services:
  - name: web
    namespace: default
    ports: [{{name: http, port: 80, targetPort: http}}]
"""

RULES = """# Written by bench_faults.py.
portForward:
  - resourceType: service
    resourceName: web
    namespace: default
    port: 80
    localPort: {port}
"""


def _log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Bench:
    """What every fault run shares."""

    args: argparse.Namespace
    children: Children
    folder: Path
    sim: Sim
    proxy: FaultProxyThread
    kubeconfig: Path  # server: the proxy
    logind: LogindStandIn | None
    logind_missing: str | None  # why the wake-signal row cannot run

    def ready_pod(self) -> str:
        pods = [p["name"] for p in self.sim.control("state", {"namespace": NAMESPACE})
                if p["ready"] and p["name"].startswith(f"{APP}-")]
        if len(pods) != 1:
            raise RuntimeError(f"expected one ready {APP} pod, the simulator has {pods}")
        return str(pods[0])

    def delete_pod(self, pod: str) -> str:
        replacement = self.sim.control("delete-pod", {"namespace": NAMESPACE, "name": pod})
        if not replacement:
            raise RuntimeError(f"deleting {pod} made no replacement")
        return str(replacement)


@dataclass
class Timeline:
    """What a fault did and when (monotonic seconds)."""

    died: float  # the path died (for the slow link: the pod was deleted)
    back: float  # the path came back (for the slow link: the pod was deleted)
    deleted: str
    replacement: str
    serve_goal: float
    path_dies: bool = True  # False for the slow link: the told goal does not apply
    proxy_counts: str = ""


def _pause_until(at: float) -> None:
    time.sleep(max(0.0, at - time.monotonic()))


def fault_sleep(bench: Bench, wake_signal: bool) -> Timeline:
    """Sleep (a blackhole) for --sleep-seconds, the pod deleted meanwhile, then wake on a new network."""
    a = bench.args
    pod = bench.ready_pod()
    if wake_signal:
        assert bench.logind is not None
        bench.logind.prepare_for_sleep(True)
    bench.proxy.sleep()
    died = time.monotonic()
    _pause_until(died + a.delete_after)
    replacement = bench.delete_pod(pod)
    _pause_until(died + a.sleep_seconds)
    bench.proxy.wake()
    back = time.monotonic()
    if wake_signal:
        assert bench.logind is not None
        bench.logind.prepare_for_sleep(False)
    return Timeline(died, back, pod, replacement, SIGNAL_SERVE_GOAL if wake_signal else SERVE_GOAL)


def fault_blackhole(bench: Bench) -> Timeline:
    """Every connection silent for --blackhole-seconds, the pod deleted meanwhile; then the path
    comes back on a new network (old connections dead for good) or, with --blackhole-return same,
    on the same one (TCP retransmits: the old connections go on)."""
    a = bench.args
    pod = bench.ready_pod()
    bench.proxy.blackhole()
    died = time.monotonic()
    _pause_until(died + a.delete_after)
    replacement = bench.delete_pod(pod)
    _pause_until(died + a.blackhole_seconds)
    if a.blackhole_return == "new":
        bench.proxy.wake()
    else:
        bench.proxy.pass_through()
    return Timeline(died, time.monotonic(), pod, replacement, SERVE_GOAL)


def fault_reset(bench: Bench) -> Timeline:
    """An RST on every open connection and on every new one for --storm-seconds; the pod deleted at once."""
    pod = bench.ready_pod()
    bench.proxy.refuse()
    bench.proxy.reset_all()
    died = time.monotonic()
    replacement = bench.delete_pod(pod)
    _pause_until(died + bench.args.storm_seconds)
    bench.proxy.pass_through()
    return Timeline(died, time.monotonic(), pod, replacement, SERVE_GOAL)


def fault_unavailable(bench: Bench) -> Timeline:
    """Open connections reset, new requests answered 503 + Retry-After for --unavailable-seconds."""
    pod = bench.ready_pod()
    bench.proxy.unavailable(1)
    bench.proxy.reset_all()
    died = time.monotonic()
    replacement = bench.delete_pod(pod)
    _pause_until(died + bench.args.unavailable_seconds)
    bench.proxy.pass_through()
    return Timeline(died, time.monotonic(), pod, replacement, SERVE_GOAL)


def fault_slow(bench: Bench) -> Timeline:
    """A slow link (--slow-latency each way, --slow-bandwidth bytes/s); after 2 s the pod is deleted.
    Times count from the deletion; the link stays slow until the observation ends."""
    a = bench.args
    pod = bench.ready_pod()
    bench.proxy.slow(a.slow_latency, a.slow_bandwidth or None)
    time.sleep(2.0)
    deleted = time.monotonic()
    replacement = bench.delete_pod(pod)
    return Timeline(deleted, deleted, pod, replacement, SERVE_GOAL, path_dies=False)


@dataclass(frozen=True)
class Fault:
    key: str
    label: str
    run: Callable[[Bench], Timeline]
    probe_timeout: Callable[[argparse.Namespace], float] = lambda a: a.probe_timeout


FAULTS = {
    "sleep": Fault("sleep", "sleep {sleep_seconds:g} s, wake on a new network",
                   lambda b: fault_sleep(b, wake_signal=False)),
    "wake-signal": Fault("wake-signal", "the same, with logind's PrepareForSleep",
                         lambda b: fault_sleep(b, wake_signal=True)),
    "blackhole": Fault("blackhole", "blackhole {blackhole_seconds:g} s, back on {blackhole_network} network",
                       fault_blackhole),
    "reset": Fault("reset", "reset storm {storm_seconds:g} s", fault_reset),
    "slow": Fault("slow", "slow link {slow_latency:g} s each way, {slow_bandwidth_k}", fault_slow,
                  lambda a: a.probe_timeout + 6 * a.slow_latency),  # a dial and a GET: ~3 round trips
    "503": Fault("503", "503 + Retry-After {unavailable_seconds:g} s", fault_unavailable),
}


class Subject(Protocol):
    """The forwarder under test, as the measurement sees it."""

    def claim(self, at: float) -> str | None: ...  # "forwarding" when it says it serves
    def told(self, since: float) -> tuple[float, str] | None: ...  # first word of trouble
    def waiting(self, since: float) -> float | None: ...  # first time it said the tunnel waits
    def said(self, since: float) -> list[str]: ...  # what it emitted: event kinds, or kubectl's lines
    def ports_said(self, since: float) -> set[int]: ...  # the local ports its events named
    def settled(self, pod: str) -> bool: ...  # says it serves `pod`


class KubetraySubject:
    def __init__(self, log: EventLog, status: StatusPoller) -> None:
        self.log = log
        self.status = status

    def claim(self, at: float) -> str | None:
        by_status, by_events = self.status.claim(at), self.log.claim(at)
        return "forwarding" if "forwarding" in (by_status, by_events) else by_status or by_events

    def told(self, since: float) -> tuple[float, str] | None:
        first = next((e for e in self.log.after(since) if e.kind != "forwarding"), None)
        return (first.at, first.kind) if first else None

    def waiting(self, since: float) -> float | None:
        return next((e.at for e in self.log.after(since) if e.kind == "waiting"), None)

    def said(self, since: float) -> list[str]:
        return [e.kind for e in self.log.after(since)]

    def ports_said(self, since: float) -> set[int]:
        return {int(e.data["localPort"]) for e in self.log.after(since) if e.data.get("localPort")}

    def settled(self, pod: str) -> bool:
        samples = self.status.samples[-1:]
        return bool(samples) and samples[0][1] == "forwarding" and samples[0][2] == pod


class KubectlSubject:
    def __init__(self, kubectl: KubectlForward) -> None:
        self.kubectl = kubectl

    def claim(self, at: float) -> str | None:
        return self.kubectl.claim(at)

    def told(self, since: float) -> tuple[float, str] | None:
        return self.kubectl.told(since)

    def waiting(self, since: float) -> float | None:
        return None  # kubectl has no such state: it forwards or it has exited

    def said(self, since: float) -> list[str]:
        return [text for at, text in list(self.kubectl.lines) if at >= since]

    def ports_said(self, since: float) -> set[int]:
        return set()

    def settled(self, pod: str) -> bool:
        return self.kubectl.exited_at is None


@dataclass
class Outcome:
    """One fault's row for one forwarder."""

    told: tuple[float, str] | None = None  # (seconds after the path died, what)
    waiting: float | None = None  # seconds after the path died to the first `waiting` event
    outage: float = 0.0  # seconds from the path dying to its return
    served: float | None = None  # seconds after the path came back
    observed: float = 0.0  # how long after the path came back the bench watched
    port_kept: str = ""
    said: list[str] = field(default_factory=list)
    lies: int = 0
    lie_span: tuple[float, float] | None = None  # first and last lie, seconds after the path died
    failures: Counter[str] = field(default_factory=Counter)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)


def measure(subject: Subject, timeline: Timeline, attempts: list[Attempt], port: int, ended: float) -> Outcome:
    out = Outcome(observed=ended - timeline.back, outage=timeline.back - timeline.died)
    told = subject.told(timeline.died)
    if told is not None:
        out.told = (told[0] - timeline.died, told[1])
    waiting = subject.waiting(timeline.died)
    if waiting is not None:
        out.waiting = waiting - timeline.died
    served = [a.ended for a in attempts if a.pod == timeline.replacement and a.ended >= timeline.back]
    if served:
        out.served = max(0.0, min(served) - timeline.back)
    after = [a for a in attempts if a.started >= timeline.died]
    out.failures = Counter(a.error for a in after if a.error)
    refused = out.failures.get("refused", 0)
    moved = subject.ports_said(timeline.died) - {port}
    out.port_kept = "yes" if not refused and not moved and served else (
        f"no: moved to {sorted(moved)}" if moved else f"no: refused {refused} times" if refused
        else "no answer")
    out.said = subject.said(timeline.died)
    # A lie: a GET failed while the forwarder said it was forwarding, outside the time the goals
    # allow for finding out (TOLD_GOAL after the path died) and for healing (serve goal after it came back).
    windows = [(timeline.back + timeline.serve_goal, ended)]
    if timeline.path_dies:
        windows.append((timeline.died + TOLD_GOAL, timeline.back))
    lies = [a for a in after if not a.ok and any(lo <= a.ended < hi for lo, hi in windows)
            and subject.claim(a.ended) == "forwarding"]
    out.lies = len(lies)
    if lies:
        out.lie_span = (lies[0].ended - timeline.died, lies[-1].ended - timeline.died)
    return out


def observe(bench: Bench, subject: Subject, prober: Prober, timeline: Timeline) -> float:
    """Watch until the replacement answered and the subject says it serves it, plus --settle-seconds;
    at most --observe-seconds after the path came back. Polls: the bench may, kubetray may not."""
    a = bench.args
    limit = timeline.back + a.observe_seconds
    while time.monotonic() < limit:
        if prober.served(timeline.replacement, timeline.back) is not None and subject.settled(timeline.replacement):
            _pause_until(min(limit, time.monotonic() + a.settle_seconds))
            break
        time.sleep(0.1)
    return time.monotonic()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_kubetray(bench: Bench, fault: Fault) -> Outcome:
    a = bench.args
    folder = bench.folder / f"kubetray-{fault.key}"
    env = private_dirs(folder)
    if bench.logind is not None:
        env["DBUS_SYSTEM_BUS_ADDRESS"] = bench.logind.address
    rules = folder / "rules.yaml"
    rules.write_text(RULES.format(port=free_port()))
    exe = shutil.which("kubetray", path=str(Path(sys.executable).parent))
    argv = [exe] if exe else [sys.executable, "-m", "trayapp"]
    argv += ["--headless", "--json", "--config", str(rules), "--kubeconfig", str(bench.kubeconfig)]
    child = bench.children.start(f"kubetray-{fault.key}", [*argv, "-v"] if a.verbose else argv, REPO, env=env)
    try:
        log = EventLog(child)
        first = log.wait_for(lambda e: e.kind == "forwarding", START_TIMEOUT)
        port = int(first.data["localPort"])
        status = StatusPoller(Path(env["XDG_RUNTIME_DIR"]) / "kubetray", port).start()
        prober = Prober(port, a.probe_interval, fault.probe_timeout(a)).start()
        subject = KubetraySubject(log, status)
        notes = []
        if fault.key == "wake-signal" and bench.logind is not None:
            notes.append(f"connections on the private system bus besides the bench's: {bench.logind.peers()}")
        _pause_until(time.monotonic() + 1.0)  # a second of normal service first
        before = bench.proxy.counts()
        timeline = fault.run(bench)
        ended = observe(bench, subject, prober, timeline)
        bench.proxy.pass_through()
        attempts = prober.stop()
        status.stop()
        outcome = measure(subject, timeline, attempts, port, ended)
        outcome.notes += notes + [proxy_note(before, bench.proxy.counts())]
        if child.proc.poll() is not None:
            outcome.notes.append(f"kubetray exited ({child.proc.returncode}): {child.stderr_tail()}")
        return outcome
    finally:
        if a.log_dir is not None:
            a.log_dir.mkdir(parents=True, exist_ok=True)
            (a.log_dir / f"kubetray-{fault.key}.log").write_text("\n".join(child.stderr_lines()) + "\n")
        bench.children.stop(child)
        bench.proxy.pass_through()


def proxy_note(before: Counts, after: Counts) -> str:
    return (f"proxy, from the fault on: {after.accepted - before.accepted} connections accepted, "
            f"{after.connected - before.connected} passed upstream, {after.resets - before.resets} resets sent, "
            f"{after.unavailable - before.unavailable} answered 503; {after.dead} dead and {after.held} "
            "held still open at the end")


def probe_kubectl(bench: Bench) -> str | None:
    """None if `kubectl port-forward` forwards one request through the proxy; else why it cannot run."""
    kubectl = KubectlForward(bench.kubeconfig, NAMESPACE, f"service/{APP}", SERVICE_PORT, REPO)
    try:
        port = kubectl.wait_listening(8.0)
        if port is None:
            return f"kubectl exited: `{kubectl.error_line()}`"
        prober = Prober(port, 0.2, 3.0).start()
        time.sleep(1.0)
        attempts = prober.stop()
        if not any(a.ok for a in attempts):
            time.sleep(0.2)
            return f"kubectl listened, but no request got through: `{kubectl.error_line()}`"
        return None
    finally:
        kubectl.stop()


def run_kubectl(bench: Bench, fault: Fault) -> Outcome:
    a = bench.args
    kubectl = KubectlForward(bench.kubeconfig, NAMESPACE, f"service/{APP}", SERVICE_PORT, REPO)
    try:
        port = kubectl.wait_listening(8.0)
        if port is None:
            return Outcome(skipped=f"cannot run: `{kubectl.error_line()}`")
        prober = Prober(port, a.probe_interval, fault.probe_timeout(a)).start()
        subject = KubectlSubject(kubectl)
        _pause_until(time.monotonic() + 1.0)
        timeline = fault.run(bench)
        ended = observe(bench, subject, prober, timeline)
        bench.proxy.pass_through()
        return measure(subject, timeline, prober.stop(), port, ended)
    finally:
        kubectl.stop()
        bench.proxy.pass_through()


def start_bench(args: argparse.Namespace, children: Children, folder: Path) -> Bench:
    scenario = folder / "scenario.yaml"
    scenario.write_text(SCENARIO.format(ready_delay=args.ready_delay))
    sim_kubeconfig = folder / "sim.kubeconfig"
    child = children.start("sim", [sys.executable, "-m", "trayapp.sim", "serve", "--scenario", str(scenario),
                                   "--kubeconfig", str(sim_kubeconfig), "--name", "faults",
                                   "--bookmark-interval", str(args.bookmark_interval)], REPO)
    url = child.expect(lambda line: line.startswith("http://127.0.0.1:"), START_TIMEOUT).strip()
    child.expect(lambda line: line.startswith("kubeconfig:"), START_TIMEOUT)
    sim = Sim(child, url, sim_kubeconfig)
    proxy = FaultProxyThread(("127.0.0.1", sim.api_port)).start()
    kubeconfig = write_kubeconfig(folder / "proxied.kubeconfig",
                                  [ClusterEntry(context="faults", server=proxy.url, namespace=NAMESPACE)])
    missing = logind_unavailable()
    logind = None
    if missing is None:
        try:
            logind = LogindStandIn(children, folder / "system-bus", REPO)
        except (OSError, RuntimeError, TimeoutError, EOFError) as exc:
            missing = f"not available: the private system bus did not start ({exc})"
    return Bench(args, children, folder, sim, proxy, kubeconfig, logind, missing)


@dataclass
class Row:
    fault: Fault
    label: str
    kubetray: Outcome
    kubectl: Outcome | None  # None: kubectl could not run at all (see the reason)


def run(args: argparse.Namespace) -> tuple[list[Row], str | None]:
    rows: list[Row] = []
    with Children() as children, tempfile.TemporaryDirectory(prefix="kubetray-bench-faults-") as tmp:
        bench = start_bench(args, children, Path(tmp))
        try:
            kubectl_missing = probe_kubectl(bench)
            _log(f"kubectl port-forward: {kubectl_missing or 'forwards; it runs each fault too'}")
            for key in args.faults:
                fault = FAULTS[key]
                label = fault.label.format(
                    **vars(args),
                    slow_bandwidth_k=f"{args.slow_bandwidth / 1000:g} kB/s" if args.slow_bandwidth else "no bandwidth cap",
                    blackhole_network="a new" if args.blackhole_return == "new" else "the same")
                if key == "wake-signal" and bench.logind_missing:
                    rows.append(Row(fault, label, Outcome(skipped=bench.logind_missing), None))
                    _log(f"{key}: {bench.logind_missing}")
                    continue
                _log(f"{key}: {label} (kubetray)")
                outcome = run_kubetray(bench, fault)
                theirs = None
                if kubectl_missing is None:
                    _log(f"{key}: {label} (kubectl port-forward)")
                    theirs = run_kubectl(bench, fault)
                rows.append(Row(fault, label, outcome, theirs))
        finally:
            if bench.logind is not None:
                bench.logind.close()
            bench.proxy.stop()
    return rows, kubectl_missing


def _told(out: Outcome, waiting: bool = True) -> str:
    if out.told is None:
        return f"not told ({out.observed:.0f} s after the path came back)"
    text = f"{out.told[0]:.1f} s ({out.told[1]})"
    if waiting and out.told[1] != "waiting":
        text += f"; waiting {out.waiting:.1f} s" if out.waiting is not None else "; never waiting"
    return text


def _served(out: Outcome) -> str:
    return f"{out.served:.2f} s" if out.served is not None else f"not within {out.observed:.0f} s"


def _said(out: Outcome, limit: int = 4) -> str:
    if not out.said:
        return "0"
    kinds = Counter(out.said).most_common()
    shown = ", ".join(f"{kind} x{n}" if n > 1 else kind for kind, n in kinds[:limit])
    return f"{len(out.said)}: {shown}" + (", ..." if len(kinds) > limit else "")


def _lies(out: Outcome) -> str:
    if not out.lies:
        return "0"
    assert out.lie_span is not None
    return f"{out.lies} ({out.lie_span[0]:.0f}-{out.lie_span[1]:.0f} s after the fault)"


def _kubectl_cell(row: Row, missing: str | None) -> str:
    if row.kubectl is None:
        return "cannot run (see below)" if missing else "-"
    k = row.kubectl
    if k.skipped:
        return k.skipped
    return f"told {_told(k, waiting=False)}; serving {_served(k)}; lies {_lies(k)}"


def table(rows: list[Row], kubectl_missing: str | None) -> str:
    lines = ["| fault | told after | serving again after | local port kept | events | lies | kubectl port-forward |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        out = row.kubetray
        if out.skipped:
            lines.append(f"| {row.label} | {out.skipped} | | | | | {_kubectl_cell(row, kubectl_missing)} |")
            continue
        lines.append(f"| {row.label} | {_told(out)} | {_served(out)} | {out.port_kept} | {_said(out)} | "
                     f"{_lies(out)} | {_kubectl_cell(row, kubectl_missing)} |")
    return "\n".join(lines)


def goals(rows: list[Row]) -> list[str]:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    out = []
    for row in rows:
        o = row.kubetray
        if o.skipped:
            out.append(f"{row.fault.key}: not run ({o.skipped})")
            continue
        checks = []
        if row.fault.key != "slow":  # a slow link is alive: nothing to be told, no wake to heal after
            # Told means `waiting`: one connection's `failed` (a probe that timed out) does not say
            # the tunnel cannot serve. A path back within the allowance needed no telling.
            if o.outage < TOLD_GOAL:
                checks.append(f"told (waiting) within {TOLD_GOAL:g} s: n/a, the outage lasted {o.outage:.0f} s")
            else:
                told = o.waiting is not None and o.waiting <= TOLD_GOAL
                checks.append(f"told (waiting) within {TOLD_GOAL:g} s {verdict(told)}")
            goal = SIGNAL_SERVE_GOAL if row.fault.key == "wake-signal" else SERVE_GOAL
            served = o.served is not None and o.served <= goal and o.port_kept == "yes"
            checks.append(f"replacement served on the same port within {goal:g} s of the path's return "
                          f"{verdict(served)}")
        checks.append(f"0 lies {verdict(o.lies == 0)}")
        out.append(f"{row.fault.key}: " + "; ".join(checks))
    return out


def details(rows: list[Row]) -> list[str]:
    lines = ["Failed probes by kind and other notes:"]
    for row in rows:
        o = row.kubetray
        if o.skipped:
            continue
        failures = ", ".join(f"{kind} {n}" for kind, n in o.failures.most_common()) or "none"
        lines.append(f"- {row.fault.key}: failed GETs after the fault: {failures}")
        lines += [f"  - {note}" for note in o.notes]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kubetray: told, healed and truthful through network faults")
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help=f"comma-separated, in order (default {','.join(FAULTS)})")
    parser.add_argument("--sleep-seconds", type=float, default=30.0, help="sleep length (default 30)")
    parser.add_argument("--blackhole-seconds", type=float, default=60.0, help="blackhole length (default 60)")
    parser.add_argument("--blackhole-return", choices=("new", "same"), default="new",
                        help="the path comes back on a new network (old connections dead) or the same one")
    parser.add_argument("--storm-seconds", type=float, default=10.0, help="reset storm length (default 10)")
    parser.add_argument("--unavailable-seconds", type=float, default=15.0, help="503 phase length (default 15)")
    parser.add_argument("--slow-latency", type=float, default=0.3, help="seconds added each way (default 0.3)")
    parser.add_argument("--slow-bandwidth", type=float, default=64_000,
                        help="bytes per second each way, 0 for no cap (default 64000)")
    parser.add_argument("--delete-after", type=float, default=2.0,
                        help="seconds into an outage at which the pod is deleted (default 2)")
    parser.add_argument("--observe-seconds", type=float, default=60.0,
                        help="how long to wait for healing after the path comes back (default 60)")
    parser.add_argument("--settle-seconds", type=float, default=3.0,
                        help="watching on after healing, for flapping and lies (default 3)")
    parser.add_argument("--probe-interval", type=float, default=0.1, help="seconds between GETs (default 0.1)")
    parser.add_argument("--probe-timeout", type=float, default=3.0, help="seconds each GET may take (default 3)")
    parser.add_argument("--ready-delay", type=float, default=0.5, help="the replacement's Running-to-Ready delay")
    parser.add_argument("--bookmark-interval", type=float, default=5.0,
                        help="the simulator's watch bookmark interval (default 5; kube-apiserver: about 60)")
    parser.add_argument("-v", "--verbose", action="store_true", help="run kubetray with -v")
    parser.add_argument("--log-dir", type=Path, help="write each run's kubetray stderr into this folder")
    args = parser.parse_args(argv)
    args.faults = [key.strip() for key in args.faults.split(",") if key.strip()]
    unknown = [key for key in args.faults if key not in FAULTS]
    if unknown:
        parser.error(f"unknown faults {unknown}; choose from {', '.join(FAULTS)}")

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through Children, which stops every subprocess

    signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    try:
        rows, kubectl_missing = run(args)
    except (RuntimeError, TimeoutError, EOFError, OSError) as exc:
        print(f"bench could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"## Fault benchmark: kubetray through the fault proxy, loopback, {time.strftime('%Y-%m-%d')}\n")
    print(f"Simulator bookmarks every {args.bookmark_interval:g} s; probes every {args.probe_interval:g} s; "
          f"the pod is deleted {args.delete_after:g} s into each outage.\n")
    print(table(rows, kubectl_missing))
    if kubectl_missing:
        print(f"\nkubectl port-forward could not run against the simulator: {kubectl_missing}.")
    print("\nGoals:")
    print("\n".join(f"- {line}" for line in goals(rows)))
    print("\n" + "\n".join(details(rows)))
    print(f"\n(run took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    run_bench(main)
