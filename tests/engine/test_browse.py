"""The Forward window's engine side against the simulator over real sockets: namespaces and a
namespace's objects arrive as port rows (owners named, UDP kept), a namespace of 2,000 objects
arrives in batches and a later watch change reaches the window's model, switching namespace resets
the rows, and closing stops every watch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests import hostile_server as hs
from trayapp.engine.backoff import Backoff
from trayapp.engine.browse import BATCH_ROWS, Browser, Namespaces, ObjectRow, PortRow, Rows, Update, summarise
from trayapp.engine.kube import Credentials, KubeApi
from trayapp.model import ResourceType
from trayapp.sim import SimCluster
from trayapp.ui.picker_model import PickerModel

SCENARIO = """
namespaces: [tools]
deployments:
  - name: dbg
    labels: {app: dbg}
    ports: [{name: dlv, containerPort: 40000}, {containerPort: 8080}]
statefulsets:
  - name: db
    labels: {app: db}
    ports: [{name: pg, containerPort: 5432}]
daemonsets:
  - name: agent
    labels: {app: agent}
    ports: [{name: metrics, containerPort: 9100}]
jobs:
  - name: migrate
    labels: {app: migrate}
    ports: [{containerPort: 8081}]
cronjobs:
  - name: report
    jobs: 1
    labels: {app: report}
    ports: [{name: http, containerPort: 8080}]
pods:
  - name: shell
    labels: {app: shell}
    ports: [{containerPort: 7000, kind: echo}]
services:
  - name: web
    selector: {app: dbg}
    ports: [{name: http, port: 80, targetPort: 8080}, {name: dns, port: 53, protocol: UDP}]
  - name: tool
    namespace: tools
    selector: {app: tool}
    ports: [{port: 9000}]
"""

S, D = ResourceType.SERVICE, ResourceType.DEPLOYMENT


class Collected:
    """Every update the browser sends, and a way to wait for one."""

    def __init__(self) -> None:
        self.updates: list[Update] = []
        self.model = PickerModel("default")
        self._changed = asyncio.Event()

    def __call__(self, update: Update) -> None:
        self.updates.append(update)
        self.model.apply(update)
        self._changed.set()

    async def wait(self, what: str, condition: Callable[[], object], timeout: float = 20.0) -> None:
        async def until() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        try:
            async with asyncio.timeout(timeout):
                await until()
        except TimeoutError:
            raise AssertionError(f"waited {timeout:g} s for {what}; got {self.updates[-5:]}") from None

    def rows(self, namespace: str = "default") -> list[Rows]:
        return [u for u in self.updates if isinstance(u, Rows) and u.namespace == namespace]


@pytest.fixture
async def cluster() -> AsyncIterator[SimCluster]:
    c = SimCluster("browse", scenario=SCENARIO, bookmark_interval=0.5)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


@pytest.fixture
async def api(cluster: SimCluster, tmp_path: Path) -> KubeApi:
    path = cluster.write_kubeconfig(tmp_path / "kubeconfig", context="sim")
    credentials = Credentials([path], None)
    access = await asyncio.to_thread(credentials.load)
    return KubeApi(access, credentials)


@pytest.fixture
async def browsing(api: KubeApi) -> AsyncIterator[tuple[Browser, Collected]]:
    collected = Collected()
    browser = Browser(api, collected)
    browser.start()
    await browser.show("default")
    try:
        yield browser, collected
    finally:
        await browser.close()


async def test_namespaces_and_every_kind_arrive_as_port_rows(browsing: tuple[Browser, Collected]) -> None:
    _browser, seen = browsing
    await seen.wait("the namespace list", lambda: "tools" in seen.model.namespaces)
    await seen.wait("the whole namespace", lambda: seen.model.complete)
    rows = seen.model.rows
    assert rows[(S, "web")].ports == (PortRow(80, "http"), PortRow(53, "dns", "UDP"))
    assert rows[(D, "dbg")].ports == (PortRow(40000, "dlv", container="dbg"), PortRow(8080, container="dbg"))
    assert rows[(ResourceType.STATEFULSET, "db")].ports == (PortRow(5432, "pg", container="db"),)
    assert rows[(ResourceType.DAEMONSET, "agent")].ports[0].number == 9100
    assert rows[(ResourceType.CRONJOB, "report")].ports == (PortRow(8080, "http", container="report"),)
    assert rows[(ResourceType.JOB, "migrate")].ports[0].number == 8081
    assert (ResourceType.SERVICE, "tool") not in rows  # another namespace's
    pods = {name: row for (kind, name), row in rows.items() if kind is ResourceType.POD}
    dbg_pod = next(row for name, row in pods.items() if name.startswith("dbg-"))
    assert dbg_pod.owner == (D, "dbg")  # through its ReplicaSet and the pod-template-hash
    assert dbg_pod.state == "Running"
    report_job = next(row for (kind, name), row in rows.items() if kind is ResourceType.JOB and name != "migrate")
    assert report_job.owner == (ResourceType.CRONJOB, "report")
    report_pod = next(row for name, row in pods.items() if name.startswith(report_job.name))
    assert report_pod.owner == (ResourceType.JOB, report_job.name)
    assert pods["shell"].owner is None
    first = seen.rows()[0]
    assert first.reset


async def test_another_namespace_resets_the_rows(browsing: tuple[Browser, Collected]) -> None:
    browser, seen = browsing
    await seen.wait("the default namespace", lambda: seen.model.complete)
    seen.model.show_namespace("tools")
    await browser.show("tools")
    await seen.wait("namespace tools", lambda: seen.model.complete and (S, "tool") in seen.model.rows)
    assert [row.key for row in seen.model.rows.values()] == [(S, "tool")]
    assert seen.rows("tools")[0].reset


async def test_changes_are_sent_as_changed_rows_only(cluster: SimCluster, browsing: tuple[Browser, Collected]) -> None:
    _browser, seen = browsing
    await seen.wait("the default namespace", lambda: seen.model.complete)
    before = len(seen.updates)
    cluster.add_service("default", "cache", {"app": "cache"}, [{"name": "redis", "port": 6379}])
    await seen.wait("the new service", lambda: (S, "cache") in seen.model.rows)
    news = [u for u in seen.updates[before:] if isinstance(u, Rows)]
    assert [row.name for u in news for row in u.upserts] == ["cache"]
    cluster.remove_service("default", "cache")
    await seen.wait("the service to go", lambda: (S, "cache") not in seen.model.rows)
    assert seen.rows()[-1].removed == ((S, "cache"),)


async def test_closing_stops_every_watch(api: KubeApi) -> None:
    seen = Collected()
    browser = Browser(api, seen)
    browser.start()
    await browser.show("default")
    await seen.wait("the default namespace", lambda: seen.model.complete)
    await browser.close()
    left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("informer:")]
    assert left == []
    count = len(seen.updates)
    await browser.show("tools")  # a late command after close does nothing
    await asyncio.sleep(0)
    assert len(seen.updates) == count


def service(index: int) -> dict[str, object]:
    return {"kind": "Service", "metadata": {"name": f"svc-{index:04d}", "namespace": "big", "labels": {}},
            "spec": {"type": "ClusterIP", "selector": {"app": f"a{index}"},
                     "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": 8080},
                               {"name": "grpc", "port": 9090, "protocol": "TCP", "targetPort": 9090}]}}


async def test_two_thousand_objects_arrive_in_batches_and_a_watch_update_reaches_the_model(
        cluster: SimCluster, api: KubeApi) -> None:
    cluster.create({"kind": "Namespace", "metadata": {"name": "big"}, "spec": {}, "status": {"phase": "Active"}})
    for index in range(2000):
        cluster.store.create(service(index))
    seen = Collected()
    seen.model = PickerModel("big")
    browser = Browser(api, seen)
    browser.start()
    await browser.show("big")
    try:
        await seen.wait("2,000 rows", lambda: seen.model.complete and len(seen.model.rows) == 2000, timeout=60)
        batches = [u for u in seen.rows("big") if u.upserts]
        assert len(batches) >= 2000 // BATCH_ROWS
        assert all(len(u.upserts) <= BATCH_ROWS for u in batches)
        assert len(seen.model.visible) == 4000  # one line per port
        seen.model.set_query("svc-1999 grpc")
        assert [(e.object_text, e.port_text) for e in seen.model.visible] == [("svc/svc-1999", "grpc 9090")]

        before = len(seen.updates)
        changed = cluster.get("services", "big", "svc-1999")
        assert changed is not None
        changed["spec"]["ports"].append({"name": "admin", "port": 9901, "protocol": "TCP", "targetPort": 9901})
        cluster.store.update(changed)
        await seen.wait("the changed service", lambda: len(seen.model.rows[(S, "svc-1999")].ports) == 3)
        news = [u for u in seen.updates[before:] if isinstance(u, Rows)]
        assert [row.name for u in news for row in u.upserts] == ["svc-1999"]  # only what changed
        seen.model.set_query("svc-1999")
        assert [e.port_text for e in seen.model.visible] == ["http 8080", "grpc 9090", "admin 9901"]
    finally:
        await browser.close()


def test_summaries_skip_what_they_cannot_read() -> None:
    assert summarise("pods", {"metadata": {}}) is None
    weird = {"metadata": {"name": "p", "namespace": "d"},
             "spec": {"containers": [{"name": "c", "ports": [{"containerPort": "x"}, {"containerPort": 80}]}]}}
    assert summarise("pods", weird) == ObjectRow(ResourceType.POD, "p", "d", (PortRow(80, container="c"),))
    assert summarise("services", {"metadata": {"name": "s"}, "spec": {"ports": "nope"}}) == ObjectRow(S, "s", "")


async def test_namespaces_update_is_sent_once_per_change(browsing: tuple[Browser, Collected]) -> None:
    _browser, seen = browsing
    await seen.wait("the namespace list", lambda: "tools" in seen.model.namespaces)
    lists = [u for u in seen.updates if isinstance(u, Namespaces)]
    assert len(lists) == 1 and {"default", "tools", "kube-system"} <= set(lists[0].names)


async def test_a_kind_that_cannot_be_listed_is_said_and_does_not_hold_the_list(tmp_path: Path) -> None:
    server = hs.HostileServer()
    await server.start()
    refusing = True
    forbidden = hs.status(403, 'cronjobs.batch is forbidden: User "dev" cannot list resource "cronjobs"')

    async def on_list(srv: hs.HostileServer, request: hs.Request, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        refused = request.path.endswith(("/cronjobs", "/api/v1/namespaces"))
        plan = forbidden if refusing and refused else hs.good_list
        await plan(srv, request, reader, writer)

    server.on_list = on_list
    seen = Collected()
    browser = Browser(await hs.kube_api(server, tmp_path), seen,
                      informer_options={"backoff": Backoff(initial=0.05, cap=0.2, jitter=0.0)})
    browser.start()
    await browser.show("default")
    try:
        await seen.wait("the refusal", lambda: seen.model.complete and seen.model.problem)
        await seen.wait("the namespaces' refusal", lambda: seen.model.namespaces_problem)
        assert seen.model.namespaces_problem is not None
        assert seen.model.namespaces_problem.startswith("kubetray cannot list the namespaces right now (")
        assert seen.model.status() == (
            "kubetray cannot list the cronjobs in namespace default right now (The API server refused "
            "kubetray's credentials for cronjobs in namespace 'default': cronjobs.batch is forbidden: "
            'User "dev" cannot list resource "cronjobs"); it keeps trying and updates the list when it can.')
        refusing = False
        await seen.wait("the problems to be over",
                        lambda: seen.model.problem is None and seen.model.namespaces_problem is None)
        assert seen.model.status() == "0 objects in namespace default"
    finally:
        await browser.close()
        await server.stop()
