"""The bundle's entry point: PyInstaller freezes this script, which runs the `kubetray` command."""

import sys

from trayapp.cli import main

if __name__ == "__main__":
    sys.exit(main())
