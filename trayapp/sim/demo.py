"""The demo: the bundled scenario and kubetray rules (Skaffold's portForward schema) that match it,
for `kubetray --demo` and for end-to-end tests."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from trayapp.sim.cluster import SimCluster
from trayapp.sim.runner import SimThread

DEMO_RULES = """\
portForward:
  - resourceType: service
    resourceName: web
    namespace: default
    port: 80
    localPort: 8080
  - resourceType: statefulset
    resourceName: api
    namespace: default
    port: grpc
    localPort: 9090
  - resourceType: cronjob
    resourceName: report
    namespace: default
    port: 8080
    localPort: 8081
  - resourceType: pod
    resourceName: debug-shell
    namespace: default
    port: 7000
"""


def demo_scenario_text() -> str:
    return resources.files("trayapp.sim").joinpath("scenarios/demo.yaml").read_text(encoding="utf-8")


def demo_scenario_path() -> Path:
    return Path(str(resources.files("trayapp.sim").joinpath("scenarios/demo.yaml")))


def start_demo(kubeconfig: Path, *, context: str = "kubetray-demo", token: str | None = None) -> SimThread:
    """Run the demo cluster in a background thread and write its kubeconfig (for `kubetray --demo`).
    Call `.stop()` on the result when done."""
    thread = SimThread(SimCluster(context, scenario=demo_scenario_text(), token=token)).start()
    thread.cluster.write_kubeconfig(kubeconfig, context=context)
    return thread
