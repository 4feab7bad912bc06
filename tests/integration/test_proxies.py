"""The engine against the simulator behind proxies the tests run, as kubectl would go: the
kubeconfig's proxy-url, or HTTPS_PROXY/HTTP_PROXY with NO_PROXY from the environment; HTTP
CONNECT (with Basic auth) and SOCKS5; plain and TLS API servers.

The server is called `kube.invalid`, a name only the proxy resolves (to the simulator), so a
tunnel that works went through the proxy. With a plain-HTTP server the proxy also sees the
first request line of each tunnel, which shows the list, the watch and the port-forward each
took it.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.proxyservers import ConnectProxy, Socks5Proxy
from trayapp.model import EventKind
from trayapp.sim import SimCluster

from .conftest import SCENARIO, Events, running
from .test_auth import TOKEN, b64, kubeconfig, tls_cluster, web_rule
from .test_forwarding import http_get

NAME = "kube.invalid"  # resolves nowhere but in the test proxies
PASSWORD = "pr0xy-s3cret"


@pytest.fixture(autouse=True)
def _no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def sim() -> AsyncIterator[SimCluster]:
    async with SimCluster("behind-proxy", scenario=SCENARIO, token=TOKEN, bookmark_interval=0.5) as cluster:
        yield cluster


@contextlib.asynccontextmanager
async def proxy_of(kind: str, **options: Any) -> AsyncIterator[ConnectProxy | Socks5Proxy]:
    proxy: ConnectProxy | Socks5Proxy = Socks5Proxy(**options) if kind == "socks5" else ConnectProxy(**options)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def forward_and_get(path: Path, port: int) -> Events:
    async with running(path, [web_rule(port)]) as events:
        forwarding = await events.wait_for(EventKind.FORWARDING)
        status, headers, _ = await http_get(port)
        assert status == 200 and headers["x-pod"] == forwarding.pod
        return events


def requests_seen(proxy: ConnectProxy | Socks5Proxy) -> list[str]:
    return [t.first_line.decode() for t in proxy.tunnels if t.first_line]


def assert_list_watch_and_portforward_went_through(proxy: ConnectProxy | Socks5Proxy) -> None:
    seen = requests_seen(proxy)
    assert any("watch=1" in line for line in seen), seen
    assert any("/portforward" in line for line in seen), seen
    assert any("watch=" not in line and "/portforward" not in line for line in seen), seen  # a list


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_proxy_url_carries_list_watch_and_port_forward(
    kind: str, sim: SimCluster, tmp_path: Path, unused_tcp_port: int
) -> None:
    async with proxy_of(kind, hosts={NAME: "127.0.0.1"}) as proxy:
        path = kubeconfig(tmp_path / "kc", f"http://{NAME}:{sim.port}", {"proxy-url": proxy.url()}, {"token": TOKEN})
        await forward_and_get(path, unused_tcp_port)
        assert_list_watch_and_portforward_went_through(proxy)


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_http_proxy_from_the_environment(
    kind: str, sim: SimCluster, tmp_path: Path, unused_tcp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with proxy_of(kind, hosts={NAME: "127.0.0.1"}) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url())
        monkeypatch.setenv("NO_PROXY", "other.example,10.0.0.0/8")  # not this server
        path = kubeconfig(tmp_path / "kc", f"http://{NAME}:{sim.port}", {}, {"token": TOKEN})
        await forward_and_get(path, unused_tcp_port)
        assert_list_watch_and_portforward_went_through(proxy)


@pytest.mark.skipif(sys.platform == "win32", reason="Windows does not connect to 0.0.0.0")
@pytest.mark.parametrize("bypass", [False, True])
async def test_no_proxy_sends_the_server_direct(
    bypass: bool, sim: SimCluster, tmp_path: Path, unused_tcp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0.0.0.0 reaches the simulator on 127.0.0.1 directly, yet is not a loopback address to Go's
    # rules (which never proxy 127/8, ::1 or localhost): the proxy is used unless NO_PROXY says so.
    async with proxy_of("http") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url())
        if bypass:
            monkeypatch.setenv("no_proxy", "kube.example, 0.0.0.0")
        path = kubeconfig(tmp_path / "kc", f"http://0.0.0.0:{sim.port}", {}, {"token": TOKEN})
        await forward_and_get(path, unused_tcp_port)
        if bypass:
            assert proxy.carried == 0
        else:
            assert_list_watch_and_portforward_went_through(proxy)


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_proxy_with_user_and_password(kind: str, sim: SimCluster, tmp_path: Path, unused_tcp_port: int) -> None:
    async with proxy_of(kind, hosts={NAME: "127.0.0.1"}, user="kube", password=PASSWORD) as proxy:
        path = kubeconfig(tmp_path / "kc", f"http://{NAME}:{sim.port}",
                          {"proxy-url": proxy.url("kube", PASSWORD)}, {"token": TOKEN})
        await forward_and_get(path, unused_tcp_port)
        assert proxy.refused == 0
        assert_list_watch_and_portforward_went_through(proxy)


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_a_refused_proxy_password_never_shows(
    kind: str, sim: SimCluster, tmp_path: Path, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with proxy_of(kind, hosts={NAME: "127.0.0.1"}, user="kube", password="the-right-one") as proxy:
        path = kubeconfig(tmp_path / "kc", f"http://{NAME}:{sim.port}",
                          {"proxy-url": proxy.url("kube", PASSWORD)}, {"token": TOKEN})
        async with running(path, [web_rule(unused_tcp_port)]) as events:
            waiting = await events.wait_for(EventKind.WAITING, lambda e: "proxy" in e.message)
            assert f"{kind}://kube:xxxxx@127.0.0.1:{proxy.port}" in waiting.message
            assert not events.of(EventKind.FORWARDING)
        assert proxy.refused > 0
    texts = [e.message for e in events.seen] + [caplog.text]
    assert not [text for text in texts if PASSWORD in text]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize(("kind", "via"), [("http", "proxy-url"), ("socks5", "proxy-url"), ("https", "proxy-url"),
                                           ("http", "HTTPS_PROXY"), ("socks5", "https_proxy"), ("https", "HTTPS_PROXY")])
async def test_a_tls_server_through_the_proxies(
    kind: str, via: str, ca: trustme.CA, tmp_path: Path, unused_tcp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    options: dict[str, Any] = {}
    if kind == "https":  # TLS to the proxy too, its certificate from a CA this "system" trusts
        ca.cert_pem.write_to_path(str(tmp_path / "system-ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "system-ca.pem"))
        options["tls"] = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(options["tls"])
    async with tls_cluster(ca, name=NAME, token=TOKEN) as cluster, \
            proxy_of(kind, hosts={NAME: "127.0.0.1"}, **options) as proxy:
        fields = {"certificate-authority-data": b64(ca.cert_pem.bytes())}
        if via == "proxy-url":
            fields["proxy-url"] = proxy.url()
        else:
            monkeypatch.setenv(via, proxy.url())
        path = kubeconfig(tmp_path / "kc", f"https://{NAME}:{cluster.port}", fields, {"token": TOKEN})
        await forward_and_get(path, unused_tcp_port)
        # Certificates verified for kube.invalid, a name only the proxy resolves: list, watches
        # and the port-forward each needed a tunnel.
        assert proxy.carried >= 3
