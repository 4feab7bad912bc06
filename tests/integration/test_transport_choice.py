"""The user's choice of transport: `--transport`, a rule's `transport:`, and what events and
`kubetray status` say about it, from the command line to the simulator."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from pathlib import Path

import pytest

from trayapp.cli import TRANSPORTS, build_parser
from trayapp.model import EventKind, ResourceType, Rule, Transport
from trayapp.sim import SimCluster
from trayapp.sim.runner import SimThread

from .conftest import start_run
from .test_forwarding import http_get
from .test_headless import Kubetray, sim  # noqa: F401  (the sim fixture)
from .test_status import kubetray

CARRIERS = {Transport.V4: "v4", Transport.SPDY: "spdy", Transport.SPDY_WS: "spdy-websocket"}


def test_the_flag_takes_exactly_the_transports_kubetray_knows(capsys: pytest.CaptureFixture[str]) -> None:
    assert TRANSPORTS == tuple(t.value for t in Transport)
    assert build_parser().parse_args([]).transport == "auto"
    assert build_parser().parse_args(["--transport", "spdy-ws"]).transport == "spdy-ws"
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--transport", "spdy3"])
    assert exited.value.code == 2
    assert "invalid choice: 'spdy3'" in capsys.readouterr().err


def test_a_forced_transport_shows_in_events_and_status(sim: SimThread, tmp_path: Path,  # noqa: F811
                                                       unused_tcp_port: int) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    sim.cluster.write_kubeconfig(kubeconfig, context="sim-ctx")
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"portForward:\n  - {{resourceType: service, resourceName: web, port: 80, "
                     f"localPort: {unused_tcp_port}, name: web}}\n", encoding="utf-8")
    app = Kubetray("--headless", "--json", "--transport", "v4", "--config", str(rules),
                   "--kubeconfig", str(kubeconfig))
    try:
        forwarding = app.wait_for(lambda e: e["event"] == "forwarding")
        assert forwarding["transport"] == "v4"
        with urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/", timeout=10) as answer:
            assert answer.status == 200
        [tunnel] = json.loads(kubetray("status", "--json").stdout)["tunnels"]
        assert (tunnel["transport"], tunnel["transportChoice"]) == ("v4", "v4")
        text = kubetray("status").stdout
        assert f"pod {forwarding['pod']} over v4" in text
        assert app.stop(signal.SIGTERM) == 0
    finally:
        app.kill()


async def test_auto_names_the_transport_once_a_connection_went_through(
    cluster: SimCluster, kubeconfig: Path, unused_tcp_port: int
) -> None:
    run, events = await start_run(kubeconfig, [Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port)])
    try:
        forwarding = await events.wait_for(EventKind.FORWARDING)
        [view] = run.views()
        assert forwarding.transport is None and view.transport is None  # not known before a connection
        status, _, _ = await http_get(unused_tcp_port)
        assert status == 200
        best = Transport.SPDY_WS
        [view] = run.views()
        assert view.transport == best
        assert cluster.api.portforward_sessions[CARRIERS[best]] >= 1
    finally:
        await run.stop()


async def test_a_rules_own_transport_wins_over_the_flag(
    cluster: SimCluster, kubeconfig: Path, unused_tcp_port_factory
) -> None:
    mine, other = unused_tcp_port_factory(), unused_tcp_port_factory()
    rules = [Rule(ResourceType.SERVICE, "web", 80, local_port=mine, transport=Transport.V4),
             Rule(ResourceType.STATEFULSET, "api", 8000, local_port=other)]
    run, events = await start_run(kubeconfig, rules, transport=Transport.SPDY)
    try:
        await events.wait_for(EventKind.FORWARDING, lambda e: e.local_port == mine)
        status, _, _ = await http_get(mine)
        assert status == 200
        views = {view.rule.local_port: view for view in run.views()}
        assert views[mine].transport == Transport.V4
        assert views[other].rule.transport == Transport.SPDY  # the flag, where the rule left it open
    finally:
        await run.stop()


async def test_a_forced_transport_the_server_refuses_fails_the_tunnel_by_name(
    cluster: SimCluster, kubeconfig: Path, unused_tcp_port: int
) -> None:
    cluster.settings.refused_carriers.add("spdy")  # as a front that does not pass SPDY upgrades
    rule = Rule(ResourceType.SERVICE, "web", 80, local_port=unused_tcp_port, transport=Transport.SPDY)
    run, events = await start_run(kubeconfig, [rule])
    try:
        await events.wait_for(EventKind.FORWARDING)
        reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 15) == b""  # the connection is closed, not served
        writer.close()
        failed = await events.wait_for(EventKind.FAILED)
        assert "refused the spdy transport, which this tunnel is set to use" in failed.message
        assert "does not fall back" in failed.message
        assert cluster.api.portforward_sessions["v4"] == 0  # and no v4 was tried behind the user's back
        [view] = run.views()
        assert view.state.value == "failed" and "spdy" in (view.reason or "")
    finally:
        await run.stop()
