"""kubetray: keeps Kubernetes port forwards alive from the desktop tray or a terminal."""

__version__ = "0.1.0"
