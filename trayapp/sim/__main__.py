"""`python -m trayapp.sim`: serve a simulated cluster, or drive a running one's control API.

    python -m trayapp.sim serve --scenario demo.yaml --kubeconfig /tmp/kc [--port N] [--token T]
                                [--tls] [--latency SECONDS]
    python -m trayapp.sim delete-pod web-abc12-xyz --server http://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
import sys
import urllib.error
import urllib.request
from typing import Any

from trayapp.sim.cluster import SimCluster, TlsConfig
from trayapp.sim.demo import demo_scenario_text


async def _serve(args: argparse.Namespace) -> None:
    scenario = args.scenario if args.scenario else demo_scenario_text()
    cluster = SimCluster(args.name, port=args.port, token=args.token, scenario=scenario,
                         tls=_throwaway_tls() if args.tls else None,
                         bookmark_interval=args.bookmark_interval, latency=args.latency)
    await cluster.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if args.kubeconfig:
            cluster.write_kubeconfig(args.kubeconfig, context=args.name, namespace=args.namespace)
        print(cluster.url, flush=True)
        if args.kubeconfig:
            print(f"kubeconfig: {args.kubeconfig} (context {args.name})", flush=True)
        await stop.wait()
    finally:
        await cluster.stop()


def _throwaway_tls() -> TlsConfig:
    """HTTPS with a certificate for 127.0.0.1 from a CA made for this run (its PEM goes into the
    kubeconfig), from the test-only `trustme` package."""
    try:
        import trustme
    except ImportError:
        raise SystemExit("--tls needs the trustme package (pip install trustme)") from None
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return TlsConfig(context, ca.cert_pem.bytes())


def _control(server: str, action: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(f"{server.rstrip('/')}/_sim/{action}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["result"]
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("message", exc.reason)
        raise SystemExit(f"{action} failed: {detail}") from None
    except urllib.error.URLError as exc:
        raise SystemExit(f"cannot reach the simulator at {server}: {exc.reason}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trayapp.sim", description="kubetray's cluster simulator")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a simulated cluster until Ctrl-C")
    serve.add_argument("--scenario", help="scenario YAML file (default: the bundled demo)")
    serve.add_argument("--kubeconfig", help="write a kubeconfig for the cluster here")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--token", help="require this bearer token")
    serve.add_argument("--tls", action="store_true", help="serve HTTPS with a throwaway CA (needs trustme)")
    serve.add_argument("--name", default="kubetray-sim", help="context and cluster name")
    serve.add_argument("--namespace", default="default", help="the kubeconfig context's namespace")
    serve.add_argument("--bookmark-interval", type=float, default=5.0)
    serve.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                       help="API round trip to simulate: every byte to and from the API is delayed "
                            "by half of it each way (default 0)")

    def control(name: str, help_: str, *fields: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        for f in fields:
            p.add_argument(f)
        p.add_argument("--server", required=True, help="the simulator's URL, as `serve` printed it")
        p.add_argument("-n", "--namespace", default="default")
        return p

    control("delete-pod", "delete a pod (its controller replaces it)", "name")
    control("ready", "mark a pod Ready", "name")
    control("unready", "mark a pod not Ready", "name")
    control("restart", "restart a pod's container", "name")
    control("phase", "set a pod's phase", "name", "phase")
    control("scale", "scale a workload", "name", "replicas").add_argument("--kind", default="deployments")
    rollout = control("rollout", "change a deployment's pod template", "name")
    rollout.add_argument("--image")
    rollout.add_argument("--scale-down-delay", type=float)
    control("finish-rollout", "scale down the old pods of a held rollout", "name")
    control("trigger-cronjob", "create a CronJob's next Job now", "name")
    control("delete", "delete any object and what it owns", "kind", "name")
    control("compact", "forget watch history (older resourceVersions get 410)")
    control("token", "change the required bearer token", "token")
    control("state", "list pods")
    control("drop", "cut every API connection").add_argument("--down-for", type=float, default=0.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        asyncio.run(_serve(args))
        return 0
    body: dict[str, Any] = {"namespace": args.namespace}
    for key in ("name", "kind", "phase", "token", "image"):
        if getattr(args, key, None) is not None:
            body[key] = getattr(args, key)
    if args.command == "scale":
        body["replicas"] = int(args.replicas)
    if args.command == "rollout" and args.scale_down_delay is not None:
        body["scaleDownDelay"] = args.scale_down_delay
    if args.command == "drop":
        body["downFor"] = args.down_for
    result = _control(args.server, args.command, body)
    if result is not None:
        print(json.dumps(result, indent=2) if not isinstance(result, str) else result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
