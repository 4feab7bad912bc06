"""Kubeconfig files pointing at simulated clusters: one context per cluster, bearer tokens and
TLS material embedded as `*-data` fields so the file stands alone.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class ClusterEntry:
    context: str
    server: str
    namespace: str = "default"
    token: str | None = None
    ca_pem: bytes | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    cluster_name: str | None = None  # defaults to the context name
    user_name: str | None = None  # defaults to "<context>-user"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def kubeconfig_dict(entries: Sequence[ClusterEntry], current: str | None = None) -> dict[str, Any]:
    if not entries:
        raise ValueError("a kubeconfig needs at least one context")
    names = [e.context for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"context names repeat: {names}")
    clusters, users, contexts = [], [], []
    for e in entries:
        cluster_name = e.cluster_name or e.context
        user_name = e.user_name or f"{e.context}-user"
        cluster: dict[str, Any] = {"server": e.server}
        if e.ca_pem is not None:
            cluster["certificate-authority-data"] = _b64(e.ca_pem)
        user: dict[str, Any] = {}
        if e.token is not None:
            user["token"] = e.token
        if e.client_cert_pem is not None and e.client_key_pem is not None:
            user["client-certificate-data"] = _b64(e.client_cert_pem)
            user["client-key-data"] = _b64(e.client_key_pem)
        clusters.append({"name": cluster_name, "cluster": cluster})
        users.append({"name": user_name, "user": user})
        contexts.append({"name": e.context, "context": {"cluster": cluster_name, "user": user_name,
                                                         "namespace": e.namespace}})
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "current-context": current or entries[0].context,
            "clusters": clusters, "users": users, "contexts": contexts}


def write_kubeconfig(path: str | Path, entries: Sequence[ClusterEntry], current: str | None = None) -> Path:
    """Write atomically with mode 0600 (it may hold tokens and keys), as kubectl does."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(kubeconfig_dict(entries, current), sort_keys=False)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path
