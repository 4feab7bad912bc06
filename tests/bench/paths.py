"""The forwarding paths under test, behind one small interface the bench drives in turn.

`TcpPath` is direct TCP, kubetray and kubectl: the bench's own client over a local TCP address.
`StockPath` is the stock kubernetes client: the same client code in the stock-client driver process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import httpload
from procs import Child
from setup_paths import StockDriver


class ForwardPath(Protocol):
    key: str
    label: str

    @property
    def forwarder(self) -> Child | None: ...
    def download(self, size: int, deadline: float) -> httpload.Transfer: ...
    def upload(self, size: int, digest: str, deadline: float) -> httpload.Transfer: ...
    def latency(self, count: int, keepalive: bool, deadline: float) -> httpload.Latency: ...
    def burst(self, count: int, deadline: float) -> float: ...


@dataclass
class TcpPath:
    key: str
    label: str
    address: tuple[str, int]
    process: Child | None = None  # the forwarding process whose CPU is measured, if any

    @property
    def forwarder(self) -> Child | None:
        return self.process

    def _connect(self) -> httpload.Conn:
        return httpload.tcp_connect(self.address)

    def download(self, size: int, deadline: float) -> httpload.Transfer:
        conn = self._connect()
        try:
            return httpload.download(conn, size, deadline)
        finally:
            conn.close()

    def upload(self, size: int, digest: str, deadline: float) -> httpload.Transfer:
        conn = self._connect()
        try:
            return httpload.upload(conn, size, digest, deadline)
        finally:
            conn.close()

    def latency(self, count: int, keepalive: bool, deadline: float) -> httpload.Latency:
        return httpload.latency(self._connect, count, keepalive, deadline)

    def burst(self, count: int, deadline: float) -> float:
        return httpload.burst(self._connect, count, deadline)


@dataclass
class StockPath:
    driver: StockDriver
    key: str = "c"
    label: str = "kubernetes client stock portforward"

    @property
    def forwarder(self) -> Child | None:
        return self.driver.child

    def _left(self, deadline: float) -> float:
        return max(1.0, deadline - time.perf_counter())

    def download(self, size: int, deadline: float) -> httpload.Transfer:
        answer = self.driver.run({"op": "download", "size": size}, self._left(deadline))
        return httpload.Transfer(int(answer["nbytes"]), float(answer["seconds"]))

    def upload(self, size: int, digest: str, deadline: float) -> httpload.Transfer:
        answer = self.driver.run({"op": "upload", "size": size, "sha256": digest},
                                 self._left(deadline))
        return httpload.Transfer(int(answer["nbytes"]), float(answer["seconds"]))

    def latency(self, count: int, keepalive: bool, deadline: float) -> httpload.Latency:
        answer = self.driver.run({"op": "latency", "count": count, "keepalive": keepalive},
                                 self._left(deadline))
        return httpload.Latency(float(answer["p50_ms"]), float(answer["p99_ms"]), int(answer["count"]))

    def burst(self, count: int, deadline: float) -> float:
        return float(self.driver.run({"op": "burst", "count": count}, self._left(deadline))["ms"])
