from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from trayapp.sim import SimCluster

SCENARIO = """
deployments:
  - name: web
    replicas: 2
    labels: {app: web, tier: front}
    ports: [{name: http, containerPort: 8080}]
services:
  - name: web
    selector: {app: web}
    ports: [{name: http, port: 80, targetPort: http}]
statefulsets:
  - name: api
    ports: [{name: grpc, containerPort: 9090}, {name: http, containerPort: 8000}]
cronjobs:
  - name: report
    jobs: 1
    ports: [{name: http, containerPort: 8080}]
pods:
  - name: debug-shell
    labels: {app: debug}
    ports:
      - {containerPort: 7000, kind: echo}
      - {containerPort: 7001, kind: source}
      - {containerPort: 7002, refuse: true}
"""


@pytest.fixture
async def cluster() -> AsyncIterator[SimCluster]:
    c = SimCluster("test", scenario=SCENARIO, bookmark_interval=0.2)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()
