"""`kubetray status [--json]`: the running kubetray's tunnels, asked for over its instance socket."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from trayapp.model import AutoSource
from trayapp.platform.instance import ask

_MARKS = {"forwarding": "ok", "waiting": "..", "reconnecting": "~~", "failed": "!!", "stopped": "--"}


def status_text(answer: dict[str, Any]) -> str:
    """The current context's tunnels under its heading, then each other context's (the pinned ones)
    under a heading of its own."""
    lines = []
    context = answer.get("context") or "(no context)"
    namespace = answer.get("namespace")
    head = f"context {context}" + (f", namespace {namespace}" if namespace else "")
    if context in (answer.get("pinnedContexts") or []):
        head += " (pinned)"
    if answer.get("paused"):
        head += " (paused)"
    lines.append(head)
    if answer.get("problem"):
        lines.append(f"  problem: {answer['problem']}")
    tunnels = answer.get("tunnels") or []
    groups: dict[str, list[dict[str, Any]]] = {}
    for tunnel in tunnels:
        groups.setdefault(str(tunnel.get("context") or context), []).append(tunnel)
    if not groups.get(context):
        lines.append("  no tunnels")
    width = max((len(str(t.get("rule"))) for t in tunnels), default=0)
    for name in sorted(groups, key=lambda n: n != context):
        if name != context:
            lines.append(f"pinned context {name}")
        lines.extend(_tunnel_line(tunnel, width) for tunnel in groups[name])
    return "\n".join(lines) + "\n"


def _tunnel_line(tunnel: dict[str, Any], width: int) -> str:
    state = str(tunnel.get("state"))
    pod = f"  pod {tunnel['pod']}" if tunnel.get("pod") else ""
    if pod and tunnel.get("transport"):
        pod += f" over {tunnel['transport']}"
    line = (f"  {_MARKS.get(state, '  ')} {state:<12} {str(tunnel.get('rule')):<{width}}  {_where(tunnel)}{pod}"
            f"{_source(tunnel)}")
    if tunnel.get("reason") and state != "forwarding":
        line += f"\n       {tunnel['reason']}"
    return line


def _where(tunnel: dict[str, Any]) -> str:
    """The URL where the tunnel is a web page, else the address it listens on; a listener other
    machines can reach says so either way."""
    url, listen = tunnel.get("url"), tunnel.get("listen")
    if url and tunnel.get("openToNetwork") and listen:
        return f"{url} ({listen})"
    return str(url or listen or "no local port yet")


def _source(tunnel: dict[str, Any]) -> str:
    if not tunnel.get("auto"):
        return ""
    try:
        title = AutoSource(tunnel.get("source")).heading
    except ValueError:
        return "  (automatic)"
    return f"  (automatic: {title})"


def run_status(as_json: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    answer = ask({"request": "status"})
    if answer is None:
        err.write("kubetray is not running for this user; start it with `kubetray` (or `kubetray --headless`).\n")
        return 3
    if as_json:
        out.write(json.dumps(answer, indent=2) + "\n")
    else:
        out.write(f"kubetray is running (process {answer.get('pid')}, {answer.get('mode')}).\n")
        out.write(status_text(answer))
    return 0
