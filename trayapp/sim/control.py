"""The control API over HTTP, under `/_sim/` (a prefix Kubernetes never uses), so that a simulator
running in another process (`python -m trayapp.sim serve`) can be driven like the in-process one.

`POST /_sim/<action>` with a JSON object of arguments; the answer is `{"result": ...}` or a
`Status`. `GET /_sim/state` lists pods. No authentication: the server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trayapp.sim.http import HttpConnection, Request
from trayapp.sim.objects import pod_is_ready, status
from trayapp.sim.store import StoreError

if TYPE_CHECKING:
    from trayapp.sim.cluster import SimCluster

Action = Callable[["SimCluster", dict[str, Any]], Any]


def _pod_summary(cluster: SimCluster) -> list[dict[str, Any]]:
    return [{"namespace": p["metadata"]["namespace"], "name": p["metadata"]["name"],
             "phase": p["status"].get("phase"), "ready": pod_is_ready(p)} for p in cluster.pods(None)]


ACTIONS: dict[str, Action] = {
    "delete-pod": lambda c, a: c.delete_pod(a.get("namespace", "default"), a["name"]),
    "ready": lambda c, a: bool(c.set_ready(a.get("namespace", "default"), a["name"], True)) and None,
    "unready": lambda c, a: bool(c.set_ready(a.get("namespace", "default"), a["name"], False)) and None,
    "phase": lambda c, a: bool(c.set_phase(a.get("namespace", "default"), a["name"], a["phase"])) and None,
    "restart": lambda c, a: bool(c.restart_container(a.get("namespace", "default"), a["name"])) and None,
    "scale": lambda c, a: bool(c.scale(a.get("kind", "deployments"), a.get("namespace", "default"),
                                       a["name"], int(a["replicas"]))) and None,
    "rollout": lambda c, a: bool(c.rollout(a.get("namespace", "default"), a["name"], a.get("image"),
                                           a.get("annotations"), a.get("kind", "deployments"),
                                           a.get("scaleDownDelay"))) and None,
    "finish-rollout": lambda c, a: c.finish_rollout(a.get("namespace", "default"), a["name"]),
    "trigger-cronjob": lambda c, a: c.trigger_cronjob(a.get("namespace", "default"), a["name"]),
    "create": lambda c, a: c.create(a["object"])["metadata"]["name"],
    "apply": lambda c, a: c.apply(a["object"])["metadata"]["name"],
    "delete": lambda c, a: bool(c.delete(a["kind"], a.get("namespace", "default"), a["name"])),
    "compact": lambda c, a: c.compact_history(),
    "token": lambda c, a: c.set_token(a.get("token")),
    "state": lambda c, a: _pod_summary(c),
}


class ControlHandler:
    def __init__(self, cluster: SimCluster, tasks: set[asyncio.Task[None]]) -> None:
        self._cluster = cluster
        self._tasks = tasks  # the cluster's: cancelled when it stops

    def handle(self, request: Request, conn: HttpConnection) -> None:
        action = request.path[len("/_sim/"):].strip("/")
        try:
            args = json.loads(request.body) if request.body else {}
            if not isinstance(args, dict):
                raise TypeError("the body must be a JSON object")
            if action == "drop":
                conn.respond_json(200, {"result": None}, close=True)
                self._drop(float(args.get("downFor", 0)))
                return
            if action not in ACTIONS:
                conn.respond_json(404, status(404, "NotFound", f"no control action {action!r}; "
                                              f"try one of: drop, {', '.join(ACTIONS)}"))
                return
            result = ACTIONS[action](self._cluster, args)
        except StoreError as exc:
            conn.respond_json(exc.code, status(exc.code, exc.reason, exc.message))
            return
        except (KeyError, ValueError, TypeError) as exc:
            conn.respond_json(400, status(400, "BadRequest", f"bad arguments for {action}: {exc}"))
            return
        conn.respond_json(200, {"result": result})

    def _drop(self, down_for: float) -> None:
        # Answer first, then cut: the caller's own connection is one of those dropped.
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._cluster.drop_connections(down_for), name="sim:control:drop")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
