"""The real-desktop harness: one Xvfb + tray host + dunst + gnome-keyring session for all desktop tests.

The tray host is trayer (XEmbed) by default; `start_desktop(host="sni")` starts a
StatusNotifierItem host instead (status-notifier-watcher and gtk-sni-tray-standalone), as most
Linux desktops have; sni.py asks such a host's questions over the bus.

`start_desktop()` runs `dbus-run-session -- with-desktop.sh python harness.py session ...`. The
program inside (`session_main`, this file run as a script) watches the bus for notifications,
prints the session's environment as one JSON line and then waits until its stdin closes. The
pytest process reads that line and builds a `Desktop`: an environment and helpers for the test's
own subprocesses. Pytest itself never connects to the X server or the session bus, so nothing a
test does can leak the virtual display into the rest of the suite.

Notifications are seen by a D-Bus monitor (`BecomeMonitor`) started before the session is
announced, not by asking dunst: `dunstctl history` lists only closed and expired notifications,
and closing the displayed ones to read them would change what a test sees on screen. The monitor
pairs each `Notify` call with dunst's reply (which carries the id) and records `NotificationClosed`
and `ActionInvoked`, so a notification appears in `Desktop.notifications()` exactly when dunst
accepted it, displayed or not.

Linux only; the fixture in conftest.py skips when the tools are missing.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sni import SniClient

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCRIPT = HERE / "with-desktop.sh"

# What the session program reports; everything else in Desktop.env comes from pytest's own environment.
SESSION_VARIABLES = (
    "DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "HOME",
    "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME",
)
# Variables of the developer's own desktop that would steer a client away from ours: xdg-open
# picks a desktop-specific opener when it sees a named desktop, and Qt or GTK would use Wayland.
FOREIGN_VARIABLES = (
    "XDG_CURRENT_DESKTOP", "DESKTOP_SESSION", "WAYLAND_DISPLAY", "XAUTHORITY",
    "KDE_FULL_SESSION", "GNOME_DESKTOP_SESSION_ID", "XDG_SESSION_DESKTOP",
)
# Every process of a session carries this variable with the session's own value, so teardown can
# find stragglers that left the process group (D-Bus-activated services, double-forked helpers).
MARKER = "KUBETRAY_DESKTOP_SESSION"

# Command-line tools the harness runs, and the Debian packages that hold them.
REQUIRED_TOOLS: dict[str, str] = {
    "Xvfb": "xvfb",
    "trayer": "trayer",
    "dunst": "dunst",
    "dunstctl": "dunst",
    "dbus-run-session": "dbus",
    "dbus-send": "dbus",
    "dbus-update-activation-environment": "dbus",
    "gnome-keyring-daemon": "gnome-keyring",
    "secret-tool": "libsecret-tools",
    "xdotool": "xdotool",
    "import": "imagemagick",
    "convert": "imagemagick",
    "xwininfo": "x11-utils",
    "xprop": "x11-utils",
    "desktop-file-validate": "desktop-file-utils",
    "xdg-open": "xdg-utils",
}

# The tray hosts with-desktop.sh can start, and what each needs beyond REQUIRED_TOOLS.
TRAY_HOSTS = ("xembed", "sni")
SNI_TOOLS: dict[str, str] = {
    "status-notifier-watcher": "haskell-status-notifier-item-utils",
    "gtk-sni-tray-standalone": "haskell-gtk-sni-tray-utils",
}
ALL_TOOLS = {**REQUIRED_TOOLS, **SNI_TOOLS}

START_TIMEOUT = 30.0

NOTIFY_SIGNATURE = "susssasa{sv}i"
# A signal of our own that the notification monitor logs, to know it has caught up.
SYNC_PATH = "/dev/kubetray/DesktopHarness"
SYNC_INTERFACE = "dev.kubetray.DesktopHarness"


def tools_for(host: str) -> dict[str, str]:
    """The tools a session with this tray host runs: tool -> Debian package."""
    if host == "xembed":
        return REQUIRED_TOOLS
    if host == "sni":
        return {**{t: p for t, p in REQUIRED_TOOLS.items() if t != "trayer"}, **SNI_TOOLS}
    raise ValueError(f"unknown tray host {host!r}; known: {', '.join(TRAY_HOSTS)}")


def missing_tools(path: str | None = None, host: str = "xembed") -> list[str]:
    """The required tools not found on `path` (default: $PATH), in a stable order."""
    return [tool for tool in tools_for(host) if shutil.which(tool, path=path) is None]


def install_hint(tools: Iterable[str]) -> str:
    packages = sorted({ALL_TOOLS[tool] for tool in tools})
    return "apt-get install --no-install-recommends " + " ".join(packages)


def unavailable_reason(path: str | None = None, host: str = "xembed") -> str | None:
    """Why this machine cannot run a desktop session with this tray host, or None when it can."""
    which = "desktop tests" if host == "xembed" else "StatusNotifierItem desktop tests"
    if not sys.platform.startswith("linux"):
        return f"The {which} need Linux (Xvfb, a tray host, dunst and gnome-keyring)."
    missing = missing_tools(path, host)
    if missing:
        return (f"The {which} need {', '.join(missing)}, not found on PATH. "
                f"Install them with: sudo {install_hint(missing)}")
    return None


class Desktop:
    """A running desktop session, as the tests see it. Build it with `start_desktop()`."""

    def __init__(self, session: Mapping[str, str], files: Path, process: subprocess.Popen[str],
                 marker: str, host: str = "xembed") -> None:
        self.host = host  # the tray host: "xembed" (trayer) or "sni" (a StatusNotifierItem host)
        self.artifacts: Path = REPO / "test-artifacts" / "desktop"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.browser_log: Path = files / "browser.log"
        self._notify_log = files / "notifications.jsonl"
        self._notify_start = 0
        self._process = process
        self._marker = marker
        self._started: list[subprocess.Popen[Any]] = []
        browser = files / "fake-browser"
        # xdg-open may run the browser detached; appending whole lines keeps runs apart.
        browser.write_text(
            "#!/bin/sh\n"
            "# Stands in for a web browser: records what it was asked to open, one argument a line.\n"
            f"for arg in \"$@\"; do printf '%s\\n' \"$arg\" >> '{self.browser_log}'; done\n",
            encoding="utf-8",
        )
        browser.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_VARIABLES}
        env.update(session)
        env.update({
            MARKER: marker,
            "BROWSER": str(browser),
            # keyrings.alt, when installed, would otherwise be chosen over the Secret Service.
            "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring",
            "QT_QPA_PLATFORM": "xcb",
        })
        self.env: dict[str, str] = env

    # --- processes -------------------------------------------------------------------------

    def _env_with(self, extra_env: Mapping[str, str] | None) -> dict[str, str]:
        return {**self.env, **(extra_env or {})}

    def run(self, argv: Sequence[str | os.PathLike[str]], *, extra_env: Mapping[str, str] | None = None,
            **kw: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run in the session; text mode and captured output unless `kw` says otherwise."""
        kw.setdefault("text", True)
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 60)
        kw.setdefault("env", self._env_with(extra_env))
        return subprocess.run([str(a) for a in argv], **kw)

    def popen(self, argv: Sequence[str | os.PathLike[str]], *, extra_env: Mapping[str, str] | None = None,
              **kw: Any) -> subprocess.Popen[Any]:
        """subprocess.Popen in the session. The harness stops it at the end of the session at the
        latest, but a test should stop what it started."""
        kw.setdefault("env", self._env_with(extra_env))
        process = subprocess.Popen([str(a) for a in argv], **kw)
        self._started.append(process)
        return process

    def xdotool(self, *args: str | int) -> subprocess.CompletedProcess[str]:
        return self.run(["xdotool", *map(str, args)], check=True)

    # --- looking at the screen -------------------------------------------------------------

    def screenshot(self, name: str) -> Path:
        """The whole virtual screen as artifacts/NAME.png."""
        path = self.artifacts / f"{name}.png"
        self.run(["import", "-window", "root", path], check=True)
        return path

    def pixel(self, path: Path, x: int, y: int) -> tuple[int, int, int]:
        """The RGB colour at (x, y) of an image file."""
        raw = self.run(["convert", path, "-crop", f"1x1+{x}+{y}", "+repage", "-depth", "8", "rgb:-"],
                       check=True, text=False).stdout
        if len(raw) != 3:
            raise AssertionError(f"({x}, {y}) is outside {path}: convert gave {len(raw)} bytes, not 3")
        return raw[0], raw[1], raw[2]

    def windows(self) -> list[dict[str, Any]]:
        """Every X window, in `xwininfo -root -tree` order, with its parent's id."""
        for _ in range(20):
            listing = self.run(["xwininfo", "-root", "-tree"])
            if listing.returncode == 0:
                return parse_tree(listing.stdout)
            # xwininfo gives up (BadWindow) when a window closes while it walks the tree.
            time.sleep(0.05)
        raise AssertionError(f"xwininfo -root -tree kept failing: {listing.stderr.strip()}")

    def tray_windows(self) -> list[dict[str, Any]]:
        """Icons embedded in trayer's panel: id, name, x, y, width, height (root coordinates)."""
        windows = self.windows()
        panels = {w["id"] for w in windows if w["wm_class"] == ["panel", "trayer"]}
        inside: set[str] = set(panels)
        for window in windows:  # parents come before their children
            if window["parent"] in inside:
                inside.add(window["id"])
        # trayer wraps each icon in a socket window of its own; the icon is the one with _XEMBED_INFO.
        return [w for w in windows if w["id"] in inside - panels and self._is_xembed_client(w["id"])]

    def sni(self) -> SniClient:
        """A connection to this session's bus that asks what a StatusNotifierItem host asks."""
        from .sni import SniClient

        return SniClient(self.env["DBUS_SESSION_BUS_ADDRESS"])

    def visible_windows(self, wm_class: str) -> list[dict[str, Any]]:
        """The mapped windows of that X class (xwininfo's tree lists unmapped ones too)."""
        found = self.run(["xdotool", "search", "--onlyvisible", "--class", f"^{re.escape(wm_class)}$"])
        ids = {int(i) for i in found.stdout.split()}
        return [w for w in self.windows() if int(w["id"], 16) in ids]

    def sni_bar(self) -> dict[str, Any]:
        """gtk-sni-tray-standalone's bar window (root coordinates); only in an "sni" session.
        It is the host's window along the top edge (--top); its menus and tooltips open below."""
        # The host registers on the bus before GTK has mapped and sized its bar: wait for it.
        until = time.monotonic() + 10
        while True:
            bars = [w for w in self.windows()
                    if w["wm_class"] == ["gtk-sni-tray-standalone", "Gtk-sni-tray-standalone"] and w["y"] == 0
                    and w["height"] > 10]
            if len(bars) == 1 or time.monotonic() > until:
                break
            time.sleep(0.1)
        assert len(bars) == 1, f"expected one gtk-sni-tray-standalone bar, got {bars}"
        return bars[0]

    def sni_bar_icons(self, shot: Path) -> list[dict[str, int]]:
        """The icons drawn in the SNI bar of screenshot `shot`, left to right: x, y, width, height.

        The bar is one GTK window with no X window per icon, so the icons are found in the
        picture: runs of columns with a pixel unlike the bar's background (its top-right pixel),
        bounded by the rows where they differ."""
        bar = self.sni_bar()
        raw = self.run(["convert", shot, "-crop", f"{bar['width']}x{bar['height']}+{bar['x']}+{bar['y']}",
                        "+repage", "-depth", "8", "rgb:-"], check=True, text=False).stdout
        width, height = bar["width"], bar["height"]
        assert len(raw) == 3 * width * height, f"the bar {bar} is not inside {shot}"
        background = raw[3 * (width - 1):3 * width]

        def differs(x: int, y: int) -> bool:
            i = 3 * (y * width + x)
            return raw[i:i + 3] != background

        columns = [x for x in range(width) if any(differs(x, y) for y in range(height))]
        icons: list[dict[str, int]] = []
        for x in columns:
            if icons and x == icons[-1]["x"] + icons[-1]["width"]:
                icons[-1]["width"] += 1
            else:
                icons.append({"x": x, "y": 0, "width": 1, "height": 0})
        for icon in icons:
            rows = [y for y in range(height) if any(differs(x, y) for x in range(icon["x"], icon["x"] + icon["width"]))]
            icon.update(x=bar["x"] + icon["x"], y=bar["y"] + rows[0], height=rows[-1] - rows[0] + 1)
        return icons

    def _is_xembed_client(self, window: str) -> bool:
        answer = self.run(["xprop", "-id", window, "_XEMBED_INFO"])
        return answer.returncode == 0 and answer.stdout.startswith("_XEMBED_INFO(")

    # --- notifications ---------------------------------------------------------------------

    def notifications(self) -> list[dict[str, Any]]:
        """Notifications dunst accepted since the test began, displayed or closed, oldest first.

        Keys: id, appname, summary, body, icon, actions, urgency (None without the hint),
        timeout, replaces_id, closed (None while displayed, else the close reason: 1 expired,
        2 dismissed, 3 closed by a call) and invoked (action keys the user triggered). A
        notification that replaced an earlier one shows the newest content under its id.
        Everything that reached the bus before this call is included: a Notify whose reply
        the caller already has, an ActionInvoked it already handled. To wait for something
        another process sends, poll with `wait_for`.
        """
        self._sync_monitor()
        shown: dict[int, dict[str, Any]] = {}
        pending: dict[tuple[str, int], dict[str, Any]] = {}
        for record in self._notify_records():
            kind = record["kind"]
            if kind == "notify":
                pending[(record["sender"], record["serial"])] = record
            elif kind == "reply":
                call = pending.pop((record["destination"], record["reply_serial"]), None)
                if call is not None:
                    shown[record["id"]] = {
                        "id": record["id"], "appname": call["appname"], "summary": call["summary"],
                        "body": call["body"], "icon": call["icon"], "actions": call["actions"],
                        "urgency": call["urgency"], "timeout": call["timeout"],
                        "replaces_id": call["replaces_id"], "closed": None,
                        "invoked": shown.get(record["id"], {}).get("invoked", []),
                    }
            elif kind == "closed" and record["id"] in shown:
                shown[record["id"]]["closed"] = record["reason"]
            elif kind == "action" and record["id"] in shown:
                shown[record["id"]]["invoked"].append(record["action"])
            elif kind == "monitor-error":
                raise AssertionError(f"The notification monitor could not read a message: {record['error']}")
        return list(shown.values())

    def _sync_monitor(self) -> None:
        """Send a signal through the bus and wait until the monitor has logged it. The bus hands
        messages to the monitor in the order it routed them, so everything before is logged too."""
        token = uuid.uuid4().hex
        self.run(["dbus-send", "--session", "--type=signal", SYNC_PATH, f"{SYNC_INTERFACE}.Sync",
                  f"string:{token}"], check=True)
        wanted = json.dumps({"kind": "sync", "token": token}).encode()
        deadline = time.monotonic() + 10
        while wanted not in self._notify_log.read_bytes():
            if time.monotonic() > deadline:
                raise AssertionError("The notification monitor did not log its sync signal within 10 s; "
                                     "is the desktop session still running?")
            time.sleep(0.005)

    def _notify_records(self) -> list[dict[str, Any]]:
        with self._notify_log.open("rb") as log:
            log.seek(self._notify_start)
            data = log.read()
        # A line still being written has no newline yet; it is read next time.
        return [json.loads(line) for line in data.split(b"\n")[:-1]]

    # --- between tests ---------------------------------------------------------------------

    def reset(self) -> None:
        """Forget what earlier tests left: notifications on screen and in the lists, browser runs."""
        self.run(["dunstctl", "close-all"])
        # dunst 1.9 (Debian 12) has no history-clear; later versions do.
        if "history-clear" in self.run(["dunstctl", "help"]).stdout:
            self.run(["dunstctl", "history-clear"])
        self.browser_log.write_text("", encoding="utf-8")
        self._sync_monitor()  # close-all's NotificationClosed signals belong before the cut
        self._notify_start = self._notify_log.stat().st_size

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "the condition") -> Any:
        """Poll `predicate` every 50 ms until it returns something true, and return that."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"Waited {timeout:g} s for {what}, in vain.")
            time.sleep(0.05)

    # --- teardown --------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Stop the session and everything started in it; returns the stragglers that had to be
        killed after the orderly shutdown (empty when everything stopped by itself)."""
        for process in self._started:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        # Closing stdin ends the session program; with-desktop.sh then stops its services and
        # dbus-run-session its bus.
        if self._process.stdin:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        with_marker = [f"{pid} {name}" for pid, name in processes_with(MARKER, self._marker)]
        kill_session(self._process, self._marker)
        return with_marker


def parse_tree(text: str) -> list[dict[str, Any]]:
    """`xwininfo -root -tree` output as a list of windows with absolute geometry and parent id."""
    line_re = re.compile(
        r"^(?P<indent>\s*)(?P<id>0x[0-9a-f]+) (?:\"(?P<name>.*)\"|\(has no name\)): \((?P<cls>.*)\)"
        r"\s+(?P<w>\d+)x(?P<h>\d+)\+-?\d+\+-?\d+\s+\+(?P<x>-?\d+)\+(?P<y>-?\d+)\s*$")
    root = re.search(r"Root window id: (0x[0-9a-f]+)", text)
    stack: list[tuple[int, str]] = []  # (indent, id) of the windows enclosing the current line
    windows: list[dict[str, Any]] = []
    for line in text.splitlines():
        match = line_re.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else (root.group(1) if root else None)
        windows.append({
            "id": match["id"], "name": match["name"], "parent": parent,
            "wm_class": re.findall(r'"([^"]*)"', match["cls"]) or None,
            "x": int(match["x"]), "y": int(match["y"]),
            "width": int(match["w"]), "height": int(match["h"]),
        })
        stack.append((indent, match["id"]))
    return windows


def processes_with(variable: str, value: str) -> list[tuple[int, str]]:
    """Live (not zombie) processes whose environment has variable=value: (pid, command name)."""
    wanted = f"{variable}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        # Fields after the parenthesised command name: state first. Zombies are already dead.
        name, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2]
        if state != "Z":
            found.append((int(entry.name), name))
    return found


def kill_session(process: subprocess.Popen[str], marker: str) -> None:
    """SIGKILL the session's process group and any process still carrying its marker."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if process.poll() is None:
        process.wait(timeout=5)
    for _ in range(3):  # a dying parent may still spawn once; look again
        stragglers = processes_with(MARKER, marker)
        if not stragglers:
            return
        for pid, _name in stragglers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def start_desktop(files: Path, host: str = "xembed") -> Desktop:
    """Start a session whose working files (logs, fake browser) go in `files`, with `host` as
    its tray host (one of TRAY_HOSTS)."""
    tools_for(host)  # refuses an unknown host before anything starts
    marker = uuid.uuid4().hex
    notify_log = files / "notifications.jsonl"
    notify_log.touch()
    stderr_path = files / "session.stderr"
    with stderr_path.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            ["dbus-run-session", "--", str(SCRIPT),
             sys.executable, str(Path(__file__).resolve()), "session", str(notify_log)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
            env={**os.environ, MARKER: marker, "KUBETRAY_TRAY_HOST": host},
            # Its own process group: teardown kills the group without touching pytest.
            start_new_session=True,
        )
    try:
        line = _read_line(process, START_TIMEOUT)
        if not line:
            raise RuntimeError(
                "The desktop session ended before it was ready (exit status "
                f"{process.wait(timeout=5)}):\n{stderr_path.read_text(encoding='utf-8')}")
        session = json.loads(line)
    except BaseException:
        kill_session(process, marker)
        raise
    return Desktop(session, files, process, marker, host)


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(f"The desktop session did not report ready within {timeout:g} s.")
    return process.stdout.readline()


# --- the program inside the session ---------------------------------------------------------

def describe(message: Any, calls: set[tuple[str, int]]) -> dict[str, Any] | None:
    """One monitored bus message as a notification-log record, or None when it is not about
    notifications. `calls` holds the (sender, serial) of Notify calls still waiting for a reply."""
    from jeepney import HeaderFields, MessageType

    fields = message.header.fields
    kind = message.header.message_type
    if kind == MessageType.method_call:
        if fields.get(HeaderFields.signature) != NOTIFY_SIGNATURE:
            return None  # dunst refuses it with InvalidArgs: never shown
        sender, serial = fields.get(HeaderFields.sender, ""), message.header.serial
        calls.add((sender, serial))
        appname, replaces_id, icon, summary, body, actions, hints, timeout = message.body
        urgency = hints.get("urgency")  # a (signature, value) variant
        return {"kind": "notify", "sender": sender, "serial": serial, "appname": appname,
                "replaces_id": replaces_id, "icon": icon, "summary": summary, "body": body,
                "actions": dict(zip(actions[::2], actions[1::2], strict=False)),  # key, label, key, label...
                "urgency": urgency[1] if urgency else None, "timeout": timeout}
    answered = (fields.get(HeaderFields.destination, ""), fields.get(HeaderFields.reply_serial, 0))
    if kind == MessageType.method_return and answered in calls:
        calls.discard(answered)
        return {"kind": "reply", "destination": answered[0], "reply_serial": answered[1],
                "id": message.body[0]}
    if kind == MessageType.error:
        calls.discard(answered)
    elif kind == MessageType.signal and fields.get(HeaderFields.member) == "NotificationClosed":
        return {"kind": "closed", "id": message.body[0], "reason": message.body[1]}
    elif kind == MessageType.signal and fields.get(HeaderFields.member) == "ActionInvoked":
        return {"kind": "action", "id": message.body[0], "action": message.body[1]}
    elif kind == MessageType.signal and fields.get(HeaderFields.interface) == SYNC_INTERFACE:
        return {"kind": "sync", "token": message.body[0]}
    return None


def session_main(notify_log: Path) -> int:
    """Inside with-desktop.sh: start the notification monitor, announce the environment, wait."""
    import threading

    from jeepney.bus_messages import Monitoring
    from jeepney.io.blocking import open_dbus_connection

    connection = open_dbus_connection(bus="SESSION")
    rules = [
        "type='method_call',interface='org.freedesktop.Notifications',member='Notify'",
        "type='signal',interface='org.freedesktop.Notifications'",
        f"type='signal',interface='{SYNC_INTERFACE}'",  # Desktop.notifications() waits for these
        # Replies cannot be matched by interface; the monitor keeps those that answer a Notify.
        "type='method_return'",
        "type='error'",
    ]
    connection.send_and_get_reply(Monitoring().BecomeMonitor(rules), timeout=10)

    def monitor() -> None:
        calls: set[tuple[str, int]] = set()
        with notify_log.open("a", encoding="utf-8") as log:
            while True:
                message = connection.receive()
                try:
                    record = describe(message, calls)
                except Exception as exc:  # noqa: BLE001 - reported to the test through the log
                    record = {"kind": "monitor-error", "error": f"{type(exc).__name__}: {exc}"}
                if record is not None:
                    log.write(json.dumps(record) + "\n")
                    log.flush()

    threading.Thread(target=monitor, name="notification-monitor", daemon=True).start()
    print(json.dumps({name: os.environ.get(name, "") for name in SESSION_VARIABLES}), flush=True)
    sys.stdin.read()  # until pytest closes our stdin (or kills us)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["session"] or len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} session NOTIFICATION_LOG (run by tests/desktop/conftest.py)")
    sys.exit(session_main(Path(sys.argv[2])))
