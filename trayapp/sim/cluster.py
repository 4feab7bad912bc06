"""`SimCluster`: one simulated cluster (store, controllers, kubelet, backends, API server) and the
control calls tests and the demo use to inject faults.

Control methods are plain (synchronous) and must run on the simulator's event loop; from another
thread use `trayapp.sim.runner`. Each change reconciles at once, so a call such as `delete_pod`
returns with the replacement pod already in the store.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trayapp.sim.api import ApiHandler, ApiSettings
from trayapp.sim.backends import Backends
from trayapp.sim.control import ControlHandler
from trayapp.sim.controllers import Controllers
from trayapp.sim.http import HttpServer
from trayapp.sim.kubeconfig import ClusterEntry, write_kubeconfig
from trayapp.sim.latency import DelayLine
from trayapp.sim.objects import SCALE_DOWN_DELAY_ANNOTATION, Obj, controller_uid, kind_of, namespace, node
from trayapp.sim.pods import Kubelet
from trayapp.sim.scenario import Scenario, load_scenario
from trayapp.sim.selectors import parse_label_selector
from trayapp.sim.store import Store, StoreError


@dataclass(frozen=True)
class TlsConfig:
    """Serve HTTPS. `server_context` holds the server's certificate (and, to require client
    certificates, verify_mode CERT_REQUIRED with the client CA loaded). The PEMs go into kubeconfigs."""

    server_context: ssl.SSLContext
    ca_pem: bytes
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None


class SimCluster:
    def __init__(self, name: str = "sim", *, port: int = 0, token: str | None = None,
                 tls: TlsConfig | None = None, nodes: Iterable[str] = ("sim-node-1",),
                 ready_delay: float = 0.0, bookmark_interval: float = 5.0,
                 history_limit: int = 1000, scenario: str | Path | Mapping[str, Any] | None = None,
                 latency: float = 0.0) -> None:
        self.name = name
        self.tls = tls
        self.store = Store(history_limit)
        self.backends = Backends()
        self._nodes = tuple(nodes)
        self.kubelet = Kubelet(self.store, self.backends, self._node_names, ready_delay)
        self.controllers = Controllers(self.store)
        self.settings = ApiSettings(token=token, bookmark_interval=bookmark_interval)
        self._tasks: set[asyncio.Task[None]] = set()
        self.api = ApiHandler(self.store, self.backends, self.settings, ControlHandler(self, self._tasks),
                              self._tasks, lambda: f"127.0.0.1:{self.port}")
        # With a latency the API listener sits behind a delay line that takes the asked-for port.
        self.latency = latency
        self.server = HttpServer(self.api, "127.0.0.1", 0 if latency > 0 else port,
                                 tls.server_context if tls else None)
        self._delay = DelayLine(("127.0.0.1", 0), latency, port=port) if latency > 0 else None
        self._scenario = scenario
        self.started = False

    # -- lifetime ------------------------------------------------------------------------
    async def start(self) -> SimCluster:
        for n in self._nodes:
            self.store.create(node(n), "Node")
        for ns in ("default", "kube-system", "kube-public"):
            self.store.create(namespace(ns), "Namespace")
        await self.server.start()
        if self._delay is not None:
            self._delay.upstream = ("127.0.0.1", self.server.port)
            await self._delay.start()
        self.started = True
        if self._scenario is not None:
            self.load_scenario(self._scenario)
        return self

    async def stop(self) -> None:
        self.controllers.stop()
        self.kubelet.stop()
        if self._delay is not None:
            await self._delay.stop()
        await self.server.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.started = False

    async def __aenter__(self) -> SimCluster:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._delay.port if self._delay is not None else self.server.port

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _node_names(self) -> builtins.list[str]:
        return [n["metadata"]["name"] for n in self.store.list("nodes")]

    # -- objects -------------------------------------------------------------------------
    def load_scenario(self, source: str | Path | Mapping[str, Any] | Scenario) -> None:
        scenario = source if isinstance(source, Scenario) else load_scenario(source)
        for obj in scenario.objects:
            kind = kind_of(obj["kind"])
            name = obj["metadata"]["name"]
            if kind.plural in ("namespaces", "nodes") and self.get(kind.plural, "", name) is not None:
                continue
            self.store.create(obj)
            self.controllers.reconcile()
        for ns, name, count in scenario.cronjob_runs:
            for _ in range(count):
                self.trigger_cronjob(ns, name)

    def create(self, obj: Obj) -> Obj:
        created = self.store.create(obj)
        self.controllers.reconcile()
        return created

    def apply(self, obj: Obj) -> Obj:
        """Replace an existing object's spec/labels/annotations (create it when missing)."""
        kind = kind_of(obj["kind"])
        meta = obj["metadata"]
        current = self.get(kind.plural, meta.get("namespace", "default"), meta["name"])
        if current is None:
            return self.create(obj)
        for key in ("labels", "annotations"):
            if key in meta:
                current["metadata"][key] = copy.deepcopy(meta[key])
        for key in ("spec", "subsets"):
            if key in obj:
                current[key] = copy.deepcopy(obj[key])
        updated = self.store.update(current)
        self.controllers.reconcile()
        return updated

    def get(self, kind: str, ns: str, name: str) -> Obj | None:
        return self.store.get(kind, ns, name)

    def _must(self, kind: str, ns: str, name: str) -> Obj:
        obj = self.get(kind, ns, name)
        if obj is None:
            raise StoreError(404, "NotFound", f'{kind_of(kind).plural} "{name}" not found')
        return obj

    def list(self, kind: str, ns: str | None = None, label_selector: str | None = None) -> builtins.list[Obj]:
        return self.store.list(kind, ns, parse_label_selector(label_selector))

    def pods(self, ns: str | None = "default", label_selector: str | None = None) -> builtins.list[Obj]:
        return self.list("pods", ns, label_selector)

    def pod_names(self, ns: str | None = "default", label_selector: str | None = None) -> builtins.list[str]:
        return [p["metadata"]["name"] for p in self.pods(ns, label_selector)]

    def delete(self, kind: str, ns: str, name: str) -> Obj | None:
        """Delete an object and, like the garbage collector, everything it controls."""
        obj = self.store.delete(kind, ns, name)
        if obj is not None:
            self._collect(obj)
            self.controllers.reconcile()
        return obj

    def _collect(self, owner: Obj) -> None:
        uid = owner["metadata"]["uid"]
        for plural in ("replicasets", "jobs", "pods"):
            for child in self.store.list(plural, owner["metadata"].get("namespace")):
                if controller_uid(child) == uid:
                    self.store.delete(plural, child["metadata"]["namespace"], child["metadata"]["name"])
                    self._collect(child)

    def delete_pod(self, ns: str, name: str) -> str | None:
        """Delete a pod; returns the name of the pod its controller made in its place, if any."""
        pod = self._must("pods", ns, name)
        owner = controller_uid(pod)
        before = {p["metadata"]["uid"] for p in self.pods(ns)}
        self.delete("pods", ns, name)
        if owner is None:
            return None
        for p in self.pods(ns):
            if controller_uid(p) == owner and p["metadata"]["uid"] not in before:
                return str(p["metadata"]["name"])
        return None

    def set_ready(self, ns: str, pod: str, ready: bool = True) -> Obj:
        out = self.kubelet.set_ready(ns, pod, ready)
        self.controllers.reconcile()
        return out

    def set_phase(self, ns: str, pod: str, phase: str) -> Obj:
        out = self.kubelet.set_phase(ns, pod, phase)
        self.controllers.reconcile()
        return out

    def restart_container(self, ns: str, pod: str) -> Obj:
        out = self.kubelet.restart_container(ns, pod)
        self.controllers.reconcile()
        return out

    def scale(self, kind: str, ns: str, name: str, replicas: int) -> Obj:
        obj = self._must(kind, ns, name)
        obj["spec"]["replicas"] = int(replicas)
        out = self.store.update(obj)
        self.controllers.reconcile()
        return out

    def rollout(self, ns: str, name: str, image: str | None = None,
                annotations: Mapping[str, str] | None = None, kind: str = "deployments",
                scale_down_delay: float | None = None) -> Obj:
        """Change the pod template (image and/or template annotations) so the controller rolls out
        new pods. `scale_down_delay`: seconds old pods stay after the new ones are Ready
        (negative: until `finish_rollout`). Returns the updated workload."""
        obj = self._must(kind, ns, name)
        template = obj["spec"]["template"]
        if image is not None:
            for c in template["spec"]["containers"]:
                c["image"] = image
        tmeta = template.setdefault("metadata", {})
        restarted = {"kubectl.kubernetes.io/restartedAt": _now_precise()}
        tmeta.setdefault("annotations", {}).update(annotations if annotations else
                                                   ({} if image else restarted))
        if scale_down_delay is not None:
            obj["metadata"].setdefault("annotations", {})[SCALE_DOWN_DELAY_ANNOTATION] = str(scale_down_delay)
        out = self.store.update(obj)
        self.controllers.reconcile()
        return out

    def finish_rollout(self, ns: str, name: str) -> None:
        self.controllers.finish_rollout(self._must("deployments", ns, name))

    def trigger_cronjob(self, ns: str, name: str) -> str:
        job = self.controllers.trigger_cronjob(self._must("cronjobs", ns, name))
        return str(job["metadata"]["name"])

    def add_service(self, ns: str, name: str, selector: Mapping[str, str],
                    ports: Iterable[Mapping[str, Any]], labels: Mapping[str, str] | None = None) -> Obj:
        return self.create({"kind": "Service", "metadata": {"name": name, "namespace": ns,
                                                            "labels": dict(labels or {})},
                            "spec": {"type": "ClusterIP", "selector": dict(selector),
                                     "ports": [{"protocol": "TCP", **p} for p in ports]}})

    def remove_service(self, ns: str, name: str) -> Obj | None:
        return self.delete("services", ns, name)

    # -- faults --------------------------------------------------------------------------
    async def drop_connections(self, down_for: float = 0.0) -> None:
        """Cut every API connection (watches, port-forwards too), like an API server restart.
        With `down_for` the port also refuses connections that long, then listens again."""
        if self._delay is not None:
            await self._delay.drop(down_for)
        await self.server.drop_connections(down_for)

    def lose_sandbox(self, ns: str, pod: str) -> None:
        """The node lost the pod's sandbox while the API still shows the pod as it was: its
        programs stop, and port-forward dials answer with containerd's "failed to find sandbox"."""
        uid = self._must("pods", ns, pod)["metadata"]["uid"]
        self.settings.lost_sandboxes.add(uid)
        self.backends.stop(uid)

    def compact_history(self) -> None:
        self.store.compact()

    def set_token(self, token: str | None) -> None:
        self.settings.token = token

    @property
    def resource_version(self) -> int:
        return self.store.rv

    def backend_address(self, ns: str, pod: str, port: int) -> tuple[str, int] | None:
        """Where a pod's container port really listens (for tests that bypass port-forward)."""
        obj = self.get("pods", ns, pod)
        return None if obj is None else self.backends.address(obj["metadata"]["uid"], port)

    # -- kubeconfig ----------------------------------------------------------------------
    def kubeconfig_entry(self, context: str | None = None, namespace: str = "default",
                         token: str | None = None) -> ClusterEntry:
        return ClusterEntry(
            context=context or self.name, server=self.url, namespace=namespace,
            token=token if token is not None else self.settings.token,
            ca_pem=self.tls.ca_pem if self.tls else None,
            client_cert_pem=self.tls.client_cert_pem if self.tls else None,
            client_key_pem=self.tls.client_key_pem if self.tls else None,
        )

    def write_kubeconfig(self, path: str | Path, context: str | None = None, namespace: str = "default",
                         token: str | None = None, extra: Iterable[ClusterEntry] = ()) -> Path:
        """Write a kubeconfig whose current context is this cluster; `extra` adds more contexts."""
        entry = self.kubeconfig_entry(context, namespace, token)
        return write_kubeconfig(path, [entry, *extra], current=entry.context)


def _now_precise() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
