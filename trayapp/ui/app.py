"""`kubetray` with no subcommand: the tray app.

The GUI thread owns Qt; the engine (Controller) runs on its own asyncio loop in EngineThread.
Engine callbacks reach the GUI through Bridge signals; menu commands go back as coroutines
submitted to the engine loop. Notifications: the pure NoticePolicy decides, DesktopNotices sends
them through the platform's service on the engine loop, and the tray's own balloon is used only
when there is no such service.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSocketNotifier, QTimer, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QApplication, QInputDialog, QLineEdit, QSystemTrayIcon

from trayapp.config.example import ensure_rules_file
from trayapp.config.paths import default_rules_path
from trayapp.config.settings import UiSettings, load_settings, save_settings
from trayapp.control import Controller, Snapshot
from trayapp.engine.events import EventBus
from trayapp.errors import KubetrayError
from trayapp.model import Event, EventKind, Notice, TunnelState, tunnel_url
from trayapp.platform.autostart import AutostartError, for_platform, installed_command
from trayapp.platform.notify import DesktopNotices
from trayapp.startup import engine_options, serve_with_instance, setup_logging
from trayapp.ui.bridge import Bridge
from trayapp.ui.engine_thread import EngineThread
from trayapp.ui.menu_model import (
    ChangeLocalPort,
    Command,
    CopyText,
    ExcludeAuto,
    KeepForwarding,
    OpenUrl,
    Prefs,
    Restart,
    SetAutostart,
    SetEnabled,
    SetNotifications,
    SetPaused,
    SetToken,
    Simple,
    StopForwarding,
    SwitchContext,
)
from trayapp.ui.notices import NoticePolicy
from trayapp.ui.tray import Tray, icon_path
from trayapp.ui.tunnels_model import TunnelTable
from trayapp.ui.tunnels_window import TunnelsWindow
from trayapp.ui.windows import LogWindow, Questions, StatusWindow

log = logging.getLogger(__name__)

NO_TRAY_TEXT = ("No system tray was found on this desktop, so kubetray shows a small status window instead; "
                "it keeps forwarding while that window is open or minimised.")


class TrayApp(QObject):
    # A QObject living on the GUI thread, so the Bridge's signals, emitted on the engine thread,
    # are queued to this thread's loop; with plain callables PySide may run them elsewhere.

    def __init__(self, app: QApplication, args: argparse.Namespace, rules: Path | None, kubeconfig: str | None,
                 extra_status: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.qt = app
        self.started = time.monotonic()
        self.bridge = Bridge()
        self.settings = load_settings()
        self.autostart = for_platform()
        self.engine = EngineThread()
        self.bus = EventBus()
        self.controller = Controller(engine_options(args, rules, kubeconfig), self.bus,
                                     on_snapshot=self.bridge.push_snapshot)
        self.controller.mode = "tray"
        self.controller.ui_requests = self.bridge.ask_ui
        self.extra_status = extra_status or {}
        self.bus.subscribe(self.bridge.push_event)
        self.policy = NoticePolicy()
        self.policy.enabled = self.settings.notifications
        self.notices = DesktopNotices(app_icon=icon_path("kubetray"), on_clicked=self.bridge.clicked)
        self.flush_timer = QTimer()
        self.flush_timer.setSingleShot(True)
        self.flush_timer.timeout.connect(self._flush_notices)
        self.tray = Tray(self.run_command, self.prefs)
        self.status_window: StatusWindow | None = None
        self.log_window: LogWindow | None = None
        # Kept from the start, so the tunnels window knows since when each tunnel is in its state.
        self.tunnel_table = TunnelTable()
        self.tunnels_window: TunnelsWindow | None = None
        self.questions = Questions()
        self.exit_status = 0
        self._shutting_down = False
        self.first_forwarding_at: float | None = None

        self.bridge.snapshot.connect(self._snapshot)
        self.bridge.engine_event.connect(self._event)
        self.bridge.request.connect(self._request)
        self.bridge.notice_fallback.connect(self._balloon)
        self.bridge.tell_later.connect(self.tell)
        self.bridge.notice_clicked.connect(self._notice_clicked)
        self.bridge.engine_finished.connect(self._engine_finished)

    # Start and stop

    def start(self) -> None:
        self.tray.show()
        if not QSystemTrayIcon.isSystemTrayAvailable():
            sys.stderr.write(NO_TRAY_TEXT + "\n")  # once, at start: a tray that appears later is used
            self.status_window = StatusWindow(self.tray, self.run_command, NO_TRAY_TEXT)
            self.status_window.show()
        self.engine.start(self._engine_main)
        self.engine.finished.add_done_callback(self._finished_in_engine)

    async def _engine_main(self, stop: Any) -> int:
        try:
            return await serve_with_instance(self.controller, stop)
        finally:
            await self.notices.close()

    def _finished_in_engine(self, future: concurrent.futures.Future[object]) -> None:
        self.bridge.later(self.bridge.engine_finished, future.exception() or future.result())

    @Slot(object)
    def _engine_finished(self, outcome: object) -> None:
        if self._shutting_down:
            return  # we stopped it ourselves
        if isinstance(outcome, BaseException):
            sys.stderr.write(f"kubetray's engine stopped with an error: {outcome}\n")
            self.exit_status = 2
        elif isinstance(outcome, int):
            self.exit_status = outcome
        self.tray.hide()
        self.qt.exit(self.exit_status)

    def shutdown(self) -> None:
        """Stop the engine (listeners closed) and hide the tray; the Qt loop keeps running."""
        self._shutting_down = True
        # Qt objects with running timers (ours, the log view's cursor blink) must be stopped and
        # deleted on this thread: freed later by the garbage collector on another thread (a new
        # engine's), Qt cannot stop their timers and warns.
        self.flush_timer.stop()
        for window in (self.log_window, self.tunnels_window):
            if window is not None:
                window.close()
                window.deleteLater()
        self.log_window = self.tunnels_window = None
        self.tray.hide()
        if not self.engine.stop():
            log.warning("the engine did not stop within 10 s; quitting anyway")

    def quit(self) -> None:
        self.shutdown()
        self.qt.exit(self.exit_status)

    # Engine -> UI

    @Slot(object)
    def _snapshot(self, snapshot: Snapshot) -> None:
        if self.first_forwarding_at is None and any(t.state == TunnelState.FORWARDING for t in snapshot.tunnels):
            self.first_forwarding_at = time.monotonic()
        self.tray.update(snapshot)
        self.policy.set_current_context(snapshot.context)
        if self.status_window is not None:
            self.status_window.update(snapshot)
        self.tunnel_table.apply_snapshot(snapshot)
        if self.tunnels_window is not None:
            self.tunnels_window.changed()

    @Slot(object)
    def _event(self, event: Event) -> None:
        if event.kind == EventKind.STATS:  # traffic counters: for the tunnels window only
            if self.tunnel_table.apply_stats(event.tunnel_id, event.stats) and self.tunnels_window is not None:
                self.tunnels_window.changed()
            return
        if self.log_window is not None:
            self.log_window.add(event)
        self.policy.admit(event, self._url_for(event))
        self._schedule_flush()

    def _url_for(self, event: Event) -> str | None:
        if event.local_port is None or event.tunnel_id is None:
            return None
        view = self.tray.snapshot.tunnel(event.tunnel_id)
        # A tunnel the snapshot does not know yet: its rule's scheme is found again on click.
        return tunnel_url(view.rule, event.local_port) if view else f"http://localhost:{event.local_port}/"

    def _schedule_flush(self) -> None:
        due = self.policy.deadline()
        # After shutdown, events still queued for this thread must not start the timer again:
        # it would outlive shutdown() and could be freed on another thread while it runs.
        if due is None or self._shutting_down:
            return
        wait_ms = max(0, int((due - time.monotonic()) * 1000) + 1)
        if not self.flush_timer.isActive() or self.flush_timer.remainingTime() > wait_ms:
            self.flush_timer.start(wait_ms)

    def _flush_notices(self) -> None:
        for notice in self.policy.flush():
            self.tell(notice)
        self._schedule_flush()

    @Slot(object)
    def tell(self, notice: Notice) -> None:
        """Show a notice through the platform's service, else through the tray's own balloon."""
        future = self.engine.submit(self.notices.send(notice))

        def sent(done: concurrent.futures.Future[bool]) -> None:
            if done.cancelled() or done.exception() is not None or not done.result():
                self.bridge.later(self.bridge.notice_fallback, notice)

        future.add_done_callback(sent)

    @Slot(object)
    def _balloon(self, notice: Notice) -> None:
        kind = QSystemTrayIcon.MessageIcon.Critical if notice.sticky else QSystemTrayIcon.MessageIcon.Information
        self.tray.icon.showMessage(notice.title, notice.body, kind, 0 if notice.sticky else 8000)

    @Slot(object)
    def _notice_clicked(self, notice: Notice) -> None:
        # The URL as of now, from the latest state: the event that made the notice may have come
        # before the snapshot that knew the tunnel's scheme and path.
        view = self.tray.snapshot.tunnel(notice.tunnel_id)
        url = (view.url if view else None) or notice.url
        if url:
            self.open_url(url)

    @Slot(object, object)
    def _request(self, request: dict[str, Any], answer: concurrent.futures.Future[dict[str, Any]]) -> None:
        if answer.done():
            return  # the asking side gave up waiting
        try:
            answer.set_result(self.answer(request))
        except Exception as exc:  # the asking process gets the reason instead of a timeout
            answer.set_result({"error": str(exc)})

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        kind = request.get("request")
        if kind == "show":
            if self.status_window is not None:
                self.status_window.showNormal()
                self.status_window.raise_()
                self.status_window.activateWindow()
            else:
                self.tray.popup()
            return {"shown": True}
        if kind == "ui":
            geometry = self.tray.icon.geometry()
            return {
                "trayAvailable": QSystemTrayIcon.isSystemTrayAvailable(),
                "trayGeometry": [geometry.x(), geometry.y(), geometry.width(), geometry.height()],
                "statusWindow": self.status_window is not None and self.status_window.isVisible(),
                "menuVisible": self.tray.menu.isVisible(),
                "entries": self.tray.entries() if self.tray.menu.isVisible() else [],
                "openSubmenus": self.tray.open_submenus() if self.tray.menu.isVisible() else [],
                "tooltip": self.tray.icon.toolTip(),
                "notifications": self.policy.enabled,
                "tunnelsWindow": self._tunnels_window_state(),
                "firstForwardingSeconds": (self.first_forwarding_at - self.started
                                           if self.first_forwarding_at else None),
                **self.extra_status,
            }
        return {"error": f"unknown request {kind!r}"}

    def _tunnels_window_state(self) -> dict[str, Any] | None:
        """What the tunnels window shows, while it is open: its rows and where it is on screen."""
        window = self.tunnels_window
        if window is None or not window.isVisible():
            return None
        frame = window.frameGeometry()
        rows = [window.model.row(n) for n in range(window.model.rowCount())]
        return {
            "title": window.windowTitle(),
            "geometry": [frame.x(), frame.y(), frame.width(), frame.height()],
            "rows": [{"name": r.name, "state": r.state.value, "context": r.context, "address": r.address,
                      "openConnections": r.stats.open_connections, "connections": r.stats.connections,
                      "bytesIn": r.stats.bytes_in, "bytesOut": r.stats.bytes_out} for r in rows],
        }

    # UI -> engine

    def prefs(self) -> Prefs:
        return Prefs(
            autostart=self._autostart_enabled(),
            autostart_supported=bool(self.autostart.location),
            notifications=self.policy.enabled,
        )

    def _autostart_enabled(self) -> bool:
        try:
            return self.autostart.enabled()
        except AutostartError:
            return False

    def run_command(self, command: Command) -> None:
        c = self.controller
        if isinstance(command, OpenUrl):
            self.open_url(command.url)
        elif isinstance(command, CopyText):
            QGuiApplication.clipboard().setText(command.text)
        elif isinstance(command, Restart):
            self._submit(c.restart(command.tunnel_id), "restart that tunnel")
        elif isinstance(command, SetEnabled):
            self._submit(c.set_enabled(command.tunnel_id, command.enabled),
                         "start that tunnel" if command.enabled else "stop that tunnel")
        elif isinstance(command, SetPaused):
            self._submit(c.pause_all() if command.paused else c.resume_all(),
                         "pause the tunnels" if command.paused else "resume the tunnels")
        elif isinstance(command, SwitchContext):
            self._submit(c.switch_context(command.name), f"switch to context {command.name}")
        elif isinstance(command, SetToken):
            self._ask_token(command.context)
        elif isinstance(command, SetAutostart):
            self._set_autostart(command.enabled)
        elif isinstance(command, SetNotifications):
            self.policy.enabled = command.enabled
            self.settings = UiSettings(notifications=command.enabled)
            try:
                save_settings(self.settings)
            except OSError as exc:
                self.tell(Notice("kubetray could not save its settings",
                                 f"Writing {exc.filename or 'the settings file'} failed ({exc.strerror}); "
                                 "the choice holds until kubetray quits.", sticky=True))
        elif command is Simple.FORWARD:
            self._show_picker()
        elif command is Simple.OPEN_RULES:
            self._open_rules()
        elif command is Simple.RELOAD_RULES:
            self._submit(c.reload_rules(), "reload the rules")
        elif command is Simple.SHOW_LOG:
            self._show_log()
        elif command is Simple.SHOW_TUNNELS:
            self.show_tunnels()
        elif isinstance(command, ChangeLocalPort):
            self._change_local_port(command)
        elif isinstance(command, StopForwarding):
            self._stop_forwarding(command)
        elif isinstance(command, ExcludeAuto):
            self._edit_rules(f"stop forwarding {command.label} automatically",
                             f"kubetray no longer forwards {command.label} automatically",
                             lambda edit: edit.exclude_auto(command.rules_path, command.namespace, command.kind,
                                                            command.name, command.port))
        elif isinstance(command, KeepForwarding):
            self._edit_rules(
                f"change whether context {command.context} keeps forwarding",
                f"kubetray keeps forwarding context {command.context}" if command.pinned else
                f"kubetray forwards context {command.context} only while it is current",
                lambda edit: edit.set_pinned(command.rules_path, command.context, command.pinned))
        elif command is Simple.QUIT:
            self.quit()

    def _submit(self, coro: Any, what: str) -> None:
        future = self.engine.submit(coro)

        def done(result: concurrent.futures.Future[object]) -> None:
            if result.cancelled():
                return  # quitting: the engine cancelled what was still running
            exc = result.exception()
            if exc is not None:
                reason = exc.message if isinstance(exc, KubetrayError) else str(exc)
                # The user just asked for this, so the answer is shown even with notifications off,
                # through the platform's service like any notice.
                self.bridge.later(self.bridge.tell_later, Notice(f"kubetray could not {what}", reason, sticky=True))

        future.add_done_callback(done)

    def open_url(self, url: str) -> None:
        if not QDesktopServices.openUrl(QUrl(url)):
            self.tell(Notice("kubetray could not open a browser",
                             f"No program to open {url} was found; the address is copied to the clipboard.",
                             sticky=True))
            QGuiApplication.clipboard().setText(url)

    def _open_rules(self) -> None:
        path = self.tray.snapshot.rules_path or default_rules_path()
        if ensure_rules_file(path):
            log.info("created %s with a commented example", path)
        self.open_url(QUrl.fromLocalFile(str(path)).toString())

    def _show_picker(self) -> None:
        """"Forward…": pick a port in the cluster and save it as a rule (ui/picker.py); one window at a time."""
        from trayapp.ui.picker import open_picker

        self._picker = open_picker(getattr(self, "_picker", None), self.engine, self.bridge, self.controller,
                                   lambda: self.tray.snapshot)

    def _set_autostart(self, enabled: bool) -> None:
        try:
            if enabled:
                self.autostart.enable(installed_command())
            else:
                self.autostart.disable()
        except AutostartError as exc:
            self.tell(Notice(exc.title, exc.message, sticky=True))

    def _ask_token(self, context: str) -> None:
        token, ok = QInputDialog.getText(
            # The one place kubetray lets the keyring ask to be unlocked: the user asked to store a token.
            None, "kubetray: set token",
            f"Bearer token for context {context}\n(stored in the OS keyring, which may ask you to unlock it):",
            QLineEdit.EchoMode.Password)
        if ok and token.strip():
            self._submit(self.controller.set_token(context, token.strip()),
                         f"store the token for context {context}")

    # Changing the rules file: the running engine applies each change by itself (it watches the file).

    def _change_local_port(self, command: ChangeLocalPort) -> None:
        port = self.questions.local_port(command.label, command.local_port)
        if port is None or port == command.local_port:
            return
        self._edit_rules(f"change the local port of {command.label}", f"{command.label} moves to local port {port}",
                         lambda edit: edit.set_local_port(command.rules_path, command.selector, port))

    def _stop_forwarding(self, command: StopForwarding) -> None:
        if not self.questions.confirm(
                f"Stop forwarding {command.label}?",
                f"kubetray removes its rule from {command.where}; the tunnel and its open connections end. "
                "To forward it again, add the rule back.", "Stop forwarding"):
            return
        self._edit_rules(f"stop forwarding {command.label}", f"kubetray stopped forwarding {command.label}",
                         lambda edit: edit.remove_rule(command.rules_path, command.selector))

    def _edit_rules(self, what: str, done: str, change: Callable[[Any], Any]) -> bool:
        """Run one change through trayapp.config.edit and tell the user how it went; True if it was made."""
        try:
            # Imported when first used: ruamel.yaml is loaded only by a kubetray that edits.
            edit = importlib.import_module("trayapp.config.edit")
            result = change(edit)
        except KubetrayError as exc:  # a file with problems, a rule not found or found twice
            self.tell(Notice(f"kubetray could not {what}", exc.message, sticky=True))
            return False
        except OSError as exc:
            self.tell(Notice(f"kubetray could not {what}",
                             f"Writing {exc.filename or 'the rules file'} failed ({exc.strerror}); "
                             "the file is as it was.", sticky=True))
            return False
        except ImportError:
            self.tell(Notice(f"kubetray could not {what}",
                             "This kubetray cannot edit the rules file; open it and change it by hand.", sticky=True))
            return False
        log.info("%s: %s", done, result.message)
        if self.policy.enabled:
            self.tell(Notice(done, result.message))
        return True

    def show_tunnels(self) -> None:
        if self.tunnels_window is None:
            self.tunnels_window = TunnelsWindow(self.tunnel_table, self.tray.icons.dots, self.run_command,
                                                self.tray.icons.app)
        self.tunnels_window.refresh()
        self.tunnels_window.show()
        self.tunnels_window.raise_()
        self.tunnels_window.activateWindow()
        self.tunnels_window.filter.setFocus()  # type to filter at once

    def _show_log(self) -> None:
        if self.log_window is None:
            self.log_window = LogWindow()
            for event in self.tray.snapshot.recent:
                self.log_window.add(event)
        self.log_window.show()
        self.log_window.raise_()


def _quit_on_signals(app: TrayApp) -> QSocketNotifier | None:
    """SIGINT/SIGTERM quit cleanly: Python's wakeup fd wakes Qt's loop, no timer polling."""
    if sys.platform == "win32":
        return None
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno())
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)  # the handler runs once Qt's loop wakes
    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Type.Read)

    def woke() -> None:
        try:
            reader.recv(64)
        except BlockingIOError:
            return
        app.quit()

    notifier.activated.connect(woke)
    notifier._sockets = (reader, writer)  # type: ignore[attr-defined]  # kept alive with the notifier
    return notifier


def run_tray(args: argparse.Namespace) -> int:
    from trayapp.platform.instance import ask
    from trayapp.platform.limits import raise_open_file_limit

    setup_logging(args.verbose)
    answer = ask({"request": "show"}, 3.0)
    if answer is not None:
        if answer.get("shown"):
            print("kubetray is already running; it shows its menu now.")
            return 0
        from trayapp.startup import already_running_text

        sys.stderr.write(already_running_text())  # a headless one: it has no menu to show
        return 1
    raise_open_file_limit()
    qt = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(qt, QApplication)
    qt.setApplicationName("kubetray")
    qt.setDesktopFileName("kubetray")
    qt.setQuitOnLastWindowClosed(False)
    if args.demo:
        from trayapp.demo import demo_environment

        with demo_environment() as demo:
            app = TrayApp(qt, args, args.config or demo.rules, str(demo.kubeconfig),
                          {"demo": {"server": demo.control_url, "kubeconfig": str(demo.kubeconfig)}})
            return _run(qt, app)
    return _run(qt, TrayApp(qt, args, args.config, args.kubeconfig))


def _run(qt: QApplication, app: TrayApp) -> int:
    notifier = _quit_on_signals(app)
    qt.setWindowIcon(app.tray.icons.app)
    app.start()
    qt.exec()
    app.engine.stop()
    del notifier
    return app.exit_status

