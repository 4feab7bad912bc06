"""kubetray's cluster simulator: the Kubernetes API (discovery, get/list/watch), port-forward over
WebSocket (v4) and SPDY (plain or in a WebSocket), and real TCP backends per pod, on 127.0.0.1.
See README.md in this package."""

from trayapp.sim.cluster import SimCluster, TlsConfig
from trayapp.sim.kubeconfig import ClusterEntry, write_kubeconfig

__all__ = ["ClusterEntry", "SimCluster", "TlsConfig", "write_kubeconfig"]
