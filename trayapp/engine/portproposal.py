"""Which local port a new rule would get, shown in the "Forward…" window before the rule is saved.

The same choice a tunnel makes when it starts (forward/ports.py, Skaffold's order: the port, the
next ten, 4503-4533, then one the OS picks), made by binding each candidate on the rule's address
and letting go of it again at once. It is a preview, not a reservation: the tunnel binds for real
when the saved rule starts, and falls back by itself (and says so) if the port was taken meanwhile.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from trayapp.engine.forward import bind_listener
from trayapp.errors import PortError
from trayapp.model import DEFAULT_ADDRESS


@dataclass(frozen=True)
class LocalPortProposal:
    port: int | None  # None: no port on that address will do (`problem` says why)
    requested: int
    reasons: tuple[str, ...] = ()  # why each earlier candidate was passed over
    problem: str | None = None

    @property
    def fell_back(self) -> bool:
        return self.port is not None and self.port != self.requested


def propose_local_port(requested: int, taken: Container[int] = (), address: str = DEFAULT_ADDRESS) -> LocalPortProposal:
    """The local port a rule asking for `requested` on `address` would get now.

    `taken` holds the local ports kubetray's own tunnels already use or ask for on that address:
    they are skipped as the engine skips them, even while a paused tunnel leaves one unbound.
    """
    try:
        bound = bind_listener(address, requested, taken)
    except PortError as exc:
        return LocalPortProposal(None, requested, problem=exc.message)
    bound.close()
    return LocalPortProposal(bound.port, requested, bound.reasons)
