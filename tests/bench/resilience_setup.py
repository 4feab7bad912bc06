"""What bench_resilience.py sets up and watches: the generated scenario, kubeconfig and rules files,
kubetray as a subprocess with time-stamped events, an HTTP prober, a pod watch on the simulator's
API and kubectl's own start-up time. Standard library plus the project's simulator helpers.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpload
from procs import Child, Children
from setup_paths import REPO

from trayapp.sim.kubeconfig import ClusterEntry, write_kubeconfig

SWITCH_NAMESPACES = {"ctx-a": "team-a", "ctx-b": "team-b"}
SOLO = "solo"  # the reconnect phase's namespace, deployment and service
IDLE_CONTEXT = "ctx-idle"
HTTP_PORT = 8080  # container port of every http backend; services expose it as 80


def scenario(per_context: int, ready_delay: float) -> dict[str, Any]:
    """`per_context` services svc-N in team-a and team-b, each selecting one bare pod svc-N (bare
    pods: the simulator's controllers re-list every workload's objects after each object it loads,
    so 100 deployments take minutes to load), and one `solo` deployment (one replica, Ready
    `ready_delay` s after it runs) behind a `solo` service."""
    pods: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    for ns in SWITCH_NAMESPACES.values():
        for n in range(per_context):
            pods.append({"name": f"svc-{n}", "namespace": ns,
                         "ports": [{"name": "http", "containerPort": HTTP_PORT}]})
            services.append({"name": f"svc-{n}", "namespace": ns,
                             "ports": [{"name": "http", "port": 80, "targetPort": "http"}]})
    deployment = {"name": SOLO, "namespace": SOLO, "replicas": 1, "readyDelay": ready_delay,
                  "ports": [{"name": "http", "containerPort": HTTP_PORT}]}
    services.append({"name": SOLO, "namespace": SOLO,
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]})
    return {"pods": pods, "deployments": [deployment], "services": services}


def write_contexts(path: Path, server: str, current: str) -> Path:
    """One kubeconfig with ctx-a, ctx-b, ctx-solo and ctx-idle, all on the same simulated cluster
    (a cluster and user entry per context, the same server), each with its own namespace."""
    spaces = {**SWITCH_NAMESPACES, f"ctx-{SOLO}": SOLO, IDLE_CONTEXT: "default"}
    entries = [ClusterEntry(context=name, server=server, namespace=ns) for name, ns in spaces.items()]
    return write_kubeconfig(path, entries, current)


def _rule(name: str, ns: str, local_port: int) -> list[str]:
    return ["      - resourceType: service", f"        resourceName: {name}", f"        namespace: {ns}",
            "        port: 80", f"        localPort: {local_port}"]


def write_rules(path: Path, per_context: int, switch_base: int, solo_port: int, idle_base: int) -> None:
    """The rules file: per_context service rules for ctx-a and the same names and local ports for
    ctx-b (in its own namespace), the solo rule for ctx-solo, and 2 x per_context for ctx-idle."""
    lines = ["# Written by bench_resilience.py.", "contexts:"]
    for ctx, ns in SWITCH_NAMESPACES.items():
        lines += [f"  {ctx}:", "    portForward:"]
        for n in range(per_context):
            lines += _rule(f"svc-{n}", ns, switch_base + n)
    lines += [f"  ctx-{SOLO}:", "    portForward:", *_rule(SOLO, SOLO, solo_port)]
    lines += [f"  {IDLE_CONTEXT}:", "    portForward:"]
    for i, ns in enumerate(SWITCH_NAMESPACES.values()):
        for n in range(per_context):
            lines += _rule(f"svc-{n}", ns, idle_base + i * per_context + n)
    path.write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class Event:
    """One of kubetray's JSON events and when the bench read it (monotonic seconds)."""

    at: float
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.data.get("event"))


def start_kubetray(children: Children, name: str, rules: Path, kubeconfig: Path,
                   verbose: bool = False) -> Child:
    """`kubetray --headless --json` in its own process (stderr kept; `-v` adds its debug log)."""
    exe = shutil.which("kubetray", path=str(Path(sys.executable).parent))
    argv = [exe] if exe else [sys.executable, "-m", "trayapp"]
    argv += ["--headless", "--json", "--config", str(rules), "--kubeconfig", str(kubeconfig)]
    return children.start(name, [*argv, "-v"] if verbose else argv, REPO)


def next_event(child: Child, timeout: float) -> Event:
    """kubetray's next JSON event (other stdout lines are skipped); TimeoutError or EOFError."""
    line = child.expect(lambda text: text.startswith("{"), timeout)
    return Event(getattr(line, "at", time.monotonic()), json.loads(line))


def events_until(child: Child, done: Any, timeout: float) -> list[Event]:
    """Events until `done(events so far)` is true; TimeoutError (with what came) after `timeout`."""
    deadline = time.monotonic() + timeout
    seen: list[Event] = []
    while not done(seen):
        left = deadline - time.monotonic()
        try:
            seen.append(next_event(child, max(0.01, left)))
        except TimeoutError:
            kinds = ", ".join(f"{e.kind}({e.data.get('resourceName') or e.data.get('message')})"
                              for e in seen[-8:])
            raise TimeoutError(f"{child.name}: not done within {timeout:.0f} s; last events: {kinds}") from None
    return seen


def drain(child: Child) -> list[Event]:
    """Events already printed and not read yet."""
    out = []
    while not child.lines.empty():
        line = child.lines.get_nowait()
        if line is None:
            break
        if line.startswith("{"):
            out.append(Event(getattr(line, "at", time.monotonic()), json.loads(line)))
    return out


@dataclass
class Probe:
    """What one prober saw until an answer named what it waited for."""

    answered_at: float | None = None
    attempt_started: float | None = None  # when the answered attempt connected (monotonic)
    attempts: int = 0
    body: str = ""
    outcomes: dict[str, int] = field(default_factory=dict)  # failed attempts by kind

    def count(self, kind: str) -> None:
        self.outcomes[kind] = self.outcomes.get(kind, 0) + 1


def _attempt(port: int, timeout: float) -> str:
    """One GET / on a new connection; the body, or an exception."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return httpload.small_get(conn, time.perf_counter() + timeout).decode(errors="replace")


def probe_until(port: int, wanted: str, deadline: float, interval: float = 0.005,
                attempt_timeout: float = 2.0) -> Probe:
    """GET / on `port`, a new connection each time, every `interval` s, until the body contains
    `wanted` (e.g. `pod=web-x ` or `namespace=team-b `) or the monotonic `deadline` passes."""
    probe = Probe()
    while time.monotonic() < deadline:
        started = time.monotonic()
        probe.attempts += 1
        try:
            body = _attempt(port, min(attempt_timeout, max(0.05, deadline - time.monotonic())))
        except ConnectionRefusedError:
            probe.count("refused")
        except (httpload.CheckFailed, OSError) as exc:
            probe.count(_failure_kind(exc))
        else:
            if wanted in body:
                probe.answered_at, probe.attempt_started, probe.body = time.monotonic(), started, body
                return probe
            probe.count("answer from the old pod/namespace")
        time.sleep(interval)
    return probe


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, httpload.CheckFailed) and "closed before a response head" in str(exc):
        return "accepted, then closed without an answer"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "accepted, no answer in time"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    return type(exc).__name__


class PodWatch:
    """Watches one namespace's pods on the simulator (GET ...?watch=1, JSON lines) in a thread and
    notes when the bench first saw each pod Ready (monotonic seconds, at receipt)."""

    def __init__(self, server: str, namespace: str) -> None:
        url = urlsplit(server)
        self._conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=None)
        self._path = f"/api/v1/namespaces/{namespace}/pods?watch=1"
        self._ready: dict[str, float] = {}
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"bench:watch:{namespace}", daemon=True)

    def start(self) -> None:
        self._conn.request("GET", self._path)
        response = self._conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"pod watch answered {response.status}")
        self._response = response
        self._thread.start()

    def _run(self) -> None:
        try:
            self._read()
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            return  # close() cut the socket under the reader, or the simulator went away

    def _read(self) -> None:
        for raw in iter(self._response.readline, b""):
            at = time.monotonic()
            event = json.loads(raw)
            pod = event.get("object", {})
            if event.get("type") in ("ADDED", "MODIFIED") and _pod_ready(pod):
                with self._changed:
                    self._ready.setdefault(pod["metadata"]["name"], at)
                    self._changed.notify_all()

    def ready_at(self, pod: str, timeout: float) -> float | None:
        """When `pod` was first seen Ready, waiting up to `timeout` s for it."""
        with self._changed:
            self._changed.wait_for(lambda: pod in self._ready, timeout)
            return self._ready.get(pod)

    def close(self) -> None:
        """Cut the watch's socket; the reader thread sees the end and returns."""
        try:
            if self._conn.sock is not None:
                self._conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(2.0)


def _pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@dataclass(frozen=True)
class KubectlTimes:
    """kubectl's own run times, medians in seconds (None where kubectl is missing)."""

    version_client: float | None
    port_forward_fail: float | None
    port_forward_error: str


def time_kubectl(kubeconfig: Path, target: str, namespace: str, runs: int = 3) -> KubectlTimes:
    """Median wall time of `kubectl version --client`, and of `kubectl port-forward TARGET :80`
    against the simulator until it says it is forwarding (or exits with an error)."""
    kubectl = shutil.which("kubectl") or "/usr/bin/kubectl"
    if not Path(kubectl).exists():
        return KubectlTimes(None, None, "kubectl not found")
    version = _median_run([kubectl, "version", "--client"], runs)[0]
    pf, error = _median_until_forwarding([kubectl, "--kubeconfig", str(kubeconfig), "-n", namespace,
                                          "port-forward", "--address", "127.0.0.1", target, ":80"], runs)
    return KubectlTimes(version, pf, error)


def _median_until_forwarding(argv: list[str], runs: int) -> tuple[float | None, str]:
    """Median wall time of `runs` starts until kubectl prints "Forwarding from" (each bounded to
    15 s; kubectl is stopped then), and the error line of a run that failed instead."""
    times: list[float] = []
    for _ in range(runs):
        started = time.monotonic()
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = child.stdout.readline() if child.stdout else ""
            if "Forwarding from" not in line:
                child.wait(15)
                err = child.stderr.read() if child.stderr else ""
                return None, next((e for e in err.splitlines() if "error" in e.lower()), "kubectl exited")
            times.append(time.monotonic() - started)
        except subprocess.TimeoutExpired:
            return None, "did not start forwarding within 15 s"
        finally:
            child.kill()
            child.wait()
    return statistics.median(times), ""


def _median_run(argv: list[str], runs: int) -> tuple[float | None, str]:
    """Median wall time of `runs` runs (each bounded to 15 s) and the last run's error line."""
    times: list[float] = []
    error = ""
    for _ in range(runs):
        started = time.monotonic()
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
        except subprocess.TimeoutExpired:
            return None, "did not exit within 15 s"
        times.append(time.monotonic() - started)
        error = next((line for line in done.stderr.splitlines() if "error" in line.lower()), "")
    return statistics.median(times), error


def run_timed(argv: Iterable[str], env: dict[str, str], timeout: float = 10.0) -> tuple[float, float]:
    """Run a command; (monotonic start, wall seconds). Raises if it fails."""
    started = time.monotonic()
    subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout, check=True)
    return started, time.monotonic() - started
