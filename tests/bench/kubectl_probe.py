"""Path (d): does `kubectl port-forward` work against the simulator at all? A few seconds, no more.

kubectl 1.32 speaks SPDY tunnelled in a WebSocket (`SPDY/3.1+portforward.k8s.io`), then plain
SPDY; the simulator serves both beside `v4.channel.k8s.io`. The row quotes kubectl's own error
line when it fails, and says so, with one GET / checked, when it gets through.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import httpload
from procs import Children

PROBE_SECONDS = 8.0
_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ")


def probe_kubectl(children: Children, kubeconfig: Path, target: str, port: int, cwd: Path) -> str:
    """One line for the table's (d) row: why it was skipped, or that one request worked."""
    kubectl = shutil.which("kubectl") or "/usr/bin/kubectl"
    if not Path(kubectl).exists():
        return "skipped: kubectl not found"
    child = children.start("kubectl", [kubectl, "--kubeconfig", str(kubeconfig), "port-forward",
                                       "--address", "127.0.0.1", target, f":{port}"], cwd)
    try:
        try:
            line = child.expect(lambda text: _FORWARDING.search(text) is not None, PROBE_SECONDS)
        except (TimeoutError, EOFError):
            time.sleep(0.2)  # let kubectl's last stderr line land in the file
            return f"skipped: kubectl failed: `{_error_line(child.stderr_lines())}`"
        match = _FORWARDING.search(line)
        assert match is not None
        conn = httpload.tcp_connect(("127.0.0.1", int(match.group(1))))
        conn.settimeout(5.0)
        try:
            httpload.small_get(conn, time.perf_counter() + 5.0)
        except (httpload.CheckFailed, OSError) as exc:
            time.sleep(0.2)
            lines = child.stderr_lines()
            detail = _error_line(lines) if lines else str(exc)
            return f"skipped: kubectl listened but a request failed: `{detail}`"
        finally:
            conn.close()
        return "skipped: kubectl forwarded one request fine, but the bench does not measure it yet"
    finally:
        children.stop(child)


def _error_line(lines: list[str]) -> str:
    for line in lines:
        if "error" in line.lower():
            return line.strip()
    return lines[-1].strip() if lines else "(no output)"
