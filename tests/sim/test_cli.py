"""`python -m trayapp.sim serve` in a real subprocess, driven by the control commands."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.sim.helpers import get_json
from trayapp.sim.__main__ import main
from trayapp.sim.demo import DEMO_RULES, demo_scenario_path

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "trayapp.sim", "serve", "--scenario", str(demo_scenario_path()),
         "--kubeconfig", str(kubeconfig), "--token", "demo"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        yield url, kubeconfig
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


def test_serve_and_control(served: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    url, kubeconfig = served
    config = yaml.safe_load(kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == url
    assert config["users"][0]["user"]["token"] == "demo"
    assert config["contexts"][0]["context"]["namespace"] == "default"
    assert (kubeconfig.stat().st_mode & 0o777) == 0o600

    main(["state", "--server", url])
    pods = json.loads(capsys.readouterr().out)
    names = {p["name"] for p in pods}
    assert {"api-0", "debug-shell"} <= names
    web = sorted(n for n in names if n.startswith("web-"))
    assert len(web) == 2 and all(not p["ready"] for p in pods if p["name"] in web)  # readyDelay 1s

    main(["delete-pod", web[0], "--server", url])
    replacement = capsys.readouterr().out.strip()
    assert replacement.startswith("web-") and replacement not in web
    main(["ready", replacement, "--server", url])
    main(["scale", "web", "3", "--server", url])
    main(["state", "--server", url])
    assert len([p for p in json.loads(capsys.readouterr().out) if p["name"].startswith("web-")]) == 3
    with pytest.raises(SystemExit, match="not found"):
        main(["delete-pod", "nope", "--server", url])


async def test_control_api_needs_no_token_but_kube_api_does(served: tuple[str, Path]) -> None:
    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    code, _ = await get_json(port, "/api/v1/pods")
    assert code == 401
    code, body = await get_json(port, "/_sim/state")
    assert code == 200 and body["result"]


def test_demo_rules_match_demo_scenario() -> None:
    rules = yaml.safe_load(DEMO_RULES)["portForward"]
    assert [(r["resourceType"], r["resourceName"]) for r in rules] == [
        ("service", "web"), ("statefulset", "api"), ("cronjob", "report"), ("pod", "debug-shell")]
    scenario = yaml.safe_load(demo_scenario_path().read_text())
    assert {d["name"] for d in scenario["deployments"]} == {"web"}
    assert scenario["services"][0]["ports"][0] == {"name": "http", "port": 80, "targetPort": "http"}
