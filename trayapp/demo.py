"""`--demo`: the built-in simulated cluster, started in its own thread, with rules that match it.

Only this module reaches the simulator; the engine it feeds does not know it is one.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoEnvironment:
    rules: Path
    kubeconfig: Path
    control_url: str  # the simulator's /_sim control API, for tests and the curious


@contextlib.contextmanager
def demo_environment() -> Iterator[DemoEnvironment]:
    from trayapp.sim import SimCluster
    from trayapp.sim.demo import DEMO_RULES, demo_scenario_path
    from trayapp.sim.runner import run_in_thread

    with tempfile.TemporaryDirectory(prefix="kubetray-demo-") as folder:
        rules = Path(folder) / "rules.yaml"
        rules.write_text(DEMO_RULES, encoding="utf-8")
        kubeconfig = Path(folder) / "kubeconfig"
        with run_in_thread(SimCluster("demo", scenario=demo_scenario_path())) as sim:
            sim.cluster.write_kubeconfig(kubeconfig, context="kubetray-demo")
            yield DemoEnvironment(rules, kubeconfig, sim.cluster.url)
