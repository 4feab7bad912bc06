"""The private system bus and the fake logind and NetworkManager on it, as fixtures (system_bus.py)."""

from .system_bus import logind, network_manager, system_bus  # noqa: F401 - fixtures
