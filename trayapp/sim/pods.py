"""The simulated kubelet: a pod's status (phase, readiness, restarts), its readiness timer and its
backends' lifetime.

New pods get their first status on admission, so the very first watch event already shows them
scheduled and Running (or Pending until a readiness delay passes). Readiness delays run on
`loop.call_later`; nothing polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from trayapp.sim.backends import Backends, PodIdentity
from trayapp.sim.objects import (
    PHASE_ANNOTATION,
    READY_DELAY_ANNOTATION,
    Obj,
    backend_specs,
    pod_is_ready,
    set_pod_status,
)
from trayapp.sim.store import Change, Store, StoreError

PHASES = ("Pending", "Running", "Succeeded", "Failed")


class Kubelet:
    def __init__(self, store: Store, backends: Backends, nodes: Callable[[], list[str]],
                 default_ready_delay: float = 0.0) -> None:
        self._store = store
        self._backends = backends
        self._nodes = nodes
        self.default_ready_delay = default_ready_delay
        self._timers: dict[str, asyncio.TimerHandle] = {}
        store.admit("pods", self._admit)
        store.on_change(self._changed)

    def _ready_delay(self, pod: Obj) -> float:
        text = pod["metadata"].get("annotations", {}).get(READY_DELAY_ANNOTATION)
        return float(text) if text is not None else self.default_ready_delay

    def _admit(self, pod: Obj) -> None:
        spec = pod.setdefault("spec", {})
        if not spec.get("nodeName"):
            nodes = self._nodes()
            spec["nodeName"] = nodes[0] if nodes else "sim-node-1"
        spec.setdefault("restartPolicy", "Always")
        for c in spec.setdefault("containers", []):
            c.setdefault("image", "busybox")
            for p in c.get("ports", []):
                p.setdefault("protocol", "TCP")
        if pod.get("status", {}).get("phase"):
            return
        phase = pod["metadata"].get("annotations", {}).get(PHASE_ANNOTATION, "Running")
        set_pod_status(pod, phase, ready=self._ready_delay(pod) <= 0)

    def _changed(self, change: Change) -> None:
        if change.plural != "pods":
            return
        uid = change.new["metadata"]["uid"]
        if change.type == "DELETED":
            self._cancel_timer(uid)
            self._backends.stop(uid)
            return
        pod = change.new
        phase = pod["status"].get("phase")
        was_running = change.old is not None and change.old["status"].get("phase") == "Running"
        if phase == "Running" and (change.type == "ADDED" or not was_running):
            self._start_backends(pod)
            if not pod_is_ready(pod) and self._ready_delay(pod) > 0:
                self._arm_timer(pod)
        elif phase != "Running" and was_running:
            self._backends.stop(uid)

    def _start_backends(self, pod: Obj) -> None:
        meta = pod["metadata"]
        self._backends.start(PodIdentity(meta["namespace"], meta["name"], meta["uid"]), backend_specs(pod))

    def _arm_timer(self, pod: Obj) -> None:
        meta = pod["metadata"]
        uid, ns, name = meta["uid"], meta["namespace"], meta["name"]
        self._cancel_timer(uid)
        loop = asyncio.get_running_loop()

        def become_ready() -> None:
            self._timers.pop(uid, None)
            current = self._store.get("pods", ns, name)
            if current is not None and current["metadata"]["uid"] == uid:
                self.set_ready(ns, name, True)

        self._timers[uid] = loop.call_later(self._ready_delay(pod), become_ready)

    def _cancel_timer(self, uid: str) -> None:
        timer = self._timers.pop(uid, None)
        if timer is not None:
            timer.cancel()

    def _get(self, ns: str, name: str) -> Obj:
        pod = self._store.get("pods", ns, name)
        if pod is None:
            raise StoreError(404, "NotFound", f'pods "{name}" not found')
        return pod

    @staticmethod
    def _restarts(pod: Obj) -> int:
        statuses = pod["status"].get("containerStatuses") or [{}]
        return int(statuses[0].get("restartCount", 0))

    def set_ready(self, ns: str, name: str, ready: bool) -> Obj:
        pod = self._get(ns, name)
        self._cancel_timer(pod["metadata"]["uid"])
        set_pod_status(pod, pod["status"].get("phase", "Running"), ready, self._restarts(pod))
        return self._store.update(pod)

    def set_phase(self, ns: str, name: str, phase: str) -> Obj:
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}")
        pod = self._get(ns, name)
        self._cancel_timer(pod["metadata"]["uid"])
        set_pod_status(pod, phase, phase == "Running" and self._ready_delay(pod) <= 0, self._restarts(pod))
        return self._store.update(pod)

    def restart_container(self, ns: str, name: str) -> Obj:
        """The container crashed and came back: connections drop, listeners come back on new
        ports, restartCount goes up and readiness waits its delay again."""
        pod = self._get(ns, name)
        delay = self._ready_delay(pod)
        set_pod_status(pod, "Running", delay <= 0, self._restarts(pod) + 1)
        updated = self._store.update(pod)
        self._start_backends(updated)
        if delay > 0:
            self._arm_timer(updated)
        return updated

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._backends.stop_all()
