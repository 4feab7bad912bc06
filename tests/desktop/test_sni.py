"""The tray app under a StatusNotifierItem host, as most Linux desktops show tray icons.

KDE Plasma, GNOME with the AppIndicator extension, XFCE, Cinnamon, Budgie and the Sway bars do
not embed an X window as trayer does: the app registers an item with
org.kde.StatusNotifierWatcher, the host draws the icon the item exports, and the menu travels
over D-Bus (com.canonical.dbusmenu). Here the host is gtk-sni-tray-standalone, and the test asks
the item and its menu what any host asks (sni.py), besides clicking the host's bar for real.

One scenario: `kubetray --demo` registers as an item; its exported icon and the bar turn green
and the tooltip counts the tunnels; a right click in the bar opens the host's menu with every
entry at its first opening, submenus too, and choosing a tunnel's "Open" there with the keyboard
opens its URL; a left click opens kubetray's own menu; a pod deleted in the simulator is
in the exported menu before the host asks for it again (the host shows what it holds when
clicked), the notice about it reaches dunst, and choosing the tunnel's "Open" over dbusmenu opens
its URL. Screenshots in test-artifacts/desktop: sni-bar.png (the bar with the icon, cropped),
sni-menu.png (the host's menu and a tunnel's submenu) and sni-notification.png.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .harness import Desktop
from .sni import MenuEntry, SniItem
from .test_tray_desktop import CONTEXT, OK_GREEN, all_forwarding, expected_menu, region, share_near, write_demo_rules
from .trayprocess import TrayProcess

HOST_CLASS = "gtk-sni-tray-standalone"


def start_demo(desktop: Desktop, root: Path, free_port: Callable[[], int]) -> tuple[TrayProcess, dict[str, int]]:
    """`kubetray --demo` forwarding its four tunnels on free local ports: other desktop tests
    (or other checkouts' on this machine) may hold the demo's own 8080 and 9090."""
    rules = root / "rules.yaml"
    ports = write_demo_rules(rules, free_port, keep_demo_ports=False)
    tray = TrayProcess(desktop, root, ("--config", str(rules))).start()
    last: dict[str, Any] = {}

    def forwarding() -> bool:
        last.update(status=tray.status())
        tunnels = last["status"].get("tunnels", [])
        return len(tunnels) == 4 and all(t["state"] == "forwarding" for t in tunnels)

    try:
        desktop.wait_for(forwarding, timeout=30, what="the demo's four tunnels to forward")
    except AssertionError as failure:
        if tray.alive():
            tray.terminate()
        raise AssertionError(f"{failure}\nThe last status: {last.get('status')}\n{tray.stderr()}") from None
    actual = {t["resourceName"]: t["localPort"] for t in last["status"]["tunnels"]}
    assert actual == ports, f"kubetray did not forward on the free ports it was given: {last['status']}"
    return tray, ports


def pixmap_share_near(pixmap: tuple[int, int, bytes], colour: tuple[int, int, int]) -> float:
    """The share of an SNI IconPixmap's opaque pixels near `colour` (ARGB32, network byte order)."""
    _w, _h, data = pixmap
    opaque = [(data[i + 1], data[i + 2], data[i + 3]) for i in range(0, len(data), 4) if data[i] > 200]
    return share_near(opaque, colour) if opaque else 0.0


def exported_menu_is_current(tray: TrayProcess, item: SniItem, *, ask_first: bool) -> list[str] | None:
    """The exported menu's labels when they are what the status reports; `ask_first` says
    AboutToShow before GetLayout (a host opening it), else the layout as the host holds it."""
    labels = (item.open() if ask_first else item.layout()).labels()
    # A pod may change between the two questions (the cronjob's): the caller waits for agreement.
    return labels if labels == expected_menu(tray.status()) else None


def host_windows(desktop: Desktop, kind: str) -> list[dict[str, Any]]:
    """The host's mapped windows of that _NET_WM_WINDOW_TYPE (POPUP_MENU, TOOLTIP), left to right."""
    found = []
    for window in desktop.visible_windows(HOST_CLASS):
        typed = desktop.run(["xprop", "-id", window["id"], "_NET_WM_WINDOW_TYPE"]).stdout
        if f"_NET_WM_WINDOW_TYPE_{kind}" in typed.split():
            found.append(window)
    return sorted(found, key=lambda w: w["x"])


def host_window(desktop: Desktop, kind: str) -> dict[str, Any] | None:
    found = host_windows(desktop, kind)
    return found[0] if found else None


def selectable(entry: MenuEntry) -> list[MenuEntry]:
    """The children a keyboard moves through: no separators, no disabled entries."""
    return [c for c in entry.children if not c.separator and c.enabled and c.props.get("visible", True)]


def test_tray_demo_under_a_status_notifier_host(
        sni_desktop: Desktop, tmp_path: Path, unused_tcp_port_factory: Callable[[], int]) -> None:
    desktop = sni_desktop
    tray, ports = start_demo(desktop, tmp_path, unused_tcp_port_factory)
    assert tray.process is not None
    pid = tray.process.pid
    try:
        with desktop.sni() as bus:
            # --- kubetray registers as an item, with Qt's own XEmbed icon nowhere -----------
            item = desktop.wait_for(lambda: bus.item_of_pid(pid), timeout=20,
                                    what="kubetray in the watcher's RegisteredStatusNotifierItems")
            assert bus.host_registered()
            ui = tray.ui()
            assert ui["trayAvailable"] is True and ui["statusWindow"] is False
            assert ui["trayGeometry"][2:] == [0, 0]  # the host places the icon; Qt cannot know where
            assert (item.prop("Id"), item.prop("Status"), item.prop("Category")) == \
                ("kubetray", "Active", "ApplicationStatus")

            # --- the exported icon and tooltip follow the tunnels ---------------------------
            desktop.wait_for(lambda: item.tooltip_title() == f"{CONTEXT}: 4 tunnels", timeout=10,
                             what="the item's ToolTip to say four tunnels")
            desktop.wait_for(lambda: pixmap_share_near(item.largest_pixmap(), OK_GREEN) > 0.5, timeout=10,
                             what="the item's IconPixmap to turn green (forwarding)")

            def green_icon_in_bar() -> dict[str, int] | None:
                shot = desktop.screenshot("sni-screen")
                icons = desktop.sni_bar_icons(shot)
                if len(icons) != 1:
                    return None
                box = icons[0]
                share = share_near(region(desktop, shot, box["x"], box["y"], box["width"], box["height"]), OK_GREEN)
                return box if share > 0.2 else None

            icon = desktop.wait_for(green_icon_in_bar, timeout=10, what="one green icon in the host's bar")
            bar = desktop.sni_bar()
            desktop.run(["convert", desktop.artifacts / "sni-screen.png", "-crop",
                         f"{min(bar['width'], 320)}x{bar['height'] + 8}+{bar['x']}+{bar['y']}", "+repage",
                         desktop.artifacts / "sni-bar.png"], check=True)
            centre = (icon["x"] + icon["width"] // 2, icon["y"] + icon["height"] // 2)

            # --- a right click opens the host's menu, with every entry at its very first opening
            desktop.xdotool("mousemove", *centre, "click", 3)
            entries = len(expected_menu(tray.status()))
            desktop.wait_for(lambda: host_window(desktop, "POPUP_MENU"), timeout=10, what="the host's menu to open")
            time.sleep(0.3)  # let it paint
            # Each entry is a line of text, over 15 px high. A host shows the layout it holds and
            # only then tells the app: a menu built on being asked opens empty (8 px) and stays so.
            menu = host_window(desktop, "POPUP_MENU")
            assert menu and menu["height"] > 15 * entries, f"the host's menu {menu} cannot hold {entries} entries"
            assert menu["y"] >= bar["y"] + bar["height"] - 2, f"the host's menu {menu} is not below its bar {bar}"

            # Chosen with the keyboard: down to the web tunnel, into its submenu (which the host
            # draws from what it holds too, so it must be filled already), Return on "Open".
            layout = item.layout()
            web_row = layout.child("svc/web :80 ")
            desktop.xdotool("key", *["Down"] * (selectable(layout).index(web_row) + 1), "Right")
            menus = desktop.wait_for(lambda: len(m := host_windows(desktop, "POPUP_MENU")) == 2 and m, timeout=5,
                                     what="the web tunnel's submenu to open in the host's menu")
            assert menus[1]["height"] > 15 * len(selectable(web_row)), f"the submenu {menus[1]} is too small"
            time.sleep(0.3)  # let it paint
            shot = desktop.screenshot("sni-screen")
            right = max(w["x"] + w["width"] for w in menus) + 8
            bottom = max(w["y"] + w["height"] for w in menus) + 8
            desktop.run(["convert", shot, "-crop", f"{right}x{bottom}+0+0", "+repage",
                         desktop.artifacts / "sni-menu.png"], check=True)
            open_entry = web_row.child("Open")
            desktop.xdotool("key", *["Down"] * selectable(web_row).index(open_entry), "Return")
            web = tray.tunnel("web")
            opened_url = desktop.wait_for(lambda: desktop.browser_log.read_text(encoding="utf-8"), timeout=10,
                                          what="the host's menu choice to reach the stand-in browser")
            assert opened_url == web["url"] + "\n"
            desktop.browser_log.write_text("", encoding="utf-8")
            desktop.wait_for(lambda: host_window(desktop, "POPUP_MENU") is None, timeout=5,
                             what="the host's menu to close")
            # Resting on the icon shows the item's tooltip (sni-notification.png has it too).
            desktop.xdotool("mousemove", centre[0] + 1, centre[1])
            desktop.wait_for(lambda: host_window(desktop, "TOOLTIP"), timeout=10, what="the host's tooltip")

            # --- a left click activates the item: kubetray's own menu opens at the pointer
            desktop.xdotool("mousemove", *centre, "click", 1)
            opened = desktop.wait_for(lambda: (u := tray.ui()).get("menuVisible") and u["entries"], timeout=10,
                                      what="kubetray's menu to open on a left click in the bar")
            assert opened[0]["text"] == f"{CONTEXT}  \u00b7  namespace default"
            tray.close_menu()

            # The menu the host got has what the status reports, down to the submenus.
            held = desktop.wait_for(lambda: exported_menu_is_current(tray, item, ask_first=False), timeout=10,
                                    what="the exported menu to show what the status reports")
            web = tray.tunnel("web")
            assert f"svc/web :80  \u2192 localhost:{ports['web']}  {web['pod']}" in held

            # --- deleting the web pod: the exported menu follows before anyone asks ---------
            deleted = desktop.run([sys.executable, "-m", "trayapp.sim", "delete-pod", web["pod"],
                                   "--server", ui["demo"]["server"]])
            assert deleted.returncode == 0, deleted.stderr

            def moved() -> dict[str, Any] | None:
                now = tray.tunnel("web")
                return now if now["state"] == "forwarding" and now["pod"] not in (None, web["pod"]) else None

            web = desktop.wait_for(moved, timeout=15, what="the web tunnel to forward to a new pod")
            # What a host pops up on the next click, before its AboutToShowGroup reaches the app:
            desktop.wait_for(lambda: exported_menu_is_current(tray, item, ask_first=False), timeout=5,
                             what="the held layout to name the web tunnel's new pod")
            # ...and what it fetches after telling the app the menu opens.
            desktop.wait_for(lambda: exported_menu_is_current(tray, item, ask_first=True), timeout=5,
                             what="the layout after AboutToShow to show what the status reports")
            tunnel = item.layout().child("svc/web :80 ")
            assert tunnel.label.endswith(web["pod"]) and tunnel.has_submenu and tunnel.enabled
            # The submenu is there without being opened first: a host shows it as it holds it.
            assert tunnel.labels()[0] == "Open", tunnel.labels()

            # --- the notice about it went to the notification server ------------------------
            def reconnect_notice() -> dict[str, Any] | None:
                return next((n for n in desktop.notifications()
                             if n["appname"] == "kubetray" and n["summary"].startswith("svc/web :80 ")), None)

            notice = desktop.wait_for(reconnect_notice, timeout=10, what="kubetray's notice about web at dunst")
            assert notice["summary"] == f"svc/web :80 moved to pod {web['pod']}", notice
            desktop.screenshot("sni-notification")
            assert desktop.run(["dunstctl", "count", "displayed"]).stdout.strip() != "0"

            # --- choosing "Open" in the exported menu opens the tunnel's URL ----------------
            item.about_to_show(tunnel.id)
            item.click(item.layout(tunnel.id).child("Open").id)
            opened_url = desktop.wait_for(lambda: desktop.browser_log.read_text(encoding="utf-8"), timeout=10,
                                          what="the stand-in browser to be run")
            assert opened_url == web["url"] + "\n"

            # --- SIGTERM: the item leaves the watcher's list and the bar --------------------
            assert all_forwarding(tray)
            assert tray.terminate() == 0, tray.stderr()
            desktop.wait_for(lambda: bus.item_of_pid(pid) is None and not any(
                                 r.split("/")[0] == item.bus_name for r in bus.registered_items()),
                             timeout=10, what="kubetray's item to be unregistered")
            desktop.wait_for(lambda: not desktop.sni_bar_icons(desktop.screenshot("sni-screen")), timeout=10,
                             what="the bar to be empty")
        assert "Traceback" not in tray.stderr() and " ERROR " not in tray.stderr(), tray.stderr()
    finally:
        if tray.alive():
            tray.terminate()
        (desktop.artifacts / "sni-screen.png").unlink(missing_ok=True)
