"""The desktop harness itself, for real: tray hosts (trayer and a StatusNotifierItem host),
notifications, URL opening, screenshots, clicks, teardown and the skip on machines without the tools."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import (
    MARKER,
    REQUIRED_TOOLS,
    SNI_TOOLS,
    TRAY_HOSTS,
    Desktop,
    install_hint,
    missing_tools,
    processes_with,
    start_desktop,
    unavailable_reason,
)

TRAY_PROGRAM = """\
import sys
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

app = QApplication(sys.argv)
app.setApplicationName("harness-probe")
pixmap = QPixmap(22, 22)
pixmap.fill(QColor(255, 0, 0))
icon = QSystemTrayIcon(QIcon(pixmap))
icon.activated.connect(lambda reason: print("activated", reason.name, flush=True))
icon.show()
sys.exit(app.exec())
"""

NOTIFY_PROGRAM = """\
import sys
from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection

address = DBusAddress("/org/freedesktop/Notifications", bus_name="org.freedesktop.Notifications",
                      interface="org.freedesktop.Notifications")
with open_dbus_connection(bus="SESSION") as connection:
    # Critical urgency and timeout 0: dunst keeps it on screen until it is closed.
    call = new_method_call(address, "Notify", "susssasa{sv}i", (
        "harness-test", 0, "", sys.argv[1], sys.argv[2], ["default", "Open"], {"urgency": ("y", 2)}, 0))
    print(connection.send_and_get_reply(call, timeout=10).body[0], flush=True)
    sys.stdin.read()  # stay on the bus: dunst sends ActionInvoked to the sender only
"""


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_trayer_panel_is_the_tray_host(desktop: Desktop) -> None:
    panels = [w for w in desktop.windows() if w["wm_class"] == ["panel", "trayer"]]
    assert len(panels) == 1
    assert (panels[0]["x"], panels[0]["y"], panels[0]["width"], panels[0]["height"]) == (1080, 0, 200, 32)


def test_the_sni_bar_is_the_tray_host(sni_desktop: Desktop) -> None:
    with sni_desktop.sni() as bus:
        assert bus.host_registered() and bus.registered_items() == []
    bar = sni_desktop.sni_bar()
    assert (bar["x"], bar["y"], bar["width"]) == (0, 0, 1280) and bar["height"] >= 16
    assert not [w for w in sni_desktop.windows() if w["wm_class"] == ["panel", "trayer"]]
    assert sni_desktop.sni_bar_icons(sni_desktop.screenshot("harness-sni-empty")) == []


def test_screenshot_is_a_png_of_the_whole_screen(desktop: Desktop) -> None:
    shot = desktop.screenshot("harness-screen")
    assert shot == desktop.artifacts / "harness-screen.png"
    assert png_size(shot) == (1280, 800)
    assert desktop.pixel(shot, 640, 400) == (0, 0, 0)  # Xvfb's bare root window is black


def probe_icon(desktop: Desktop, app: subprocess.Popen[str]) -> dict[str, int] | None:
    """Where the tray host shows the probe's icon: the XEmbed window trayer swallowed, or the
    icon gtk-sni-tray-standalone draws in its bar for the item the probe registered."""
    if desktop.host == "xembed":
        found = [w for w in desktop.tray_windows() if w["name"] == "harness-probe"]
        return found[0] if found else None
    with desktop.sni() as bus:
        if bus.item_of_pid(app.pid) is None:
            return None
    icons = desktop.sni_bar_icons(desktop.screenshot(f"harness-tray-{desktop.host}"))
    return icons[0] if len(icons) == 1 else None


def test_a_tray_icon_is_found_drawn_and_clicked(tray_desktop: Desktop, tmp_path: Path) -> None:
    desktop = tray_desktop
    program = tmp_path / "tray.py"
    program.write_text(TRAY_PROGRAM, encoding="utf-8")
    output = tmp_path / "tray.out"
    with output.open("w", encoding="utf-8") as out:
        app = desktop.popen([sys.executable, program], stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        icon = desktop.wait_for(lambda: probe_icon(desktop, app), what=f"the probe's icon ({desktop.host} host)")
        if desktop.host == "xembed":
            assert 1080 <= icon["x"] and icon["x"] + icon["width"] <= 1280 and icon["y"] + icon["height"] <= 32
        else:
            bar = desktop.sni_bar()
            assert icon["y"] >= bar["y"] and icon["y"] + icon["height"] <= bar["y"] + bar["height"]
        x, y = icon["x"] + icon["width"] // 2, icon["y"] + icon["height"] // 2
        # Embedding is done before Qt has painted into the new parent; wait for the red.
        desktop.wait_for(lambda: desktop.pixel(desktop.screenshot(f"harness-tray-{desktop.host}"), x, y) == (255, 0, 0),
                         what="the red icon on screen")
        # Under SNI the host turns the click into the item's Activate call; Qt into the same signal.
        desktop.xdotool("mousemove", x, y, "click", "1")
        desktop.wait_for(lambda: "activated Trigger" in output.read_text(encoding="utf-8"),
                         what="the icon's activated(Trigger) signal")
    finally:
        app.terminate()
        app.wait(timeout=10)
    desktop.wait_for(lambda: probe_icon(desktop, app) is None, what="the icon to leave the tray")


def test_a_notification_is_seen_with_its_id_and_fate(desktop: Desktop) -> None:
    sender = desktop.popen([sys.executable, "-c", NOTIFY_PROGRAM, "Forwarding web", "on 127.0.0.1:8080"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert sender.stdout is not None
        nid = int(sender.stdout.readline())
        shown = desktop.wait_for(desktop.notifications, what="the notification")
        assert shown == [{
            "id": nid, "appname": "harness-test", "summary": "Forwarding web", "body": "on 127.0.0.1:8080",
            "icon": "", "actions": {"default": "Open"}, "urgency": 2, "timeout": 0, "replaces_id": 0,
            "closed": None, "invoked": [],
        }]
        assert desktop.run(["dunstctl", "count", "displayed"]).stdout.strip() == "1"
        desktop.run(["dunstctl", "action", "0"], check=True)  # what a click on it does
        desktop.wait_for(lambda: desktop.notifications()[0]["invoked"] == ["default"],
                         what="ActionInvoked(default)")
        desktop.run(["dunstctl", "close-all"], check=True)
        # Reason 2: dismissed by the user (dunst counts close-all as that).
        desktop.wait_for(lambda: desktop.notifications()[0]["closed"] == 2, what="NotificationClosed")
    finally:
        assert sender.stdin is not None
        sender.stdin.close()
        sender.wait(timeout=10)
    history = desktop.run(["dunstctl", "history"], check=True).stdout
    assert '"Forwarding web"' in history


def test_each_test_starts_without_earlier_notifications(desktop: Desktop) -> None:
    assert desktop.notifications() == []
    assert desktop.run(["dunstctl", "count", "displayed"]).stdout.strip() == "0"


def test_xdg_open_reaches_the_fake_browser(desktop: Desktop) -> None:
    url = "http://127.0.0.1:8080/path?q=1"
    opened = desktop.run(["xdg-open", url])
    assert opened.returncode == 0, opened.stderr
    desktop.wait_for(lambda: desktop.browser_log.read_text(encoding="utf-8").splitlines() == [url],
                     what=f"the fake browser to record {url}")


def test_env_points_at_the_session_only(desktop: Desktop) -> None:
    env = desktop.env
    assert env["QT_QPA_PLATFORM"] == "xcb"
    assert env["PYTHON_KEYRING_BACKEND"] == "keyring.backends.SecretService.Keyring"
    assert "XDG_CURRENT_DESKTOP" not in env and "DESKTOP_SESSION" not in env
    home = Path(env["HOME"])
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        assert home in Path(env[name]).parents
    assert env["DISPLAY"].startswith(":") and env["DBUS_SESSION_BUS_ADDRESS"]
    assert os.environ.get("DISPLAY") != env["DISPLAY"]  # pytest itself stays off the virtual screen
    assert desktop.run(["sh", "-c", "echo $EXTRA"], extra_env={"EXTRA": "yes"}).stdout == "yes\n"


@pytest.mark.parametrize("host", TRAY_HOSTS)
def test_teardown_leaves_no_process_behind(tmp_path: Path, host: str) -> None:
    reason = unavailable_reason(host=host)
    if reason:
        pytest.skip(reason)
    session = start_desktop(tmp_path, host)  # a session of its own, beside the shared ones
    marker = session.env[MARKER]
    running = {name for _, name in processes_with(MARKER, marker)}
    # (/proc's command names are cut at 15 characters.)
    host_programs = {"trayer"} if host == "xembed" else {"status-notifier", "gtk-sni-tray-st"}
    assert {"Xvfb", "dunst", "dbus-daemon", "gnome-keyring-d"} | host_programs <= running, running
    session.popen(["sleep", "600"])
    assert session.close() == []  # everything stopped in order, nothing had to be hunted down
    assert processes_with(MARKER, marker) == []


def test_missing_tools_are_named_with_their_packages(tmp_path: Path) -> None:
    assert missing_tools(str(tmp_path)) == list(REQUIRED_TOOLS)
    assert install_hint(["Xvfb", "xwininfo", "xprop"]) == "apt-get install --no-install-recommends x11-utils xvfb"
    sni_missing = missing_tools(str(tmp_path), host="sni")
    assert "trayer" not in sni_missing and set(SNI_TOOLS) <= set(sni_missing)
    reason = unavailable_reason(str(tmp_path), host="sni")
    assert reason and reason.startswith("The StatusNotifierItem desktop tests need ")
    assert "haskell-gtk-sni-tray-utils haskell-status-notifier-item-utils" in reason


def test_without_the_tools_the_desktop_tests_skip(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs",
         "tests/desktop/test_autostart_desktop.py"],
        cwd=repo, env={**os.environ, "PATH": str(tmp_path)}, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " skipped" in run.stdout and " passed" not in run.stdout and " failed" not in run.stdout
    assert "Xvfb" in run.stdout and "apt-get install --no-install-recommends" in run.stdout
