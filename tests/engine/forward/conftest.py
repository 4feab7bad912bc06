"""Shared fixtures of the data-path tests. A module that uses `api` defines its own `cluster`
fixture (its scenario), and gets a KubeApi to that simulated cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from trayapp.engine.kube import Credentials, KubeApi
from trayapp.sim import SimCluster


@pytest.fixture
def api(cluster: SimCluster, tmp_path: Path) -> Iterator[KubeApi]:
    path = tmp_path / "kubeconfig"
    cluster.write_kubeconfig(path, context="sim")
    credentials = Credentials([path], None)
    yield KubeApi(credentials.load(), credentials)
    credentials.close()
