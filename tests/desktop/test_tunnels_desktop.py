"""Many tunnels on a real (virtual) desktop: the tray menu stays short (a submenu per group) and
"Show all tunnels…", chosen with real X input, opens the table, which follows the traffic.

`kubetray --demo` with 12 rules of its own and an `auto.selectors` entry that adds the api pod's
two ports: 14 tunnels, past the menu's limit of 12. Screenshots in
test-artifacts/desktop: menu-grouped.png (the menu with a group's submenu open) and
tunnels-window.png (the window after some traffic), both for the README (resources/screenshots/).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

from trayapp.ui.menu_model import MENU_TUNNEL_LIMIT

from .harness import Desktop
from .test_tray_desktop import top_level_menu
from .trayprocess import TrayProcess, entry

TARGETS = [("service", "web", 80)] * 6 + [("statefulset", "api", "grpc")] * 3 + [("pod", "debug-shell", 7000)] * 3


def write_rules(path: Path, free_port: Callable[[], int]) -> dict[int, str]:
    lines = ["# many tunnels, for the grouped menu", "portForward:"]
    names: dict[int, str] = {}
    for n, (kind, name, port) in enumerate(TARGETS):
        local = free_port()
        label = f"{name}-{n}"
        names[local] = label
        lines.append(f"  - {{resourceType: {kind}, resourceName: {name}, port: {port}, localPort: {local}, "
                     f"name: {label}}}")
    lines += ["auto:", "  selectors:", '    - {kind: pod, selector: "app=api"}', ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return names


def crop(desktop: Desktop, shot: Path, name: str, x: int, y: int, w: int, h: int) -> Path:
    out = desktop.artifacts / f"{name}.png"
    desktop.run(["convert", shot, "-crop", f"{w}x{h}+{max(x, 0)}+{max(y, 0)}", "+repage", out], check=True)
    return out


def test_a_long_menu_is_grouped_and_show_all_tunnels_opens_the_table(
        desktop: Desktop, tmp_path: Path, unused_tcp_port_factory: Callable[[], int]) -> None:
    rules = tmp_path / "rules.yaml"
    names = write_rules(rules, unused_tcp_port_factory)
    tray = TrayProcess(desktop, tmp_path, ("--config", str(rules))).start()
    try:
        try:
            status = desktop.wait_for(
                lambda: (s := tray.status()) and len(s.get("tunnels", [])) == 14
                and all(t["state"] == "forwarding" for t in s["tunnels"]) and s,
                timeout=30, what="14 tunnels forwarding")
        except AssertionError as exc:
            shown = [(t["rule"], t["state"], t["reason"]) for t in tray.status().get("tunnels", [])]
            raise AssertionError(f"{exc} The tunnels: {shown}") from None
        assert len(status["tunnels"]) > MENU_TUNNEL_LIMIT
        desktop.wait_for(lambda: tray.ui().get("trayGeometry", [0])[0] > 0, timeout=10, what="the icon in the panel")
        # The notice about the automatic tunnels comes once, after a second of gathering; closed,
        # it no longer covers the menu in the screenshot.
        desktop.wait_for(lambda: any("automatic" in n["summary"] for n in desktop.notifications()), timeout=15,
                         what="the notice about the automatic tunnels")
        desktop.run(["dunstctl", "close-all"], check=True)
        desktop.wait_for(lambda: desktop.run(["dunstctl", "count", "displayed"]).stdout.strip() == "0", timeout=5,
                         what="no notification on the screen")

        entries = tray.open_menu()
        texts = [e["text"] for e in entries]
        assert "namespace default (12)" in texts and "Automatic \u00b7 auto.selectors (2)" in texts, texts
        assert not any(t.startswith(("web-", "api-", "debug-shell-")) for t in texts)  # no tunnel on the menu itself
        group = entry(entries, "namespace default (12)")
        assert group["submenu"][:2] == ["web-0  \u2192 localhost:" + str(status["tunnels"][0]["localPort"])
                                        + "  " + status["tunnels"][0]["pod"],
                                        "web-1  \u2192 localhost:" + str(status["tunnels"][1]["localPort"])
                                        + "  " + status["tunnels"][1]["pod"]]
        # Hover the group: its submenu opens beside the menu, as a person would see it.
        desktop.xdotool("mousemove", group["x"], group["y"])
        (sub,) = desktop.wait_for(lambda: tray.ui().get("openSubmenus"), timeout=5, what="the group's submenu")
        assert sub["title"] == "namespace default (12)"
        shot = desktop.screenshot("menu-grouped-full")
        menu = top_level_menu(desktop, tray.ui()["entries"])
        left = min(menu["x"], sub["x"])
        right = max(menu["x"] + menu["width"], sub["x"] + sub["width"])
        bottom = max(menu["y"] + menu["height"], sub["y"] + sub["height"])
        crop(desktop, shot, "menu-grouped", left - 10, 0, right - left + 20, bottom + 10)

        show = entry(tray.ui()["entries"], "Show all tunnels")
        tray.click(show)
        window = desktop.wait_for(lambda: tray.ui().get("tunnelsWindow"), timeout=10, what="the tunnels window")
        assert window["title"] == "kubetray: all tunnels"
        assert sorted(r["name"] for r in window["rows"] if not r["name"].startswith("sts/api ")) == sorted(names.values())
        # The automatic ones are named after the pod's StatefulSet and the ports' names, not the pod.
        assert sorted(r["name"] for r in window["rows"] if r["name"].startswith("sts/api ")) == [
            "sts/api grpc", "sts/api http"]

        # Traffic through one tunnel reaches its row, pushed by the engine (nothing asks for it).
        web = next(t for t in status["tunnels"] if t["rule"] == "web-0")
        for _ in range(2):
            with urllib.request.urlopen(f"http://127.0.0.1:{web['localPort']}/", timeout=10) as answer:
                assert answer.status == 200
        row = desktop.wait_for(
            lambda: next((r for r in (tray.ui().get("tunnelsWindow") or {}).get("rows", [])
                          if r["name"] == "web-0" and r["connections"] == 2 and r["openConnections"] == 0), None),
            timeout=20, what="the web-0 row to count two connections")
        assert row["bytesIn"] > 0 and row["bytesOut"] > 0
        x, y, w, h = tray.ui()["tunnelsWindow"]["geometry"]
        desktop.run(["dunstctl", "close-all"])  # the notice about the automatic tunnels would cover it
        shot = desktop.screenshot("tunnels-window-full")
        crop(desktop, shot, "tunnels-window", x, y, w, h)
    finally:
        if tray.alive():
            assert tray.terminate() == 0, tray.stderr()
