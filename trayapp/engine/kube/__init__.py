"""Talking to the API server: kubeconfig, credentials, connections, HTTP, list/watch and the cache.

Never imports `trayapp.engine.forward` (tests/test_layering.py holds it to that). What the rest of
kubetray uses is named here; the modules behind it are free to change.
"""

from trayapp.engine.kube.api import (
    USER_AGENT,
    WATCH_SILENCE_SECONDS,
    KubeApi,
    error_for_status,
    portforward_path,
    retry_after_seconds,
    with_fresh_credentials,
)
from trayapp.engine.kube.auth import ClusterAccess, Credentials
from trayapp.engine.kube.cache import ClusterCache
from trayapp.engine.kube.httpclient import status_message
from trayapp.engine.kube.informer import Informer
from trayapp.engine.kube.kubeconfig import (
    EffectiveContext,
    MergedKubeconfig,
    kubeconfig_paths,
    merged_kubeconfig,
    read_effective_context,
    set_current_context,
)

__all__ = [
    "USER_AGENT",
    "WATCH_SILENCE_SECONDS",
    "ClusterAccess",
    "ClusterCache",
    "Credentials",
    "EffectiveContext",
    "Informer",
    "KubeApi",
    "MergedKubeconfig",
    "error_for_status",
    "kubeconfig_paths",
    "merged_kubeconfig",
    "portforward_path",
    "read_effective_context",
    "retry_after_seconds",
    "set_current_context",
    "status_message",
    "with_fresh_credentials",
]
