"""`kubetray --demo --headless`: the newcomer's first run, as a real process."""

from __future__ import annotations

import signal
import urllib.request

from .test_headless import Kubetray


def test_demo_forwards_all_four_rules_and_answers() -> None:
    app = Kubetray("--demo", "--headless", "--json")
    try:
        forwarding: dict[str, dict] = {}
        while len(forwarding) < 4:
            event = app.wait_for(lambda e: e["event"] in ("forwarding", "failed"), timeout=30)
            assert event["event"] == "forwarding", event["message"]
            forwarding[event["resourceName"]] = event
        assert set(forwarding) == {"web", "api", "report", "debug-shell"}
        web = forwarding["web"]
        with urllib.request.urlopen(f"http://127.0.0.1:{web['localPort']}/", timeout=10) as answer:
            assert answer.headers["X-Pod"] == web["pod"]
        report = forwarding["report"]
        with urllib.request.urlopen(f"http://127.0.0.1:{report['localPort']}/", timeout=10) as answer:
            assert answer.headers["X-Pod"].startswith("report-")
        assert app.stop(signal.SIGINT) == 0
    finally:
        app.kill()
