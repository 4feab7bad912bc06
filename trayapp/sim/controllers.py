"""Workload controllers: Deployment -> ReplicaSet -> Pod, StatefulSet, DaemonSet,
ReplicationController, CronJob -> Job -> Pod, and Endpoints for Services.

`reconcile()` drives every object toward its spec in one synchronous pass (repeated until nothing
changes), so a control call such as "delete this pod" returns with the replacement already made.
Changes from timers (readiness) schedule a reconcile with `loop.call_soon`.
"""

from __future__ import annotations

import asyncio
import copy
import math
import time

from trayapp.sim.objects import (
    SCALE_DOWN_DELAY_ANNOTATION,
    Obj,
    controller_uid,
    now_rfc3339,
    owner_ref,
    pod_from_template,
    pod_is_active,
    pod_is_ready,
    random_suffix,
    template_hash,
)
from trayapp.sim.selectors import selector_from_match_labels
from trayapp.sim.store import Change, Store

_WORKLOADS = ("deployments", "replicasets", "replicationcontrollers", "statefulsets", "daemonsets",
              "jobs", "cronjobs")


class Controllers:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: asyncio.Handle | None = None
        self._running = False
        # (deployment uid, template hash) whose old ReplicaSets may now scale down
        self._scale_down_ok: set[tuple[str, str]] = set()
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        store.on_change(self._changed)

    def _changed(self, change: Change) -> None:
        if self._running or self._pending is not None:
            return
        if change.plural in ("pods", "services", "nodes", *_WORKLOADS):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._pending = loop.call_soon(self.reconcile)

    def stop(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def reconcile(self) -> None:
        self._pending = None
        if self._running:
            return
        self._running = True
        try:
            for _ in range(20):
                before = self._store.rv
                for fn in (self._cronjobs, self._jobs, self._deployments, self._replicasets,
                           self._statefulsets, self._daemonsets, self._endpoints):
                    fn()
                if self._store.rv == before:
                    break
        finally:
            self._running = False

    # -- helpers -------------------------------------------------------------------------
    def _owned(self, kind: str, owner: Obj, active_only: bool = True) -> list[Obj]:
        uid = owner["metadata"]["uid"]
        objs = [o for o in self._store.list(kind, owner["metadata"]["namespace"]) if controller_uid(o) == uid]
        if kind == "pods" and active_only:
            objs = [p for p in objs if pod_is_active(p)]
        return objs

    def _set_status(self, obj: Obj, status: Obj) -> None:
        merged = {**obj.get("status", {}), **status}
        if merged != obj.get("status"):
            obj["status"] = merged
            self._store.update(obj)

    def _ensure_pods(self, owner: Obj, want: int, extra_labels: dict[str, str] | None = None) -> list[Obj]:
        """Create or delete the owner's pods until `want` active ones exist; the newest and
        least ready go first when scaling down."""
        ns, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
        pods = self._owned("pods", owner)
        for _ in range(want - len(pods)):
            pod = pod_from_template(owner["spec"]["template"], f"{name}-{random_suffix()}", ns, owner,
                                    extra_labels)
            pods.append(self._store.create(pod, "Pod"))
        if len(pods) > want:
            pods.sort(key=lambda p: (pod_is_ready(p), p["metadata"]["creationTimestamp"],
                                     -int(p["metadata"]["resourceVersion"])))
            for pod in pods[:len(pods) - want]:
                self._store.delete("pods", ns, pod["metadata"]["name"])
            pods = pods[len(pods) - want:]
        return pods

    @staticmethod
    def _counts(pods: list[Obj], generation: int) -> Obj:
        ready = sum(1 for p in pods if pod_is_ready(p))
        return {"replicas": len(pods), "readyReplicas": ready, "availableReplicas": ready,
                "observedGeneration": generation}

    # -- Deployments ---------------------------------------------------------------------
    def _deployments(self) -> None:
        for dep in self._store.list("deployments"):
            self._deployment(dep)

    def _deployment(self, dep: Obj) -> None:
        meta, spec = dep["metadata"], dep["spec"]
        ns = meta["namespace"]
        replicas = int(spec.get("replicas", 1))
        template = copy.deepcopy(spec["template"])
        hash_ = template_hash(template)
        owned = self._owned("replicasets", dep)
        current = next((rs for rs in owned if rs["metadata"]["labels"].get("pod-template-hash") == hash_), None)
        olds = [rs for rs in owned if rs is not current]
        revision = 1 + max((int(rs["metadata"]["annotations"].get("deployment.kubernetes.io/revision", 0))
                            for rs in owned), default=0)
        if current is None:
            template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = hash_
            selector = copy.deepcopy(spec.get("selector") or {"matchLabels": dict(template["metadata"]["labels"])})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = hash_
            current = self._store.create({
                "metadata": {"name": f"{meta['name']}-{hash_}", "namespace": ns,
                             "labels": dict(template["metadata"]["labels"]),
                             "annotations": {"deployment.kubernetes.io/revision": str(revision),
                                             "deployment.kubernetes.io/desired-replicas": str(replicas)},
                             "ownerReferences": [owner_ref(dep)]},
                "spec": {"replicas": replicas, "selector": selector, "template": template},
            }, "ReplicaSet")
        elif int(current["spec"].get("replicas", 0)) != replicas:
            current["spec"]["replicas"] = replicas
            current = self._store.update(current)
        new_ready = sum(1 for p in self._owned("pods", current) if pod_is_ready(p))
        if olds and new_ready >= replicas and self._may_scale_down(dep, hash_):
            for rs in olds:
                if int(rs["spec"].get("replicas", 0)) != 0:
                    rs["spec"]["replicas"] = 0
                    self._store.update(rs)
        all_pods = [p for rs in self._owned("replicasets", dep) for p in self._owned("pods", rs)]
        ready = sum(1 for p in all_pods if pod_is_ready(p))
        self._set_status(dep, {
            "observedGeneration": meta.get("generation", 1), "replicas": len(all_pods),
            "updatedReplicas": len(self._owned("pods", current)), "readyReplicas": ready,
            "availableReplicas": ready, "unavailableReplicas": max(0, replicas - ready),
            "conditions": [{"type": "Available", "status": "True" if ready >= replicas else "False",
                            "reason": "MinimumReplicasAvailable"}],
        })

    def _may_scale_down(self, dep: Obj, hash_: str) -> bool:
        key = (dep["metadata"]["uid"], hash_)
        if key in self._scale_down_ok:
            return True
        delay = float(dep["metadata"].get("annotations", {}).get(SCALE_DOWN_DELAY_ANNOTATION, 0))
        if delay == 0:
            return True
        # A negative delay holds old pods until finish_rollout(); a positive one arms a timer.
        if delay > 0 and key not in self._timers and not math.isinf(delay):
            def allow() -> None:
                self._timers.pop(key, None)
                self._scale_down_ok.add(key)
                self.reconcile()
            self._timers[key] = asyncio.get_running_loop().call_later(delay, allow)
        return False

    def finish_rollout(self, dep: Obj) -> None:
        hash_ = template_hash(dep["spec"]["template"])
        key = (dep["metadata"]["uid"], hash_)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._scale_down_ok.add(key)
        self.reconcile()

    # -- ReplicaSets and ReplicationControllers ------------------------------------------
    def _replicasets(self) -> None:
        for kind in ("replicasets", "replicationcontrollers"):
            for rs in self._store.list(kind):
                pods = self._ensure_pods(rs, int(rs["spec"].get("replicas", 1)))
                status = self._counts(pods, rs["metadata"].get("generation", 1))
                status["fullyLabeledReplicas"] = len(pods)
                self._set_status(rs, status)

    # -- StatefulSets --------------------------------------------------------------------
    def _statefulsets(self) -> None:
        for sts in self._store.list("statefulsets"):
            meta, spec = sts["metadata"], sts["spec"]
            ns, name = meta["namespace"], meta["name"]
            revision = f"{name}-{template_hash(spec['template'])}"
            replicas = int(spec.get("replicas", 1))
            pods = {p["metadata"]["name"]: p for p in self._owned("pods", sts, active_only=False)}
            for pod_name, pod in pods.items():
                ordinal = pod_name.rsplit("-", 1)[-1]
                outdated = pod["metadata"]["labels"].get("controller-revision-hash") != revision
                if not ordinal.isdigit() or int(ordinal) >= replicas or outdated:
                    # Rolling update done at once: the pod goes and comes back under its own name.
                    self._store.delete("pods", ns, pod_name)
            for i in range(replicas):
                pod_name = f"{name}-{i}"
                if self._store.get("pods", ns, pod_name) is None:
                    self._store.create(pod_from_template(spec["template"], pod_name, ns, sts, {
                        "controller-revision-hash": revision,
                        "statefulset.kubernetes.io/pod-name": pod_name,
                        "apps.kubernetes.io/pod-index": str(i)}), "Pod")
            pods_now = self._owned("pods", sts)
            status = self._counts(pods_now, meta.get("generation", 1))
            status.update(currentReplicas=len(pods_now), updatedReplicas=len(pods_now),
                          currentRevision=revision, updateRevision=revision)
            self._set_status(sts, status)

    # -- DaemonSets ----------------------------------------------------------------------
    def _daemonsets(self) -> None:
        nodes = [n["metadata"]["name"] for n in self._store.list("nodes")]
        for ds in self._store.list("daemonsets"):
            meta = ds["metadata"]
            revision = template_hash(ds["spec"]["template"])
            pods = self._owned("pods", ds)
            by_node = {p["spec"].get("nodeName"): p for p in pods}
            for pod in pods:
                if pod["spec"].get("nodeName") not in nodes or \
                        pod["metadata"]["labels"].get("controller-revision-hash") != revision:
                    self._store.delete("pods", meta["namespace"], pod["metadata"]["name"])
                    by_node.pop(pod["spec"].get("nodeName"), None)
            for node in nodes:
                if node not in by_node:
                    pod = pod_from_template(ds["spec"]["template"], f"{meta['name']}-{random_suffix()}",
                                            meta["namespace"], ds, {
                                                "controller-revision-hash": revision,
                                                "pod-template-generation": str(meta.get("generation", 1))})
                    pod["spec"]["nodeName"] = node
                    self._store.create(pod, "Pod")
            pods = self._owned("pods", ds)
            ready = sum(1 for p in pods if pod_is_ready(p))
            self._set_status(ds, {"desiredNumberScheduled": len(nodes), "currentNumberScheduled": len(pods),
                                  "numberReady": ready, "numberAvailable": ready,
                                  "updatedNumberScheduled": len(pods), "numberMisscheduled": 0,
                                  "observedGeneration": meta.get("generation", 1)})

    # -- Jobs and CronJobs ---------------------------------------------------------------
    def _jobs(self) -> None:
        for job in self._store.list("jobs"):
            meta, spec = job["metadata"], job["spec"]
            uid = meta["uid"]
            if "selector" not in spec:
                spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
                labels = spec["template"].setdefault("metadata", {}).setdefault("labels", {})
                labels.update({"controller-uid": uid, "job-name": meta["name"],
                               "batch.kubernetes.io/controller-uid": uid,
                               "batch.kubernetes.io/job-name": meta["name"]})
                job = self._store.update(job)
                meta, spec = job["metadata"], job["spec"]
            pods = self._owned("pods", job, active_only=False)
            succeeded = sum(1 for p in pods if p["status"].get("phase") == "Succeeded")
            failed = sum(1 for p in pods if p["status"].get("phase") == "Failed")
            active = [p for p in pods if pod_is_active(p)]
            completions = int(spec.get("completions", 1))
            want = max(0, min(int(spec.get("parallelism", 1)), completions - succeeded))
            for _ in range(want - len(active)):
                self._store.create(pod_from_template(spec["template"], f"{meta['name']}-{random_suffix()}",
                                                     meta["namespace"], job), "Pod")
            status: Obj = {"active": max(want, len(active)) if succeeded < completions else 0,
                           "succeeded": succeeded, "failed": failed,
                           "startTime": job.get("status", {}).get("startTime") or now_rfc3339()}
            if succeeded >= completions and "completionTime" not in job.get("status", {}):
                status["completionTime"] = now_rfc3339()
                status["conditions"] = [{"type": "Complete", "status": "True",
                                         "lastTransitionTime": status["completionTime"]}]
            self._set_status(job, status)

    def _cronjobs(self) -> None:
        for cj in self._store.list("cronjobs"):
            jobs = self._owned("jobs", cj)
            active = [{"apiVersion": "batch/v1", "kind": "Job", "name": j["metadata"]["name"],
                       "namespace": j["metadata"]["namespace"], "uid": j["metadata"]["uid"]}
                      for j in jobs if not j.get("status", {}).get("completionTime")]
            self._set_status(cj, {"active": active} if active else {"active": []})

    def trigger_cronjob(self, cj: Obj) -> Obj:
        """Create the CronJob's next Job now, named like the real controller's (minutes since
        the epoch of the scheduled time)."""
        meta = cj["metadata"]
        existing = [int(j["metadata"]["name"].rsplit("-", 1)[-1]) for j in self._owned("jobs", cj)
                    if j["metadata"]["name"].rsplit("-", 1)[-1].isdigit()]
        n = max([int(time.time() // 60), *(e + 1 for e in existing)])
        jt = copy.deepcopy(cj["spec"]["jobTemplate"])
        scheduled = now_rfc3339()
        job = self._store.create({
            "metadata": {"name": f"{meta['name']}-{n}", "namespace": meta["namespace"],
                         "labels": dict(jt.get("metadata", {}).get("labels", {})),
                         "annotations": {"batch.kubernetes.io/cronjob-scheduled-timestamp": scheduled},
                         "ownerReferences": [owner_ref(cj)]},
            "spec": jt["spec"],
        }, "Job")
        cj["status"] = {**cj.get("status", {}), "lastScheduleTime": scheduled}
        self._store.update(cj)
        self.reconcile()
        return job

    # -- Endpoints -----------------------------------------------------------------------
    def _endpoints(self) -> None:
        for svc in self._store.list("services"):
            meta = svc["metadata"]
            ns, name = meta["namespace"], meta["name"]
            selector = svc["spec"].get("selector")
            existing = self._store.get("endpoints", ns, name)
            if not selector:
                continue  # selector-less services keep hand-written Endpoints
            match = selector_from_match_labels(selector)
            pods = [p for p in self._store.list("pods", ns, match) if pod_is_active(p)]
            subsets = self._subsets(svc, pods)
            body: Obj = {"metadata": {"name": name, "namespace": ns, "labels": dict(meta.get("labels", {}))},
                         "subsets": subsets}
            if existing is None:
                self._store.create(body, "Endpoints")
            elif existing.get("subsets") != subsets:
                existing["subsets"] = subsets
                self._store.update(existing)
        for ep in self._store.list("endpoints"):
            if self._store.get("services", ep["metadata"]["namespace"], ep["metadata"]["name"]) is None:
                self._store.delete("endpoints", ep["metadata"]["namespace"], ep["metadata"]["name"])

    @staticmethod
    def _subsets(svc: Obj, pods: list[Obj]) -> list[Obj]:
        if not pods:
            return []
        ports = []
        for sp in svc["spec"].get("ports", []):
            target = sp.get("targetPort", sp["port"])
            number = target
            if isinstance(target, str):
                number = next((p["containerPort"] for c in pods[0]["spec"].get("containers", [])
                               for p in c.get("ports", []) if p.get("name") == target), 0)
            port: Obj = {"port": int(number), "protocol": sp.get("protocol", "TCP")}
            if sp.get("name"):
                port["name"] = sp["name"]
            ports.append(port)

        def address(p: Obj) -> Obj:
            return {"ip": p["status"].get("podIP", ""), "nodeName": p["spec"].get("nodeName"),
                    "targetRef": {"kind": "Pod", "namespace": p["metadata"]["namespace"],
                                  "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}}

        subset: Obj = {"ports": ports}
        ready = [address(p) for p in pods if pod_is_ready(p)]
        not_ready = [address(p) for p in pods if not pod_is_ready(p)]
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        return [subset]
