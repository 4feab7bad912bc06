"""Ownership chains and the controllers' reactions, through the control API."""

from __future__ import annotations

import asyncio

from trayapp.sim import SimCluster
from trayapp.sim.objects import pod_is_ready


def owner(obj: dict) -> tuple[str, str]:
    ref = obj["metadata"]["ownerReferences"][0]
    assert ref["controller"] is True
    return ref["kind"], ref["name"]


async def test_deployment_chain(cluster: SimCluster) -> None:
    (rs,) = cluster.list("replicasets", "default")
    assert owner(rs) == ("Deployment", "web")
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    hash_ = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{hash_}"
    pods = cluster.pods("default", "app=web")
    assert len(pods) == 2
    for pod in pods:
        assert owner(pod) == ("ReplicaSet", rs["metadata"]["name"])
        assert pod["metadata"]["name"].startswith(f"{rs['metadata']['name']}-")
        assert len(pod["metadata"]["name"].rsplit("-", 1)[1]) == 5
        assert pod["metadata"]["labels"]["pod-template-hash"] == hash_
        assert pod["spec"]["nodeName"] == "sim-node-1"
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] and status["started"] and status["restartCount"] == 0


async def test_deleted_pod_is_replaced(cluster: SimCluster) -> None:
    victim = cluster.pod_names(label_selector="app=web")[0]
    new = cluster.delete_pod("default", victim)
    assert new is not None and new != victim
    assert victim not in cluster.pod_names() and new in cluster.pod_names()
    assert cluster.delete_pod("default", "debug-shell") is None


async def test_statefulset_pod_keeps_name(cluster: SimCluster) -> None:
    uid = cluster.get("pods", "default", "api-0")["metadata"]["uid"]
    assert cluster.delete_pod("default", "api-0") == "api-0"
    pod = cluster.get("pods", "default", "api-0")
    assert pod["metadata"]["uid"] != uid and pod["metadata"]["labels"]["controller-revision-hash"]
    cluster.scale("statefulsets", "default", "api", 3)
    assert cluster.pod_names(label_selector="app=api") == ["api-0", "api-1", "api-2"]


async def test_rollout_new_replicaset_and_scale_down(cluster: SimCluster) -> None:
    old_pods = set(cluster.pod_names(label_selector="app=web"))
    cluster.rollout("default", "web", image="web:v2")
    rss = sorted(cluster.list("replicasets", "default"),
                 key=lambda r: r["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
    assert [r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for r in rss] == ["1", "2"]
    assert rss[0]["spec"]["replicas"] == 0 and rss[1]["spec"]["replicas"] == 2
    new_pods = set(cluster.pod_names(label_selector="app=web"))
    assert len(new_pods) == 2 and not (new_pods & old_pods)


async def test_rollout_old_and_new_ready_together(cluster: SimCluster) -> None:
    old_pods = set(cluster.pod_names(label_selector="app=web"))
    cluster.rollout("default", "web", annotations={"v": "2"}, scale_down_delay=-1)
    both = cluster.pods("default", "app=web")
    assert len(both) == 4 and all(pod_is_ready(p) for p in both)
    cluster.finish_rollout("default", "web")
    assert not set(cluster.pod_names(label_selector="app=web")) & old_pods

    cluster.rollout("default", "web", annotations={"v": "3"}, scale_down_delay=0.2)
    assert len(cluster.pods("default", "app=web")) == 4
    await asyncio.sleep(0.4)
    assert len(cluster.pods("default", "app=web")) == 2


async def test_readiness_delay_then_ready() -> None:
    async with SimCluster(scenario="""
deployments:
  - {name: slow, replicas: 1, readyDelay: 0.2, ports: [{name: http, containerPort: 8080}]}
services:
  - {name: slow, ports: [{port: 80, targetPort: 8080}]}
""") as c:
        (pod,) = c.pods("default", "app=slow")
        assert pod["status"]["phase"] == "Running" and not pod_is_ready(pod)
        assert "addresses" not in c.get("endpoints", "default", "slow")["subsets"][0]
        await asyncio.sleep(0.4)
        (pod,) = c.pods("default", "app=slow")
        assert pod_is_ready(pod)
        assert len(c.get("endpoints", "default", "slow")["subsets"][0]["addresses"]) == 1
        assert c.get("deployments", "default", "slow")["status"]["readyReplicas"] == 1


async def test_cronjob_job_pod(cluster: SimCluster) -> None:
    (job,) = cluster.list("jobs", "default")
    assert owner(job) == ("CronJob", "report")
    assert job["metadata"]["name"].startswith("report-") and job["metadata"]["name"][7:].isdigit()
    uid = job["metadata"]["uid"]
    assert job["spec"]["selector"]["matchLabels"] == {"batch.kubernetes.io/controller-uid": uid}
    (pod,) = cluster.pods("default", f"controller-uid={uid}")
    assert owner(pod) == ("Job", job["metadata"]["name"])
    labels = pod["metadata"]["labels"]
    assert labels["job-name"] == labels["batch.kubernetes.io/job-name"] == job["metadata"]["name"]
    second = cluster.trigger_cronjob("default", "report")
    assert int(second.rsplit("-", 1)[1]) > int(job["metadata"]["name"].rsplit("-", 1)[1])
    assert len(cluster.list("jobs", "default")) == 2
    assert len(cluster.get("cronjobs", "default", "report")["status"]["active"]) == 2
    cluster.set_phase("default", pod["metadata"]["name"], "Succeeded")
    done = cluster.get("jobs", "default", job["metadata"]["name"])
    assert done["status"]["succeeded"] == 1 and done["status"]["conditions"][0]["type"] == "Complete"


async def test_daemonset_and_replicationcontroller() -> None:
    async with SimCluster(nodes=("node-a", "node-b"), scenario="""
daemonsets: [{name: agent, ports: [{containerPort: 9100}]}]
replicationcontrollers: [{name: legacy, replicas: 2, ports: [{containerPort: 80}]}]
""") as c:
        agents = c.pods("default", "app=agent")
        assert sorted(p["spec"]["nodeName"] for p in agents) == ["node-a", "node-b"]
        legacy = c.pods("default", "app=legacy")
        assert len(legacy) == 2 and owner(legacy[0])[0] == "ReplicationController"
        c.delete("replicationcontrollers", "default", "legacy")
        assert c.pods("default", "app=legacy") == []


async def test_restart_container_bumps_count_and_moves_backend(cluster: SimCluster) -> None:
    before = cluster.backend_address("default", "debug-shell", 7000)
    reader, writer = await asyncio.open_connection(*before)
    pod = cluster.restart_container("default", "debug-shell")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 1
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the old connection was cut
    after = cluster.backend_address("default", "debug-shell", 7000)
    assert after is not None and after != before
    writer.close()


async def test_service_add_remove_updates_endpoints(cluster: SimCluster) -> None:
    cluster.add_service("default", "api", {"app": "api"}, [{"name": "grpc", "port": 9090, "targetPort": "grpc"}])
    ep = cluster.get("endpoints", "default", "api")
    assert ep["subsets"][0]["ports"] == [{"port": 9090, "protocol": "TCP", "name": "grpc"}]
    assert ep["subsets"][0]["addresses"][0]["targetRef"]["name"] == "api-0"
    cluster.set_ready("default", "api-0", False)
    ep = cluster.get("endpoints", "default", "api")
    assert ep["subsets"][0]["notReadyAddresses"][0]["targetRef"]["name"] == "api-0"
    cluster.remove_service("default", "api")
    assert cluster.get("endpoints", "default", "api") is None
