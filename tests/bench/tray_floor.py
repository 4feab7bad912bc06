"""The floor for the tray benchmark: an empty PySide6 app that shows one QSystemTrayIcon and
nothing else (no engine, no menu, no kubetray import). bench_tray.py times it to the icon embedded
in trayer and reads its RSS, in the same desktop session as kubetray.

    python tests/bench/tray_floor.py ICON.svg
"""

from __future__ import annotations

import sys

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

if __name__ == "__main__":
    app = QApplication(sys.argv[:1])
    app.setApplicationName("kubetray-floor")
    app.setQuitOnLastWindowClosed(False)
    icon = QSystemTrayIcon(QIcon(sys.argv[1]))
    icon.show()
    raise SystemExit(app.exec())
