"""The simulator checked by a client we did not write: the official `kubernetes` Python client,
configured from the kubeconfig the simulator writes, with the simulator in its thread runner."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import portforward

from tests.sim.conftest import SCENARIO
from trayapp.sim import SimCluster, TlsConfig
from trayapp.sim.runner import SimThread, Simulator


def api_client(kubeconfig: Path, context: str | None = None) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), context=context, client_configuration=configuration)
    return client.ApiClient(configuration)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[SimThread, client.ApiClient]]:
    thread = SimThread(SimCluster("kind-sim", scenario=SCENARIO, token="t0ken")).start()
    try:
        kubeconfig = thread.cluster.write_kubeconfig(tmp_path / "kubeconfig", namespace="default")
        with api_client(kubeconfig) as api:
            yield thread, api
    finally:
        thread.stop()


def test_list_pods_and_deployments(sim: tuple[SimThread, client.ApiClient]) -> None:
    _, api = sim
    pods = client.CoreV1Api(api).list_namespaced_pod("default", label_selector="app=web")
    assert len(pods.items) == 2
    assert all(p.status.phase == "Running" for p in pods.items)
    assert pods.items[0].metadata.owner_references[0].kind == "ReplicaSet"
    assert pods.items[0].spec.containers[0].ports[0].name == "http"
    ready = next(c for c in pods.items[0].status.conditions if c.type == "Ready")
    assert ready.status == "True" and ready.last_transition_time is not None
    deps = client.AppsV1Api(api).list_namespaced_deployment("default")
    assert [d.metadata.name for d in deps.items] == ["web"]
    assert deps.items[0].status.ready_replicas == 2
    sts = client.AppsV1Api(api).read_namespaced_stateful_set("api", "default")
    assert sts.status.ready_replicas == 1
    svc = client.CoreV1Api(api).read_namespaced_service("web", "default")
    assert svc.spec.ports[0].target_port == "http"
    eps = client.CoreV1Api(api).read_namespaced_endpoints("web", "default")
    assert len(eps.subsets[0].addresses) == 2 and eps.subsets[0].ports[0].port == 8080
    jobs = client.BatchV1Api(api).list_namespaced_job("default")
    assert jobs.items[0].metadata.owner_references[0].name == "report"
    with pytest.raises(ApiException) as info:
        client.CoreV1Api(api).read_namespaced_pod("missing", "default")
    assert info.value.status == 404


def test_watch_sees_replacement(sim: tuple[SimThread, client.ApiClient]) -> None:
    thread, api = sim
    core = client.CoreV1Api(api)
    listed = core.list_namespaced_pod("default", label_selector="app=web")
    victim = listed.items[0].metadata.name
    replacement = thread.cluster.delete_pod("default", victim)
    thread.cluster.set_ready("default", replacement, True)
    seen: list[tuple[str, str]] = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_pod, namespace="default", label_selector="app=web",
                          resource_version=listed.metadata.resource_version, timeout_seconds=2):
        seen.append((event["type"], event["object"].metadata.name))
        if ("DELETED", victim) in seen and ("ADDED", replacement) in seen:
            w.stop()
    assert ("DELETED", victim) in seen and ("ADDED", replacement) in seen


def test_portforward_http(sim: tuple[SimThread, client.ApiClient]) -> None:
    thread, api = sim
    core = client.CoreV1Api(api)
    pod = thread.cluster.pod_names(label_selector="app=web")[0]
    pf = portforward(core.connect_get_namespaced_pod_portforward, pod, "default", ports="8080")
    sock = pf.socket(8080)
    sock.setblocking(True)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    reply = b""
    while chunk := sock.recv(4096):
        reply += chunk
    sock.close()
    assert reply.startswith(b"HTTP/1.1 200")
    assert f"pod={pod} namespace=default port=8080".encode() in reply
    assert pf.error(8080) is None


def test_portforward_refused_port(sim: tuple[SimThread, client.ApiClient]) -> None:
    _, api = sim
    core = client.CoreV1Api(api)
    pf = portforward(core.connect_get_namespaced_pod_portforward, "debug-shell", "default", ports="7002")
    sock = pf.socket(7002)
    sock.setblocking(True)
    assert sock.recv(10) == b""
    error = pf.error(7002)
    assert error is not None and "connection refused" in error


def test_wrong_token_is_401(sim: tuple[SimThread, client.ApiClient]) -> None:
    thread, api = sim
    thread.cluster.set_token("rotated")
    with pytest.raises(ApiException) as info:
        client.CoreV1Api(api).list_namespace()
    assert info.value.status == 401


def test_tls_with_client_certificates(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("kubetray-user")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(ctx)
    ca.configure_trust(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    tls = TlsConfig(ctx, ca.cert_pem.bytes(), client_cert.cert_chain_pems[0].bytes(),
                    client_cert.private_key_pem.bytes())
    with SimThread(SimCluster("tls", scenario=SCENARIO, tls=tls)) as thread:
        assert thread.cluster.url.startswith("https://")
        kubeconfig = thread.cluster.write_kubeconfig(tmp_path / "kubeconfig")
        assert "certificate-authority-data" in kubeconfig.read_text()
        with api_client(kubeconfig) as api:
            names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
            assert "default" in names
            pod = thread.cluster.pod_names(label_selector="app=web")[0]
            pf = portforward(client.CoreV1Api(api).connect_get_namespaced_pod_portforward, pod, "default",
                             ports="8080")
            sock = pf.socket(8080)
            sock.setblocking(True)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
            assert f"pod={pod}".encode() in reply


def test_two_clusters_one_kubeconfig(tmp_path: Path) -> None:
    simulator = Simulator({"dev": SimCluster("dev", scenario=SCENARIO),
                           "prod": SimCluster("prod", scenario="pods: [{name: lonely}]")})
    with SimThread(simulator) as thread:
        kubeconfig = thread.call(simulator.write_kubeconfig, tmp_path / "kc", current="dev")
        contexts, current = config.list_kube_config_contexts(config_file=str(kubeconfig))
        assert [c["name"] for c in contexts] == ["dev", "prod"] and current["name"] == "dev"
        with api_client(kubeconfig, "prod") as api:
            names = [p.metadata.name for p in client.CoreV1Api(api).list_namespaced_pod("default").items]
            assert names == ["lonely"]


def test_demo_cluster(tmp_path: Path) -> None:
    from trayapp.sim.demo import start_demo

    thread = start_demo(tmp_path / "kc")
    try:
        with api_client(tmp_path / "kc") as api:
            core = client.CoreV1Api(api)
            names = {p.metadata.name for p in core.list_namespaced_pod("default").items}
            assert {"api-0", "debug-shell"} <= names
            assert len([n for n in names if n.startswith("web-")]) == 2
            assert len([n for n in names if n.startswith("report-")]) == 1
            svc = core.read_namespaced_service("web", "default")
            assert (svc.spec.ports[0].port, svc.spec.ports[0].target_port) == (80, "http")
    finally:
        thread.stop()
