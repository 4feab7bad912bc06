"""Starting what the bench measures: the simulator, the delay proxy that makes its API far away,
kubetray, the stock-client driver, kubectl, and finding the pod's real backend address (direct
TCP). All in subprocesses, all bounded."""

from __future__ import annotations

import base64
import json
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpload
import yaml
from procs import Child, Children, listening_ports

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent.parent
NAMESPACE = "default"
DEPLOYMENT = "bench"
POD_PORT = 8080
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Sim:
    child: Child
    url: str
    kubeconfig: Path
    tls: ssl.SSLContext | None = None  # trusts the simulator's throwaway CA when it serves HTTPS

    @property
    def api_port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def control(self, action: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(f"{self.url}/_sim/{action}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5, context=self.tls) as response:
            return json.loads(response.read())["result"]

    def ready_pod(self) -> str:
        pods = [p for p in self.control("state", {"namespace": NAMESPACE})
                if p["ready"] and p["name"].startswith(f"{DEPLOYMENT}-")]
        if len(pods) != 1:
            raise RuntimeError(f"expected one ready {DEPLOYMENT} pod, the simulator has {pods}")
        return str(pods[0]["name"])


# glibc serves each >128 KiB allocation from a fresh mmap and trims the heap eagerly, so a Python
# process moving 256 KiB bytes objects page-faults on nearly every page it copies (~450,000 minor
# faults per GiB in the simulator). These keep such buffers in the heap; only the simulator gets
# them, the forwarders run as users run them.
SIM_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(4 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}


def start_sim(children: Children, folder: Path, tuned: bool = True,
              scenario: Path = BENCH_DIR / "scenario.yaml", *, tls: bool = False,
              token: str | None = None) -> Sim:
    """The simulator in its own process; with `tls` it serves HTTPS (a throwaway CA the written
    kubeconfig trusts), with `token` it asks every API request for that bearer token."""
    kubeconfig = folder / "kubeconfig"
    extra = (["--tls"] if tls else []) + ([f"--token={token}"] if token else [])  # may start with "-"
    child = children.start("sim", [sys.executable, "-m", "trayapp.sim", "serve",
                                   "--scenario", str(scenario), *extra,
                                   "--kubeconfig", str(kubeconfig), "--name", "kubetray-bench"], REPO,
                           env=SIM_MALLOC_ENV if tuned else None)
    url = child.expect(lambda line: line.startswith(("http://127.0.0.1:", "https://127.0.0.1:")),
                       START_TIMEOUT)
    child.expect(lambda line: line.startswith("kubeconfig:"), START_TIMEOUT)
    context = None
    if tls:
        cluster = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]
        context = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    return Sim(child, url.strip(), kubeconfig, context)


def start_delay_proxy(children: Children, upstream_port: int, rtt: float, name: str) -> tuple[Child, int]:
    """`python -m trayapp.sim.latency` in its own process (its CPU is nobody's path's): the
    simulator's API made `rtt` seconds away. Returns it and the port to use instead of the API's."""
    child = children.start(name, [sys.executable, "-m", "trayapp.sim.latency", "--upstream",
                                  f"127.0.0.1:{upstream_port}", "--rtt", str(rtt)], REPO)
    line = child.expect(lambda text: text.startswith("listening 127.0.0.1:"), START_TIMEOUT)
    return child, int(line.rsplit(":", 1)[1])


def far_kubeconfig(sim: Sim, port: int, path: Path) -> Path:
    """A copy of the simulator's kubeconfig whose server is the delay proxy on `port` (same
    127.0.0.1, so the certificate still matches)."""
    text = sim.kubeconfig.read_text().replace(f"127.0.0.1:{sim.api_port}", f"127.0.0.1:{port}")
    path.write_text(text)
    return path


@dataclass(frozen=True)
class Kubetray:
    child: Child
    address: tuple[str, int]
    pod: str
    transport: str | None  # as its `forwarding` event names it, when it does


def kubetray_argv() -> list[str]:
    exe = shutil.which("kubetray", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "trayapp"]


def kubetray_transports() -> list[str]:
    """The transports `kubetray --transport` offers in this build; [] when it has no such flag."""
    text = subprocess.run([*kubetray_argv(), "--help"], capture_output=True, text=True, cwd=REPO,
                          timeout=60, check=False).stdout
    if "--transport" not in text:
        return []
    wanted = ["spdy-ws", "spdy", "v4"]
    return [name for name in wanted if name in text]


def start_kubetray(children: Children, sim: Sim, kubeconfig: Path | None = None,
                   transport: str | None = None, name: str = "kubetray",
                   runtime: Path | None = None) -> Kubetray:
    """`kubetray --headless --json` as a subprocess; returns once it reports `forwarding`.
    `runtime` (a new folder) becomes its XDG_RUNTIME_DIR, so its single-instance lock is its own
    and several kubetrays can run side by side."""
    extra = ["--transport", transport] if transport else []
    env = None
    if runtime is not None:
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = {"XDG_RUNTIME_DIR": str(runtime)}
    child = children.start(name, [*kubetray_argv(), "--headless", "--json", *extra,
                                  "--config", str(BENCH_DIR / "rules.yaml"),
                                  "--kubeconfig", str(kubeconfig or sim.kubeconfig)], REPO, env=env)

    def forwarding(line: str) -> bool:
        try:
            event = json.loads(line)
        except ValueError:
            return False
        if event.get("event") == "failed":
            raise RuntimeError(f"kubetray failed: {event.get('message')}")
        return bool(event.get("event") == "forwarding")

    event = json.loads(child.expect(forwarding, START_TIMEOUT))
    return Kubetray(child, (str(event.get("address") or "127.0.0.1"), int(event["localPort"])),
                    str(event.get("pod")), event.get("transport"))


_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ")


@dataclass(frozen=True)
class Kubectl:
    child: Child
    address: tuple[str, int]


def start_kubectl(children: Children, kubeconfig: Path, websockets: bool, name: str) -> Kubectl:
    """`kubectl port-forward deployment/bench :8080` with KUBECTL_PORT_FORWARD_WEBSOCKETS set;
    RuntimeError with kubectl's own words if it does not start forwarding."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl is not installed here")
    env = {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "true" if websockets else "false"}
    child = children.start(name, [kubectl, "--kubeconfig", str(kubeconfig), "port-forward",
                                  "--address", "127.0.0.1", f"deployment/{DEPLOYMENT}", f":{POD_PORT}"],
                           REPO, env=env)
    try:
        line = child.expect(lambda text: _FORWARDING.search(text) is not None, START_TIMEOUT)
    except (TimeoutError, EOFError):
        time.sleep(0.2)  # let kubectl's last stderr line land in the file
        lines = child.stderr_lines()
        children.stop(child)
        raise RuntimeError(f"kubectl did not start forwarding: {lines[-1] if lines else '(no output)'}"
                           ) from None
    match = _FORWARDING.search(line)
    assert match is not None
    return Kubectl(child, ("127.0.0.1", int(match.group(1))))


def find_backend(sim: Sim, pod: str) -> tuple[str, int]:
    """The pod's real listener: the simulator's loopback ports other than its API, checked by
    asking each `GET /` (the control API does not report backend addresses)."""
    seen = []
    for port in sorted(listening_ports(sim.child.pid) - {sim.api_port}):
        conn = httpload.tcp_connect(("127.0.0.1", port))
        conn.settimeout(5.0)
        try:
            body = httpload.small_get(conn, time.perf_counter() + 5.0)
        except (httpload.CheckFailed, OSError):
            continue
        finally:
            conn.close()
        seen.append(body)
        if body.startswith(f"pod={pod} ".encode()) and f"port={POD_PORT}".encode() in body:
            return ("127.0.0.1", port)
    raise RuntimeError(f"no backend of pod {pod} port {POD_PORT} among the simulator's listeners: {seen}")


class StockDriver:
    """Path (c)'s process: sends it one command at a time, waits (bounded) for its answer."""

    def __init__(self, children: Children, kubeconfig: Path, pod: str, name: str = "stock-driver") -> None:
        self.child = children.start(name, [
            sys.executable, str(BENCH_DIR / "stock_driver.py"), "--kubeconfig", str(kubeconfig),
            "--namespace", NAMESPACE, "--pod", pod, "--port", str(POD_PORT)], REPO, stdin=True)
        self.child.expect(lambda line: line.startswith("{"), START_TIMEOUT)
        self.broken: str | None = None

    def run(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        """The driver's answer; CheckFailed if it failed, timed out or died earlier."""
        if self.broken is not None:
            raise httpload.CheckFailed(self.broken)
        self.child.send(json.dumps({**command, "timeout": timeout}))
        try:
            answer: dict[str, Any] = json.loads(self.child.expect(lambda line: line.startswith("{"),
                                                                  timeout + 10))
        except (TimeoutError, EOFError) as exc:
            self.broken = f"the driver stopped answering earlier ({exc})"
            self.child.proc.kill()
            raise httpload.CheckFailed(str(exc)) from None
        if not answer.get("ok"):
            raise httpload.CheckFailed(str(answer.get("error")))
        return answer
