"""Starting what the bench measures: the simulator, kubetray (path b), the stock-client driver
(path c), and finding the pod's real backend address (path a). All in subprocesses, all bounded."""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpload
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

    @property
    def api_port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def control(self, action: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(f"{self.url}/_sim/{action}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
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
              scenario: Path = BENCH_DIR / "scenario.yaml") -> Sim:
    kubeconfig = folder / "kubeconfig"
    child = children.start("sim", [sys.executable, "-m", "trayapp.sim", "serve",
                                   "--scenario", str(scenario),
                                   "--kubeconfig", str(kubeconfig), "--name", "kubetray-bench"], REPO,
                           env=SIM_MALLOC_ENV if tuned else None)
    url = child.expect(lambda line: line.startswith("http://127.0.0.1:"), START_TIMEOUT)
    child.expect(lambda line: line.startswith("kubeconfig:"), START_TIMEOUT)
    return Sim(child, url.strip(), kubeconfig)


@dataclass(frozen=True)
class Kubetray:
    child: Child
    address: tuple[str, int]
    pod: str


def start_kubetray(children: Children, sim: Sim) -> Kubetray:
    """`kubetray --headless --json` as a subprocess; returns once it reports `forwarding`."""
    exe = shutil.which("kubetray", path=str(Path(sys.executable).parent))
    argv = [exe] if exe else [sys.executable, "-m", "trayapp"]
    child = children.start("kubetray", [*argv, "--headless", "--json",
                                        "--config", str(BENCH_DIR / "rules.yaml"),
                                        "--kubeconfig", str(sim.kubeconfig)], REPO)

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
                    str(event.get("pod")))


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

    def __init__(self, children: Children, sim: Sim, pod: str) -> None:
        self.child = children.start("stock-driver", [
            sys.executable, str(BENCH_DIR / "stock_driver.py"), "--kubeconfig", str(sim.kubeconfig),
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
