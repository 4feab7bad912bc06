"""Resilience benchmark: context switch, reconnect to a replacement pod, and idle cost.

    /work/venv/bin/python tests/bench/bench_resilience.py [--per-context 50] [--switches 6]
        [--reconnects 10] [--ready-delay 0.5] [--idle-seconds 60] [--base-port 23000] [-v]

(any venv with the project installed). Loopback only, Linux only (reads /proc). One simulator
(`python -m trayapp.sim serve`, generated scenario: svc-0..N-1 deployments + services in team-a and
team-b, a `solo` deployment with one replica and a readiness delay) and one kubeconfig per phase
with contexts ctx-a (team-a), ctx-b (team-b), ctx-solo and ctx-idle on it. Each phase runs its own
`kubetray --headless --json` subprocess:
  1. switch: rules for ctx-a and ctx-b (same local ports); `kubectl config use-context` with
     KUBECONFIG set, back and forth; time to the Nth `forwarding` event of the new context and to
     the first answer from the new namespace through every tunnel;
  2. reconnect: delete the solo pod through the control API; time from the replacement being seen
     Ready (our own pod watch) to the first answer naming it on the same local port;
  3. idle: 2N service tunnels, CPU over --idle-seconds and RSS.
Prints a Markdown table and PASS/MISS goals; exits 0 on a MISS, 1 if the bench could not run.
See tests/bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType

import httpload
import yaml
from bench_scale import Snapshot, free_base, idle_cpu, snapshot
from procs import Child, Children, run_bench
from resilience_setup import (
    IDLE_CONTEXT,
    SOLO,
    SWITCH_NAMESPACES,
    Event,
    KubectlTimes,
    PodWatch,
    Probe,
    drain,
    events_until,
    next_event,
    probe_until,
    run_timed,
    scenario,
    start_kubetray,
    time_kubectl,
    write_contexts,
    write_rules,
)
from setup_paths import Sim, start_sim

SWITCH_GOAL = 1.0  # seconds from use-context to every new tunnel forwarding/answering
RECONNECT_GOAL = 0.300  # seconds after the replacement is Ready
IDLE_CPU_GOAL = 0.1  # CPU seconds per 60 s idle
RSS_GOAL_MB = 120.0
SKAFFOLD_RETRY = 0.5  # Skaffold restarts a dead `kubectl port-forward` after this long


def _log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Switch:
    """One `kubectl config use-context` and what followed, in seconds from just before kubectl ran."""

    target: str
    wall: float  # time.time() just before kubectl ran, to place kubetray's debug log lines
    kubectl: float
    written: float  # the kubeconfig's mtime after kubectl: when kubectl wrote it
    first_stopped: float | None
    context_event: float | None
    all_forwarding: float
    all_answering: float | None  # None if some tunnel never answered from the new namespace
    unanswered: int
    ports_kept: int  # rules whose local port is the one asked for
    others: list[str] = field(default_factory=list)  # unexpected events


@dataclass
class Reconnect:
    """One deleted pod, in seconds from the replacement being seen Ready (negative: before)."""

    old: str
    new: str
    after_ready: float | None  # first answer naming the new pod
    event_after_ready: float | None  # the `reconnected` event
    after_delete: float | None
    same_port: bool
    outcomes: dict[str, int]
    attempts: int
    held: float | None  # how long the answered attempt waited for its answer


@dataclass
class Result:
    per_context: int
    startup: float
    switches: list[Switch]
    reconnects: list[Reconnect]
    at_rest: httpload.Latency  # GET / on a new connection each through the solo tunnel, no deletions
    kubectl: KubectlTimes
    idle_seconds: float
    idle_reading: Snapshot | None
    idle_cpu: float | None
    notes: list[str] = field(default_factory=list)


def _forwarding(events: list[Event], context: str) -> list[Event]:
    return [e for e in events if e.kind == "forwarding" and e.data.get("context") == context]


def switch_once(child: Child, kubeconfig: Path, target: str, ports: dict[str, int], timeout: float) -> Switch:
    """Run the real kubectl use-context; follow kubetray's events, probing each tunnel of the new
    context from its `forwarding` event on until it answers from the new namespace."""
    namespace = SWITCH_NAMESPACES[target]
    drain(child)
    wall = time.time()
    started, kubectl = run_timed(["kubectl", "config", "use-context", target],
                                 {**os.environ, "KUBECONFIG": str(kubeconfig)})
    deadline = started + timeout
    events: list[Event] = []
    probes: dict[str, Future[Probe]] = {}
    with ThreadPoolExecutor(max_workers=len(ports), thread_name_prefix="bench:probe") as pool:
        while len(_forwarding(events, target)) < len(ports):
            event = next_event(child, max(0.01, deadline - time.monotonic()))
            events.append(event)
            if event.kind == "forwarding" and event.data.get("context") == target:
                probes[str(event.data["resourceName"])] = pool.submit(
                    probe_until, int(event.data["localPort"]), f"namespace={namespace} ", deadline)
        answers = {name: f.result() for name, f in probes.items()}
    forwarding = _forwarding(events, target)
    answered = [p.answered_at for p in answers.values() if p.answered_at is not None]
    first = {kind: next((e.at - started for e in events if e.kind == kind), None)
             for kind in ("stopped", "context")}
    return Switch(target, wall, kubectl, kubeconfig.stat().st_mtime - wall, first["stopped"], first["context"], forwarding[-1].at - started,
                  max(answered) - started if len(answered) == len(ports) else None,
                  len(ports) - len(answered),
                  sum(1 for e in forwarding if ports.get(str(e.data["resourceName"])) == e.data["localPort"]),
                  [f"{e.kind}: {e.data.get('message')}" for e in events
                   if e.kind not in ("stopped", "context", "forwarding")])


def measure_switches(children: Children, sim: Sim, folder: Path, rules: Path, ports: dict[str, int],
                     count: int, verbose: bool) -> tuple[float, list[Switch], list[str]]:
    """kubetray on ctx-a, then `count` switches ctx-b, ctx-a, ...; (start-up s, switches, stderr)."""
    kubeconfig = write_contexts(folder / "kubeconfig-switch", sim.url, "ctx-a")
    started = time.monotonic()
    child = start_kubetray(children, "kubetray-switch", rules, kubeconfig, verbose)
    initial = events_until(child, lambda seen: len(_forwarding(seen, "ctx-a")) >= len(ports), 60)
    startup = initial[-1].at - started
    _log(f"ctx-a: {len(ports)} tunnels forwarding after {startup:.2f} s")
    time.sleep(1.0)
    switches = []
    for n in range(count):
        target = "ctx-b" if n % 2 == 0 else "ctx-a"
        switch = switch_once(child, kubeconfig, target, ports, timeout=20.0)
        _log(f"-> {target}: {len(ports)} forwarding after {switch.all_forwarding:.3f} s, answering after "
             f"{_s(switch.all_answering)} (kubectl {switch.kubectl:.3f} s)")
        switches.append(switch)
        time.sleep(0.5)
    stderr = child.stderr_lines()
    children.stop(child)
    return startup, switches, stderr


def reconnect_once(sim: Sim, child: Child, watch: PodWatch, port: int, old: str) -> Reconnect:
    """Delete the serving pod; probe the same local port until an answer names the replacement."""
    drain(child)
    deleted = time.monotonic()
    new = str(sim.control("delete-pod", {"namespace": SOLO, "name": old}))
    probe = probe_until(port, f"pod={new} ", deleted + 10.0)
    ready = watch.ready_at(new, 5.0)
    time.sleep(0.05)  # the `reconnected` line may trail the first answer by a moment
    events = drain(child)
    reconnected = next((e for e in events if e.kind == "reconnected" and e.data.get("pod") == new), None)
    ports_seen = {e.data.get("localPort") for e in events if e.data.get("localPort") is not None}

    def since_ready(at: float | None) -> float | None:
        return None if at is None or ready is None else at - ready

    return Reconnect(old, new, since_ready(probe.answered_at),
                     since_ready(reconnected.at if reconnected else None),
                     None if probe.answered_at is None else probe.answered_at - deleted,
                     probe.answered_at is not None and ports_seen <= {port}, probe.outcomes, probe.attempts,
                     None if probe.answered_at is None or probe.attempt_started is None
                     else probe.answered_at - probe.attempt_started)


def measure_reconnects(children: Children, sim: Sim, folder: Path, rules: Path, count: int,
                       verbose: bool) -> tuple[list[Reconnect], httpload.Latency, list[str]]:
    """kubetray with the solo rule; `count` deletions of the serving pod, one after another; and
    first, for comparison, 50 GET / on new connections through the tunnel at rest."""
    kubeconfig = write_contexts(folder / "kubeconfig-solo", sim.url, f"ctx-{SOLO}")
    child = start_kubetray(children, "kubetray-reconnect", rules, kubeconfig, verbose)
    first = events_until(child, lambda seen: bool(_forwarding(seen, f"ctx-{SOLO}")), 30)[-1]
    port, pod = int(first.data["localPort"]), str(first.data["pod"])
    watch = PodWatch(sim.url, SOLO)
    watch.start()
    results = []
    at_rest = httpload.latency(lambda: httpload.tcp_connect(("127.0.0.1", port)), 50, False,
                               time.perf_counter() + 20.0)
    try:
        for _ in range(count):
            result = reconnect_once(sim, child, watch, port, pod)
            _log(f"{result.old} -> {result.new}: answer {_ms(result.after_ready)} after Ready")
            results.append(result)
            pod = result.new
            time.sleep(0.3)
    finally:
        watch.close()
    stderr = child.stderr_lines()
    children.stop(child)
    return results, at_rest, stderr


def measure_idle(children: Children, sim: Sim, folder: Path, rules: Path, tunnels: int,
                 seconds: float) -> tuple[Snapshot, float]:
    """kubetray with `tunnels` service rules: its reading with all up, and CPU over `seconds`."""
    kubeconfig = write_contexts(folder / "kubeconfig-idle", sim.url, IDLE_CONTEXT)
    child = start_kubetray(children, "kubetray-idle", rules, kubeconfig)
    events_until(child, lambda seen: len(_forwarding(seen, IDLE_CONTEXT)) >= tunnels, 90)
    time.sleep(2.0)  # the last tunnels' start-up work ends
    reading = snapshot(child.pid)
    used = idle_cpu(child.pid, seconds)
    children.stop(child)
    return reading, used


def run(args: argparse.Namespace) -> tuple[Result, dict[str, list[str]]]:
    """All phases against one simulator; every subprocess is stopped on the way out."""
    n = args.per_context
    with Children() as children, tempfile.TemporaryDirectory(prefix="kubetray-resilience-") as name:
        folder = Path(name)
        scenario_path = folder / "scenario.yaml"
        scenario_path.write_text(yaml.safe_dump(scenario(n, args.ready_delay)))
        _log("starting the simulator")
        sim = start_sim(children, folder, tuned=False, scenario=scenario_path)
        switch_base = free_base(args.base_port, n)
        solo_port = free_base(switch_base + n, 1)
        idle_base = free_base(solo_port + 1, 2 * n)
        rules = folder / "rules.yaml"
        write_rules(rules, n, switch_base, solo_port, idle_base)
        ports = {f"svc-{i}": switch_base + i for i in range(n)}
        startup, switches, switch_err = measure_switches(children, sim, folder, rules, ports,
                                                         args.switches, args.verbose)
        reconnects, at_rest, solo_err = measure_reconnects(children, sim, folder, rules, args.reconnects, args.verbose)
        _log("timing kubectl (version --client; port-forward until it forwards)")
        kubectl = time_kubectl(folder / "kubeconfig-solo", f"service/{SOLO}", SOLO)
        reading, used = None, None
        if args.idle_seconds > 0:
            _log(f"idle: {2 * n} tunnels for {args.idle_seconds:.0f} s")
            reading, used = measure_idle(children, sim, folder, rules, 2 * n, args.idle_seconds)
        result = Result(n, startup, switches, reconnects, at_rest, kubectl, args.idle_seconds, reading, used)
        return result, {"switch": switch_err, "reconnect": solo_err}


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _stats(values: list[float | None]) -> list[str]:
    """median, p90, max, n ('n of m' when some are missing), in ms."""
    got = [v for v in values if v is not None]
    if not got:
        return ["-", "-", "-", f"0 of {len(values)}"]
    count = str(len(got)) if len(got) == len(values) else f"{len(got)} of {len(values)}"
    return [_ms(statistics.median(got)), _ms(_quantile(got, 0.9)), _ms(max(got)), count]


def table(r: Result) -> str:
    """The Markdown table: one row per measurement, times in ms (median, p90, max, runs)."""
    sw, rc = r.switches, r.reconnects
    n = r.per_context
    rows: list[list[str]] = [
        ["switch: `kubectl config use-context` own run time", *_stats([s.kubectl for s in sw])],
        ["switch: use-context -> kubeconfig written (its mtime)", *_stats([s.written for s in sw])],
        ["switch: use-context -> first `stopped` event (old tunnels)", *_stats([s.first_stopped for s in sw])],
        ["switch: use-context -> `context` event", *_stats([s.context_event for s in sw])],
        [f"switch: use-context -> {n}th `forwarding` event of the new context",
         *_stats([s.all_forwarding for s in sw])],
        [f"switch: use-context -> first answer from the new namespace through all {n} tunnels",
         *_stats([s.all_answering for s in sw])],
        [f"switch: rules keeping their local port (of {n} per switch)",
         f"{min(s.ports_kept for s in sw)} (min)", "-", "-", str(len(sw))],
        ["reconnect: replacement Ready -> first answer from it on the same local port",
         *_stats([x.after_ready for x in rc])],
        ["reconnect: replacement Ready -> `reconnected` event", *_stats([x.event_after_ready for x in rc])],
        ["reconnect: pod deleted -> first answer from the replacement (includes its ready delay)",
         *_stats([x.after_delete for x in rc])],
        ["for comparison: GET / on a new connection through the same tunnel at rest (p50 / p99)",
         f"{r.at_rest.p50_ms:.1f} ms", f"p99 {r.at_rest.p99_ms:.1f} ms", "-", str(r.at_rest.count)],
        ["reconnect: local port unchanged", f"{sum(x.same_port for x in rc)} of {len(rc)}", "-", "-", str(len(rc))],
        ["reference: kubectl port-forward", "exits when its pod dies (no reconnect)", "-", "-", "-"],
        ["reference: Skaffold: restarts kubectl after 500 ms + kubectl's start-up", *_skaffold(r.kubectl)],
        ["reference: `kubectl version --client` run time", _ms(r.kubectl.version_client), "-", "-", "3"],
    ]
    if r.idle_reading is not None and r.idle_cpu is not None:
        rows += [[f"idle: kubetray CPU over {r.idle_seconds:.0f} s with {2 * n} tunnels",
                  f"{r.idle_cpu:.3f} s", "-", "-", "1"],
                 [f"idle: kubetray with {2 * n} tunnels", r.idle_reading.text(), "-", "-", "1"]]
    lines = ["| measurement | median | p90 | max | runs |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _skaffold(k: KubectlTimes) -> list[str]:
    if k.port_forward_fail is None:
        return [f"- ({k.port_forward_error})", "-", "-", "-"]
    return [f"{_ms(SKAFFOLD_RETRY + k.port_forward_fail)} after the pod dies (500 + {_ms(k.port_forward_fail)})",
            "-", "-", "3"]


def goals(r: Result) -> list[str]:
    """PASS/MISS per goal; the switch and reconnect goals are checked on the worst run (max)."""
    checks: list[tuple[bool, str]] = []
    n = r.per_context
    fwd = [s.all_forwarding for s in r.switches]
    ans = [s.all_answering for s in r.switches]
    checks.append((max(fwd) < SWITCH_GOAL, (f"every switch: {n}th `forwarding` < {SWITCH_GOAL:.0f} s "
                   f"(median {_ms(statistics.median(fwd))}, max {_ms(max(fwd))})")))
    got = [a for a in ans if a is not None]
    checks.append((len(got) == len(ans) and max(got) < SWITCH_GOAL,
                   (f"every switch: all {n} tunnels answer from the new namespace < {SWITCH_GOAL:.0f} s "
                   f"(max {_ms(max(got)) if got else '-'}, {len(ans) - len(got)} switches with a silent tunnel)")))
    after = [x.after_ready for x in r.reconnects]
    got = [a for a in after if a is not None]
    checks.append((len(got) == len(after) and max(got) < RECONNECT_GOAL,
                   (f"every reconnect: answer from the replacement < {RECONNECT_GOAL * 1000:.0f} ms after Ready "
                   f"(median {_ms(statistics.median(got)) if got else '-'}, max {_ms(max(got)) if got else '-'}, "
                   f"{len(after) - len(got)} never answered)")))
    checks.append((all(x.same_port for x in r.reconnects),
                   (f"every reconnect keeps the local port ({sum(x.same_port for x in r.reconnects)} of "
                   f"{len(r.reconnects)})")))
    if r.idle_reading is not None and r.idle_cpu is not None:
        cpu_goal = IDLE_CPU_GOAL * r.idle_seconds / 60
        checks.append((r.idle_cpu < cpu_goal, (f"idle CPU < {cpu_goal:.3f} s over {r.idle_seconds:.0f} s "
                       f"with {2 * n} tunnels: {r.idle_cpu:.3f} s")))
        checks.append((r.idle_reading.rss_mb < RSS_GOAL_MB, (f"RSS with {2 * n} tunnels < {RSS_GOAL_MB:.0f} MB: "
                       f"{r.idle_reading.rss_mb:.1f} MB")))
    return [f"{'PASS' if ok else 'MISS'} {text}" for ok, text in checks]


def details(r: Result, stderr: dict[str, list[str]]) -> list[str]:
    """Per-run lines for the engine's owner: each switch's steps, each reconnect's failed attempts."""
    changed = _log_times(stderr.get("switch", []), "kubeconfig changed")
    out = [("Switches (s from just before kubectl ran: kubectl exited / file written / kubetray saw the "
           "change (with -v only) / first stopped / context / last forwarding / all answering):")]
    for s in r.switches:
        seen = next((t - s.wall for t in changed if t >= s.wall), None)
        out.append(f"- -> {s.target}: {s.kubectl:.3f} / {s.written:.3f} / {_s(seen)} / "
                   f"{_s(s.first_stopped)} / {_s(s.context_event)} / "
                   f"{s.all_forwarding:.3f} / {_s(s.all_answering)}"
                   + (f"; {s.unanswered} silent" if s.unanswered else "")
                   + (f"; other events: {s.others[:3]}" if s.others else ""))
    out.append("Reconnects (ms after Ready: first answer / `reconnected` event; attempts; how long the "
               "answered one waited; failed attempts by kind):")
    for x in r.reconnects:
        out.append(f"- {x.old} -> {x.new}: {_ms(x.after_ready)} / {_ms(x.event_after_ready)}; {x.attempts} "
                   f"attempts; answered one waited {_ms(x.held)}; failed: "
                   + (", ".join(f"{n} {kind}" for kind, n in sorted(x.outcomes.items())) or "none"))
    if r.kubectl.port_forward_error:
        out.append(f"kubectl port-forward against the simulator ended with: `{r.kubectl.port_forward_error}`")
    for phase, lines in stderr.items():
        if lines:
            out.append(f"kubetray ({phase}) stderr: {len(lines)} lines, last: {lines[-1][:200]}")
    return out


def _log_times(lines: list[str], needle: str) -> list[float]:
    """Wall-clock times (time.time()) of kubetray's log lines containing `needle`; its logging
    format starts with asctime, local time with milliseconds."""
    out = []
    for line in lines:
        if needle in line:
            try:
                stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            except ValueError:
                continue
            out.append(stamp.timestamp())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kubetray: context switch, reconnect, idle cost")
    parser.add_argument("--per-context", type=int, default=50, help="rules per context (default 50)")
    parser.add_argument("--switches", type=int, default=6, help="use-context runs, alternating (default 6)")
    parser.add_argument("--reconnects", type=int, default=10, help="pod deletions (default 10)")
    parser.add_argument("--ready-delay", type=float, default=0.5,
                        help="seconds from Running to Ready for the solo pod (default 0.5)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle window; 0 skips it (default 60)")
    parser.add_argument("--base-port", type=int, default=23000, help="first local port (default 23000)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="run kubetray with -v for the switch and reconnect phases (debug log kept)")
    parser.add_argument("--log-dir", type=Path,
                        help="write each phase's kubetray stderr (with -v: its debug log) into this folder")
    args = parser.parse_args(argv)
    if args.per_context < 1 or args.switches < 1 or args.reconnects < 1 or args.idle_seconds < 0:
        parser.error("--per-context, --switches and --reconnects must be >= 1, --idle-seconds >= 0")

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through Children, which stops every subprocess

    signal.signal(signal.SIGTERM, terminate)
    started = time.monotonic()
    try:
        result, stderr = run(args)
    except (RuntimeError, TimeoutError, EOFError, OSError) as exc:
        print(f"bench could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"## Resilience benchmark: {result.per_context} rules per context, {len(result.switches)} switches, "
          f"{len(result.reconnects)} reconnects (ready delay {args.ready_delay} s), loopback, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print(table(result))
    print("\nGoals:")
    print("\n".join(f"- {line}" for line in goals(result)))
    print("\n" + "\n".join(details(result, stderr)))
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
        for phase, lines in stderr.items():
            (args.log_dir / f"kubetray-{phase}.log").write_text("\n".join(lines) + "\n")
        print(f"kubetray's stderr per phase: {args.log_dir}/kubetray-*.log")
    print(f"\n(run took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    run_bench(main)
