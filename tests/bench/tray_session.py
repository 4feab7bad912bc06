"""What bench_tray.py needs from a real desktop: the session (tests/desktop's harness, started
outside pytest), one tray process at a time with fresh XDG folders, and three ways to see it.

- `ask(...)`: the app's own instance socket (`{"request": "ui"}` / `{"request": "status"}`);
- `XWatch`: the X server's view, from `xwininfo -root -tree` + `xprop` in a thread: an
  `_XEMBED_INFO` window inside trayer's panel (the icon embedded), and the first viewable
  override-redirect window of a given pid's WM_CLASS (a menu on screen);
- `memory(pid)`: VmRSS / VmHWM from /proc.

The bench polls (every ~10 ms); the app never has to. Linux only.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from setup_paths import REPO

from trayapp.platform.instance import ask as instance_ask

sys.path.insert(0, str(REPO / "tests" / "desktop"))
import harness

# What with-desktop.sh and this module run; the harness's full list also has the screenshot and
# browser tools the desktop tests use, which the bench does without.
NEEDED_TOOLS = ("Xvfb", "trayer", "dunst", "dbus-run-session", "dbus-send",
                "dbus-update-activation-environment", "gnome-keyring-daemon", "xwininfo", "xprop")
POLL = 0.01  # seconds between the bench's looks


def session_unavailable() -> str | None:
    """Why no desktop session can run here, or None."""
    if not sys.platform.startswith("linux"):
        return "needs Linux (Xvfb, trayer)"
    missing = [t for t in NEEDED_TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not found; install: sudo {harness.install_hint(missing)}"
    try:
        import jeepney  # noqa: F401  (the harness's session program watches the bus with it)
    except ImportError:
        return "jeepney (the harness's bus monitor) is not installed in this venv"
    return None


class Session:
    """One Xvfb + trayer + dunst + gnome-keyring session on a private bus, for the whole bench."""

    def __init__(self) -> None:
        self._files = Path(tempfile.mkdtemp(prefix="kubetray-bench-desktop-"))
        self.desktop = harness.start_desktop(self._files)
        self.env: dict[str, str] = dict(self.desktop.env)

    def close(self) -> list[str]:
        stragglers = self.desktop.close()
        shutil.rmtree(self._files, ignore_errors=True)
        return stragglers

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def run(self, argv: Sequence[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=False)


class App:
    """One process (in the session when `base_env` is the session's) with its own fresh XDG_RUNTIME_DIR, XDG_CONFIG_HOME and
    XDG_STATE_HOME (no instance socket, settings or remembered ports of an earlier run).
    `t0` is taken just before Popen."""

    def __init__(self, base_env: Mapping[str, str], argv: Sequence[str]) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="kubetray-bench-app-"))
        runtime = self.home / "runtime"
        runtime.mkdir(mode=0o700)
        env = {**base_env, "XDG_RUNTIME_DIR": str(runtime), "XDG_CONFIG_HOME": str(self.home / "config"),
               "XDG_STATE_HOME": str(self.home / "state")}
        self.folder = runtime / "kubetray"
        self.fatal: str | None = None  # "Fatal Python error: ..." from its stderr, once stopped  # trayapp.platform.instance.instance_dir() for this env
        self._stderr: IO[bytes] = tempfile.TemporaryFile(prefix="kubetray-bench-app-")  # noqa: SIM115
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(list(argv), cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._stderr)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ask(self, request: str, timeout: float = 2.0) -> dict[str, Any] | None:
        return instance_ask({"request": request}, timeout, folder=self.folder)

    def forwarding(self) -> int | None:
        """How many tunnels the app reports `forwarding` (None: it does not answer yet)."""
        status = self.ask("status")
        if status is None or "tunnels" not in status:
            return None
        return sum(1 for t in status["tunnels"] if t.get("state") == "forwarding")

    def wait_forwarding(self, count: int, timeout: float) -> float:
        """Seconds from t0 until `count` tunnels forward; RuntimeError on timeout or exit."""
        deadline = self.t0 + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if (self.forwarding() or 0) >= count:
                return time.monotonic() - self.t0
            time.sleep(POLL)
        raise RuntimeError(f"{count} tunnels were not forwarding within {timeout:.0f} s "
                           f"(last count {self.forwarding()}); stderr: {self.stderr_tail()}")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the app exited with {self.proc.returncode}: {self.stderr_tail()}")

    def stderr_tail(self, lines: int = 5) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no stderr)"

    def stop(self, grace: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(grace)
        self._stderr.seek(0)
        self.fatal = next((line for line in self._stderr.read().decode(errors="replace").splitlines()
                           if line.startswith("Fatal Python error")), None)
        self._stderr.close()
        shutil.rmtree(self.home, ignore_errors=True)


@dataclass(frozen=True)
class Memory:
    rss_mb: float  # VmRSS, 10^6 bytes
    hwm_mb: float  # VmHWM (peak RSS)
    threads: int


def memory(pid: int) -> Memory:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ":" in line)

    def mb(name: str) -> float:
        return int(fields[name].split()[0]) * 1024 / 1e6

    return Memory(mb("VmRSS"), mb("VmHWM"), int(fields["Threads"]))


_TREE_LINE = re.compile(r"^\s*(0x[0-9a-f]+) ")


class XWatch:
    """Polls the X server in a thread (`xwininfo -root -tree`, a few ms per look) and notes when
    it first saw each thing `wanted` returns true for. Start it just before the process it
    watches, read `seen_at`."""

    def __init__(self, session: Session, wanted: Callable[[Session, list[dict[str, Any]]], bool]) -> None:
        self._session = session
        self._wanted = wanted
        self._stop = threading.Event()
        self.seen_at: float | None = None
        self.looks = 0
        self._thread = threading.Thread(target=self._run, name="bench:x-watch", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set() and self.seen_at is None:
            listing = self._session.run(["xwininfo", "-root", "-tree"])
            at = time.monotonic()
            self.looks += 1
            if listing.returncode == 0 and self._wanted(self._session, harness.parse_tree(listing.stdout)):
                self.seen_at = at
                return
            time.sleep(POLL)

    def wait(self, timeout: float) -> float | None:
        self._thread.join(timeout)
        return self.seen_at

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


def _xprop(session: Session, window: str, *names: str) -> str:
    done = session.run(["xprop", "-id", window, *names])
    return done.stdout if done.returncode == 0 else ""


def icon_embedded(session: Session, windows: list[dict[str, Any]]) -> bool:
    """An XEmbed client (a window with _XEMBED_INFO) inside trayer's panel, viewable."""
    panels = {w["id"] for w in windows if w["wm_class"] == ["panel", "trayer"]}
    inside = set(panels)
    for window in windows:  # parents come before their children
        if window["parent"] in inside:
            inside.add(window["id"])
    for window in windows:
        if window["id"] in inside - panels and _xprop(session, window["id"], "_XEMBED_INFO").startswith(
                "_XEMBED_INFO("):
            state = session.run(["xwininfo", "-id", window["id"]]).stdout
            if "IsViewable" in state:
                return True
    return False


def embedded_icons(session: Session) -> int:
    """How many XEmbed icons trayer holds right now (to check the panel is empty between runs)."""
    listing = session.run(["xwininfo", "-root", "-tree"])
    if listing.returncode != 0:
        return -1
    windows = harness.parse_tree(listing.stdout)
    panels = {w["id"] for w in windows if w["wm_class"] == ["panel", "trayer"]}
    inside = set(panels)
    for window in windows:
        if window["parent"] in inside:
            inside.add(window["id"])
    return sum(1 for w in windows if w["id"] in inside - panels
               and _xprop(session, w["id"], "_XEMBED_INFO").startswith("_XEMBED_INFO("))


def wait_tray_empty(session: Session, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while embedded_icons(session) > 0 and time.monotonic() < deadline:
        time.sleep(0.05)


def menu_shown(session: Session, windows: list[dict[str, Any]]) -> bool:
    """A viewable override-redirect top-level window of WM_CLASS class "kubetray" bigger than
    1x1 (Qt's hidden leader window): the menu, mapped by the X server."""
    root_children = [w for w in windows if w["parent"] == windows[0]["parent"]] if windows else []
    for window in root_children:
        if (window["wm_class"] or [""])[-1] != "kubetray" or window["width"] <= 1:
            continue
        state = session.run(["xwininfo", "-id", window["id"]]).stdout
        if "IsViewable" in state and "Override Redirect State: yes" in state:
            return True
    return False
