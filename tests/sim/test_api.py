"""The API server over real sockets: discovery, list/get, selectors, watches, 410, auth."""

from __future__ import annotations

import asyncio

from tests.sim.helpers import RawClient, get_json
from trayapp.sim import SimCluster


async def test_discovery(cluster: SimCluster) -> None:
    code, version = await get_json(cluster.port, "/version")
    assert code == 200 and version["major"] == "1"
    _, apis = await get_json(cluster.port, "/apis")
    assert apis["kind"] == "APIGroupList"
    assert {g["name"] for g in apis["groups"]} == {"apps", "batch"}
    _, core = await get_json(cluster.port, "/api/v1")
    names = {r["name"] for r in core["resources"]}
    assert {"pods", "pods/portforward", "services", "endpoints", "namespaces",
            "replicationcontrollers"} <= names
    _, apps = await get_json(cluster.port, "/apis/apps/v1")
    assert {r["name"] for r in apps["resources"]} >= {"deployments", "replicasets", "statefulsets", "daemonsets"}
    _, batch = await get_json(cluster.port, "/apis/batch/v1")
    assert {r["name"] for r in batch["resources"]} == {"jobs", "cronjobs"}


async def test_list_and_get(cluster: SimCluster) -> None:
    code, pods = await get_json(cluster.port, "/api/v1/namespaces/default/pods")
    assert code == 200 and pods["kind"] == "PodList"
    assert int(pods["metadata"]["resourceVersion"]) == cluster.resource_version
    names = [p["metadata"]["name"] for p in pods["items"]]
    assert "api-0" in names and "debug-shell" in names
    code, pod = await get_json(cluster.port, "/api/v1/namespaces/default/pods/api-0")
    assert code == 200 and pod["kind"] == "Pod" and pod["status"]["phase"] == "Running"
    assert pod["metadata"]["uid"] and pod["metadata"]["creationTimestamp"].endswith("Z")
    code, missing = await get_json(cluster.port, "/api/v1/namespaces/default/pods/nope")
    assert code == 404 and missing["kind"] == "Status" and missing["reason"] == "NotFound"
    code, deps = await get_json(cluster.port, "/apis/apps/v1/namespaces/default/deployments")
    assert deps["kind"] == "DeploymentList" and deps["items"][0]["status"]["readyReplicas"] == 2
    code, every = await get_json(cluster.port, "/api/v1/pods")
    assert len(every["items"]) == len(pods["items"])
    code, cronjobs = await get_json(cluster.port, "/apis/batch/v1/namespaces/default/cronjobs")
    assert cronjobs["items"][0]["metadata"]["name"] == "report"
    code, ns = await get_json(cluster.port, "/api/v1/namespaces/default")
    assert code == 200 and ns["kind"] == "Namespace"


async def test_selectors(cluster: SimCluster) -> None:
    base = "/api/v1/namespaces/default/pods"
    _, web = await get_json(cluster.port, f"{base}?labelSelector=app%3Dweb,tier%20in%20(front)")
    assert len(web["items"]) == 2
    _, notweb = await get_json(cluster.port, f"{base}?labelSelector=app!%3Dweb,!job-name")
    assert sorted(p["metadata"]["name"] for p in notweb["items"]) == ["api-0", "debug-shell"]
    _, one = await get_json(cluster.port, f"{base}?fieldSelector=metadata.name%3Dapi-0")
    assert [p["metadata"]["name"] for p in one["items"]] == ["api-0"]
    _, none = await get_json(cluster.port, "/api/v1/pods?fieldSelector=metadata.namespace%3Dkube-system")
    assert none["items"] == []
    code, bad = await get_json(cluster.port, f"{base}?labelSelector=app%20in%20web")
    assert code == 400 and bad["reason"] == "BadRequest"


async def test_watch_replays_then_streams(cluster: SimCluster) -> None:
    _, pods = await get_json(cluster.port, "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")
    rv = pods["metadata"]["resourceVersion"]
    victim = pods["items"][0]["metadata"]["name"]
    replacement = cluster.delete_pod("default", victim)
    assert replacement and replacement != victim
    client = await RawClient.connect(cluster.port)
    response = await client.send(
        "GET", f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&labelSelector=app%3Dweb")
    assert response.status_code == 200
    assert (b"transfer-encoding", b"chunked") in response.headers
    events = client.lines()
    seen = [(e["type"], e["object"]["metadata"]["name"]) for e in [await events.__anext__() for _ in range(2)]]
    assert ("DELETED", victim) in seen and ("ADDED", replacement) in seen
    cluster.set_ready("default", replacement, False)
    event = await asyncio.wait_for(events.__anext__(), 5)
    assert event["type"] == "MODIFIED" and event["object"]["metadata"]["name"] == replacement
    assert int(event["object"]["metadata"]["resourceVersion"]) > int(rv)
    await client.close()


async def test_watch_from_zero_lists_and_times_out(cluster: SimCluster) -> None:
    client = await RawClient.connect(cluster.port)
    await client.send("GET", "/apis/apps/v1/namespaces/default/deployments?watch=true&timeoutSeconds=1")
    events = [e async for e in client.lines()]  # ends by itself after timeoutSeconds
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "web")]
    # The connection stays usable after a watch ends normally.
    response = await client.send("GET", "/version")
    assert response.status_code == 200
    await client.close()


async def test_watch_gone_after_compaction(cluster: SimCluster) -> None:
    old = cluster.resource_version
    cluster.delete_pod("default", "api-0")
    cluster.compact_history()
    client = await RawClient.connect(cluster.port)
    await client.send("GET", f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={old}")
    events = [e async for e in client.lines()]
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"
    await client.close()


async def test_watch_bookmarks(cluster: SimCluster) -> None:
    client = await RawClient.connect(cluster.port)
    rv = cluster.resource_version
    await client.send("GET", f"/api/v1/namespaces/default/services?watch=1&resourceVersion={rv}"
                             "&allowWatchBookmarks=true&timeoutSeconds=1")
    events = [e async for e in client.lines()]
    assert events and all(e["type"] == "BOOKMARK" for e in events)
    assert events[0]["object"]["metadata"]["resourceVersion"] == str(cluster.resource_version)
    await client.close()


async def test_watch_sees_selector_exit_as_deleted(cluster: SimCluster) -> None:
    client = await RawClient.connect(cluster.port)
    rv = cluster.resource_version
    await client.send("GET", f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}"
                             "&fieldSelector=status.phase%3DRunning")
    events = client.lines()
    cluster.set_phase("default", "debug-shell", "Succeeded")
    event = await asyncio.wait_for(events.__anext__(), 5)
    assert event["type"] == "DELETED" and event["object"]["metadata"]["name"] == "debug-shell"
    await client.close()


async def test_bearer_token() -> None:
    async with SimCluster(token="s3cret") as c:
        code, body = await get_json(c.port, "/api/v1/namespaces")
        assert code == 401 and body["reason"] == "Unauthorized" and body["kind"] == "Status"
        code, _ = await get_json(c.port, "/api/v1/namespaces", {"Authorization": "Bearer s3cret"})
        assert code == 200
        c.set_token("rotated")
        code, _ = await get_json(c.port, "/api/v1/namespaces", {"Authorization": "Bearer s3cret"})
        assert code == 401
        code, _ = await get_json(c.port, "/api/v1/namespaces", {"Authorization": "Bearer rotated"})
        assert code == 200


async def test_drop_connections_cuts_watches(cluster: SimCluster) -> None:
    client = await RawClient.connect(cluster.port)
    await client.send("GET", "/api/v1/namespaces/default/pods?watch=1")
    await cluster.drop_connections()
    assert await asyncio.wait_for(client.reader.read(), 5) is not None  # EOF, no hang
    code, _ = await get_json(cluster.port, "/version")
    assert code == 200
    await client.close()


async def test_drop_connections_with_downtime_keeps_port(cluster: SimCluster) -> None:
    port = cluster.port
    await cluster.drop_connections(down_for=0.3)
    try:
        await asyncio.open_connection("127.0.0.1", port)
        refused = False
    except ConnectionRefusedError:
        refused = True
    assert refused
    await asyncio.sleep(0.6)
    code, _ = await get_json(port, "/version")
    assert code == 200 and cluster.port == port
