"""The tray app end to end on a real (virtual) desktop: `kubetray --demo` under Xvfb + trayer +
dunst + gnome-keyring, driven with real X input.

One scenario, in the order a person would meet it: the icon is embedded in the panel and turns
green once the demo's four tunnels forward; its menu lists them; a pod deleted in the simulator
is told through the notification server; clicking a tunnel opens its URL in the browser; "Start
at login" writes a valid autostart entry and removes it again; the token typed into the "Set
token" dialog lands in the keyring; SIGTERM ends it cleanly. Screenshots go to
test-artifacts/desktop: tray.png, menu.png, menu-crop.png (for the README), tray-notification.png
and tray-token-dialog.png.

The demo's rules are passed with --config, on the demo's own local ports (8080, 9090, 8081, 7000)
when they are free, so the screenshots show what a user sees, else on free ones: a tunnel on a busy
port falls back and tells, and that notice holds the tunnel's notification slot for 30 s
(trayapp/ui/notices.py, PER_TUNNEL), which would hide the reconnect notice this test waits for.
A port taken between the check and kubetray's bind means one restart on free ports.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from trayapp.sim.demo import DEMO_RULES

from .harness import Desktop
from .trayprocess import TrayProcess, entry

CONTEXT = "kubetray-demo"
TOKEN = "typed-t0ken-for-kubetray-demo"
OK_GREEN = (0x2F, 0x9E, 0x5B)  # tray-ok.svg's fill
PANEL_TINT = (0x30, 0x50, 0xA0)  # with-desktop.sh's trayer --tint


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's listeners do
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def write_demo_rules(path: Path, free_port: Callable[[], int], keep_demo_ports: bool) -> dict[str, int]:
    """The demo's rules, each on its own local port if free (and wanted), else on a free one;
    returns resource name -> local port."""
    rules = yaml.safe_load(DEMO_RULES)
    chosen: dict[str, int] = {}
    for rule in rules["portForward"]:
        demo_port = rule.get("localPort", rule["port"])
        port = demo_port if keep_demo_ports and port_is_free(demo_port) else free_port()
        rule["localPort"] = chosen[rule["resourceName"]] = port
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return chosen


def start_demo_tray(desktop: Desktop, root: Path, free_port: Callable[[], int]) -> tuple[TrayProcess, dict[str, Any],
                                                                                          dict[str, int]]:
    """`kubetray --demo` forwarding all four tunnels on the ports chosen for them; (tray, status, ports)."""
    for attempt in (1, 2):
        folder = root / f"attempt-{attempt}"
        folder.mkdir()
        rules = folder / "rules.yaml"
        ports = write_demo_rules(rules, free_port, keep_demo_ports=attempt == 1)
        tray = TrayProcess(desktop, folder, ("--config", str(rules))).start()
        try:
            status = desktop.wait_for(lambda: all_forwarding(tray), timeout=20,  # noqa: B023 - used at once
                                      what="the demo's four tunnels to forward")
        except BaseException:
            if tray.alive():
                tray.terminate()
            raise
        actual = {t["resourceName"]: t["localPort"] for t in status["tunnels"]}
        if actual == ports or attempt == 2:
            assert actual == ports, f"kubetray did not forward on the free ports it was given: {status}"
            return tray, status, ports
        # Another program took a port between our check and kubetray's bind: start over on free ones.
        assert tray.terminate() == 0, tray.stderr()
    raise AssertionError("unreachable")


def all_forwarding(tray: TrayProcess) -> dict[str, Any] | None:
    status = tray.status()
    tunnels = status.get("tunnels", [])
    return status if len(tunnels) == 4 and all(t["state"] == "forwarding" for t in tunnels) else None


def expected_menu(status: dict[str, Any]) -> list[str]:
    """The tray menu's entries for a status answer of the demo, all four tunnels forwarding."""
    return [
        f"{status['context']}  \u00b7  namespace {status['namespace']}",
        "Switch context",
        *(f"{t['rule']}  \u2192 localhost:{t['localPort']}  {t['pod']}" for t in status["tunnels"]),
        "Show all tunnels\u2026", "Pause all", "Forward\u2026", "Open rules file", "Reload rules", "Show log",
        "Set token for this context\u2026",
        "Start at login", "Notifications", "Quit kubetray",
    ]


def region(desktop: Desktop, shot: Path, x: int, y: int, w: int, h: int) -> list[tuple[int, int, int]]:
    raw = desktop.run(["convert", shot, "-crop", f"{w}x{h}+{x}+{y}", "+repage", "-depth", "8", "rgb:-"],
                      check=True, text=False).stdout
    assert len(raw) == 3 * w * h, f"{w}x{h}+{x}+{y} is not inside {shot}"
    return [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)]


def share_near(pixels: list[tuple[int, int, int]], colour: tuple[int, int, int], tolerance: int = 40) -> float:
    near = sum(1 for p in pixels if all(abs(a - b) <= tolerance for a, b in zip(p, colour, strict=True)))
    return near / len(pixels)


def secret_lookup(desktop: Desktop) -> str | None:
    found = desktop.run(["secret-tool", "lookup", "service", "kubetray", "username", CONTEXT])
    return found.stdout if found.returncode == 0 else None


def top_level_menu(desktop: Desktop, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The menu's X window: the smallest kubetray window holding its first and last entries."""
    first, last = entries[0], entries[-1]

    def holds(w: dict[str, Any], e: dict[str, Any]) -> bool:
        return w["x"] <= e["x"] < w["x"] + w["width"] and w["y"] <= e["y"] < w["y"] + w["height"]

    windows = [w for w in desktop.windows()
               if w["wm_class"] and "kubetray" in w["wm_class"] and holds(w, first) and holds(w, last)]
    assert windows, "no kubetray window holds the menu's entries"
    return min(windows, key=lambda w: w["width"] * w["height"])


def test_tray_demo_end_to_end(desktop: Desktop, tmp_path: Path, unused_tcp_port_factory: Callable[[], int]) -> None:
    started = time.monotonic()
    assert secret_lookup(desktop) is None, "the session keyring already holds a kubetray-demo token"
    tray, status, ports = start_demo_tray(desktop, tmp_path, unused_tcp_port_factory)
    try:
        # --- the icon is embedded in trayer's panel ------------------------------------------
        ui = desktop.wait_for(lambda: (u := tray.ui()).get("trayAvailable") and u["trayGeometry"][0] > 0 and u,
                              timeout=20, what="kubetray's icon to be embedded in the tray")
        assert ui["statusWindow"] is False  # a tray was found: no fallback window
        icons = desktop.wait_for(desktop.tray_windows, timeout=5, what="an XEmbed icon in trayer's panel")
        assert [(w["name"], [w["x"], w["y"], w["width"], w["height"]]) for w in icons] == \
            [("kubetray", ui["trayGeometry"])]

        # --- the demo's four tunnels forward (start_demo_tray checked their ports) ------------
        assert (status["mode"], status["context"], status["namespace"]) == ("tray", CONTEXT, "default")
        assert [(t["rule"], t["localPort"]) for t in status["tunnels"]] == [
            ("svc/web :80", ports["web"]), ("sts/api :grpc", ports["api"]),
            ("cronjob/report :8080", ports["report"]), ("pod/debug-shell :7000", ports["debug-shell"])]
        web = next(t for t in status["tunnels"] if t["resourceName"] == "web")
        assert web["url"] == f"http://localhost:{ports['web']}/"
        desktop.wait_for(lambda: tray.ui().get("tooltip") == f"{CONTEXT}: 4 tunnels", timeout=5,
                         what="the tooltip to say four tunnels")

        # The icon turned green (tray-ok.svg) on the panel's blue.
        x, y, w, h = ui["trayGeometry"]

        def icon_is_green() -> float:
            share = share_near(region(desktop, desktop.screenshot("tray"), x, y, w, h), OK_GREEN)
            return share if share > 0.2 else 0.0

        desktop.wait_for(icon_is_green, timeout=5, what="the tray icon to turn green (forwarding)")
        shot = desktop.artifacts / "tray.png"
        assert share_near(region(desktop, shot, x - 30, y, 25, h), PANEL_TINT) > 0.9, "the panel is not beside it"

        # --- a left click opens the menu with the tunnels and the commands --------------------
        entries = tray.open_menu(button=1)

        def menu_and_status() -> tuple[list[str], list[str]]:
            return [e["text"] for e in tray.ui().get("entries", [])], expected_menu(tray.status())

        # A pod may change between the two questions (the cronjob's): wait for them to agree.
        with contextlib.suppress(AssertionError):
            desktop.wait_for(lambda: (pair := menu_and_status())[0] == pair[1], timeout=5,
                             what="the open menu to show what the status reports")
        shown, expected = menu_and_status()
        assert shown == expected
        entries = tray.ui()["entries"]
        tunnels = {t["resourceName"]: t for t in tray.status()["tunnels"]}
        assert entries[0]["enabled"] is False  # the heading
        assert entry(entries, "Switch context")["submenu"] == [CONTEXT, "Keep forwarding"]
        for tunnel in tunnels.values():
            item = entry(entries, tunnel["rule"] + " ")
            if tunnel["url"]:  # a web page: opened; anything else (api's grpc, debug-shell's echo): copied
                assert item["enabled"] and item["submenu"][:6] == ["Open", "Copy URL", "Copy address", "Copy port", "Restart",
                                                               "Pause"]
                assert item["tooltip"].endswith(f"Click to open {tunnel['url']}")
            else:
                assert item["enabled"] and item["submenu"][:4] == ["Copy address", "Copy port", "Restart", "Pause"]
                assert item["tooltip"].endswith(f"Click to copy {tunnel['listen']}")
        assert (entry(entries, "Start at login")["checked"], entry(entries, "Notifications")["checked"]) == \
            (False, True)
        menu = top_level_menu(desktop, entries)
        assert menu["y"] >= y + h - 2, f"the menu {menu} does not drop down from the icon at {ui['trayGeometry']}"
        time.sleep(0.3)  # let it paint
        shot = desktop.screenshot("menu")
        # The menu crop for the README: the menu and, above it, the panel with the icon.
        crop = desktop.artifacts / "menu-crop.png"
        left = max(0, menu["x"] - 8)
        right = max(menu["x"] + menu["width"], x + w) + 8  # convert clips a crop to the image
        desktop.run(["convert", shot, "-crop", f"{right - left}x{menu['y'] + menu['height'] + 8}+{left}+0",
                     "+repage", crop], check=True)
        # Painted, not a blank window: the tunnel rows show their green dots at the left.
        dots = region(desktop, shot, menu["x"], entries[2]["y"] - 8, 40, 16)
        assert share_near(dots, OK_GREEN) > 0.05, "the menu's tunnel entry shows no green state dot"
        tray.close_menu()

        # --- deleting the web pod in the simulator is told through the notification server ---
        server = ui["demo"]["server"]
        deleted = desktop.run([sys.executable, "-m", "trayapp.sim", "delete-pod", web["pod"], "--server", server])
        assert deleted.returncode == 0, deleted.stderr

        def moved() -> dict[str, Any] | None:
            now = tray.tunnel("web")
            return now if now["state"] == "forwarding" and now["pod"] not in (None, web["pod"]) else None

        web = desktop.wait_for(moved, timeout=15, what="the web tunnel to forward to a new pod")
        assert web["localPort"] == ports["web"]

        def reconnect_notice() -> dict[str, Any] | None:
            return next((n for n in desktop.notifications()
                         if n["appname"] == "kubetray" and n["summary"].startswith("svc/web :80 ")), None)

        notice = desktop.wait_for(reconnect_notice, timeout=10, what="kubetray's notification about web at dunst")
        assert notice["summary"] == f"svc/web :80 moved to pod {web['pod']}", notice
        assert notice["urgency"] == 1 and notice["timeout"] > 0, notice  # informational: expires
        assert "default" in notice["actions"], notice  # clicking it opens the tunnel
        desktop.screenshot("tray-notification")

        # --- clicking that notification opens the tunnel's URL (dunst runs its default action) ---
        clicked = desktop.run(["dunstctl", "action", "0"])
        assert clicked.returncode == 0, clicked.stderr
        opened = desktop.wait_for(lambda: desktop.browser_log.read_text(encoding="utf-8"), timeout=10,
                                  what="the notification's click to reach the stand-in browser")
        assert opened == web["url"] + "\n"
        desktop.browser_log.write_text("", encoding="utf-8")

        # --- a right click opens the menu; clicking the web tunnel opens its URL --------------
        entries = tray.open_menu(button=3)
        web_entry = entry(entries, "svc/web :80 ")
        assert web_entry["text"].endswith(web["pod"])
        tray.click(web_entry)
        tray.wait_menu_closed()
        opened = desktop.wait_for(lambda: desktop.browser_log.read_text(encoding="utf-8"), timeout=10,
                                  what="the stand-in browser to be run")
        assert opened == web["url"] + "\n"

        # --- "Start at login" writes a valid autostart entry, and removes it again ------------
        autostart = tray.config_home / "autostart" / "kubetray.desktop"
        assert not autostart.exists()
        tray.click(entry(tray.open_menu(), "Start at login"))
        desktop.wait_for(autostart.is_file, timeout=5, what=f"the autostart entry {autostart}")
        validated = desktop.run(["desktop-file-validate", autostart])
        complaints = [line for line in (validated.stdout + validated.stderr).splitlines() if ": hint: " not in line]
        assert validated.returncode == 0 and complaints == [], validated.stdout + validated.stderr
        fields = dict(line.split("=", 1) for line in autostart.read_text(encoding="utf-8").splitlines() if "=" in line)
        program = shlex.split(fields["Exec"])[0]
        assert shutil.which(program, path=desktop.env["PATH"]), f"Exec={fields['Exec']} names no program"
        tray.wait_menu_closed()
        toggle = entry(tray.open_menu(), "Start at login")
        assert toggle["checked"] is True
        tray.click(toggle)
        desktop.wait_for(lambda: not autostart.exists(), timeout=5, what="the autostart entry to be removed")
        tray.wait_menu_closed()
        assert entry(tray.open_menu(), "Start at login")["checked"] is False
        tray.close_menu()

        # --- the token typed into the dialog is stored in the session's gnome-keyring ---------
        tray.click(entry(tray.open_menu(), "Set token for this context"))
        # Searched again until found: a search that meets the closing menu's window gets BadWindow.
        dialog = desktop.wait_for(
            lambda: desktop.run(["xdotool", "search", "--onlyvisible", "--name", "^kubetray: set token$"],
                                timeout=10).stdout.split()[:1],
            timeout=20, what="the token dialog to open")[0]
        desktop.xdotool("windowfocus", "--sync", dialog)
        desktop.xdotool("type", "--delay", "5", TOKEN)
        desktop.screenshot("tray-token-dialog")
        desktop.xdotool("key", "Return")
        stored = desktop.wait_for(lambda: secret_lookup(desktop), timeout=10, what="the token in the keyring")
        assert stored == TOKEN
        script = ("from pathlib import Path\nfrom trayapp.platform.secrets import SecretStore\n"
                  f"print(SecretStore(Path({str(tray.state_home / 'kubetray')!r})).get_token({CONTEXT!r}))")
        read_back = desktop.run([sys.executable, "-c", script])
        assert read_back.stdout == TOKEN + "\n", read_back.stderr
        # Reconnected with the token, the tunnels forward again.
        desktop.wait_for(lambda: all_forwarding(tray), timeout=15,
                         what="the tunnels to forward after the token was set")

        # --- SIGTERM ends it cleanly ----------------------------------------------------------
        assert tray.terminate() == 0, tray.stderr()
        desktop.wait_for(lambda: not tray.leftovers(), timeout=5, what="kubetray's processes to be gone")
        assert not (tray.folder / "instance.sock").exists()
        assert not desktop.tray_windows(), "the icon stayed in the panel"
        assert "Traceback" not in tray.stderr() and " ERROR " not in tray.stderr(), tray.stderr()
    finally:
        if tray.alive():
            tray.terminate()
        desktop.run([sys.executable, "-m", "trayapp", "token", "delete", CONTEXT],
                    extra_env={"XDG_RUNTIME_DIR": str(tray.runtime_dir)})
    assert time.monotonic() - started < 40
