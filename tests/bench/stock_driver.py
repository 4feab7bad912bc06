"""Path (c): the kubernetes client's stock `portforward`, in its own process so its CPU is its own.

    python tests/bench/stock_driver.py --kubeconfig KC --namespace NS --pod POD --port 8080

Uses the client the way its documentation and example show:
`pf = portforward(api.connect_get_namespaced_pod_portforward, pod, ns, ports="8080")`, then
`pf.socket(8080)`. One portforward per transfer; for new-connection latency one per request, as
the stock client has no listener to reuse (and one per connection of a burst, from as many
threads). Commands arrive as JSON lines on stdin (`{"op": "download"|"upload"|"latency"|"burst"|
"quit", ...}`) and each gets one JSON line on stdout, so the bench can read this process's CPU
between commands.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import httpload
from kubernetes import config
from kubernetes.client import CoreV1Api
from kubernetes.stream import portforward


class StockForward:
    """Opens a fresh stock portforward and hands out its socket."""

    def __init__(self, api: CoreV1Api, namespace: str, pod: str, port: int) -> None:
        self._api = api
        self._namespace = namespace
        self._pod = pod
        self._port = port

    def connect(self) -> httpload.Conn:
        pf = portforward(self._api.connect_get_namespaced_pod_portforward, self._pod,
                         self._namespace, ports=str(self._port))
        sock = pf.socket(self._port)
        sock.settimeout(httpload.SOCKET_TIMEOUT)
        return sock  # closing it ends pf's proxy thread and its WebSocket


def run_command(forward: StockForward, command: dict[str, Any]) -> dict[str, Any]:
    deadline = time.perf_counter() + float(command["timeout"])
    op = command["op"]
    try:
        if op == "burst":
            ms = httpload.burst(forward.connect, int(command["count"]), deadline)
            return {"ok": True, "ms": ms}
        if op == "latency":
            result = httpload.latency(forward.connect, int(command["count"]),
                                      bool(command["keepalive"]), deadline)
            return {"ok": True, **result.to_json()}
        conn = forward.connect()
        try:
            if op == "download":
                transfer = httpload.download(conn, int(command["size"]), deadline)
            elif op == "upload":
                transfer = httpload.upload(conn, int(command["size"]), command["sha256"], deadline)
            else:
                return {"ok": False, "error": f"unknown op {op!r}"}
        finally:
            conn.close()
        return {"ok": True, **transfer.to_json()}
    except httpload.CheckFailed as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any failure becomes the row's FAILED text
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--pod", required=True)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    config.load_kube_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    forward = StockForward(CoreV1Api(), args.namespace, args.pod, args.port)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("op") == "quit":
            break
        print(json.dumps(run_command(forward, command)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
