"""Moving bytes: wire codecs (v4 channels, SPDY), dialing, listeners and local ports, the byte
pump, the tunnel state machine and pod choice.

Uses `trayapp.engine.kube` to reach the API server, never the other way round. What the rest of
kubetray uses is named here; the simulator also takes the codecs, in the server role.
"""

from trayapp.engine.forward.forwarder import Forwarder
from trayapp.engine.forward.negotiate import PREFERENCE, Negotiator, TunnelDialer, build_dialer
from trayapp.engine.forward.ports import bind_listener
from trayapp.engine.forward.resolve import (
    PortNumbers,
    namespaces_to_decide,
    one_per_forward,
    service_port_numbers,
    target_key,
)
from trayapp.engine.forward.transport import Dialer, PodConnection, PodRefused, TransportRefused
from trayapp.engine.forward.v4dial import V4Dialer
from trayapp.engine.forward.wire import SUBPROTOCOL, ServerChannels

__all__ = [
    "PREFERENCE",
    "SUBPROTOCOL",
    "Dialer",
    "Forwarder",
    "Negotiator",
    "PodConnection",
    "PodRefused",
    "TransportRefused",
    "TunnelDialer",
    "V4Dialer",
    "build_dialer",
    "PortNumbers",
    "ServerChannels",
    "bind_listener",
    "namespaces_to_decide",
    "one_per_forward",
    "service_port_numbers",
    "target_key",
]
