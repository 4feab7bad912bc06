# PyInstaller run-time hook for the Windows build (packaging/kubetray.spec adds it on Windows only).
#
# kubetray.exe is windowed (console=False), so Python starts with sys.stdout and sys.stderr set
# to None, as under pythonw.exe (PyInstaller's "windowed" mode). kubetray writes to sys.stderr
# directly in places (trayapp/ui/app.py: "already running", "the engine stopped"), which would
# raise AttributeError there; `kubetray status` from this .exe would too. Point both at the null
# device: messages are dropped, as a windowed program's are, instead of crashing it.
import os
import sys

for _name in ("stdout", "stderr"):
    if getattr(sys, _name) is None:
        setattr(sys, _name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - lives as long as the process
