"""Every way a kubeconfig can say how to connect, through the engine against the simulator:
CA data and files, client certificates, bearer tokens, token files, exec plugins,
insecure-skip-tls-verify, tls-server-name and an http proxy-url."""

from __future__ import annotations

import asyncio
import time
import base64
import contextlib
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from trayapp.engine.auth import Credentials
from trayapp.engine.events import EventBus
from trayapp.engine.runtime import ContextRun
from trayapp.errors import KubeconfigError
from trayapp.model import EventKind, ResourceType, Rule
from trayapp.sim import SimCluster, TlsConfig

from .conftest import SCENARIO, Events, running
from .test_forwarding import http_get

TOKEN = "s3cret-token"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(path: Path, server: str, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "default"}}],
    }), encoding="utf-8")
    return path


async def forward_once(path: Path, port: int) -> tuple[Events, str]:
    """Start one service rule with this kubeconfig and make one request through it."""
    async with running(path, [web_rule(port)]) as events:
        forwarding = await events.wait_for(EventKind.FORWARDING)
        status, headers, _ = await http_get(port)
        assert status == 200
        return events, headers["x-pod"] if headers["x-pod"] == forwarding.pod else ""


def web_rule(port: int) -> Rule:
    return Rule(ResourceType.SERVICE, "web", 80, local_port=port)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@contextlib.asynccontextmanager
async def tls_cluster(ca: trustme.CA, *, name: str = "127.0.0.1", client_certs: bool = False,
                      token: str | None = None) -> AsyncIterator[SimCluster]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    if client_certs:
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    cluster = SimCluster("tls", scenario=SCENARIO, token=token, tls=TlsConfig(context, ca.cert_pem.bytes()))
    await cluster.start()
    try:
        yield cluster
    finally:
        await cluster.stop()


async def test_ca_data_and_bearer_token(ca: trustme.CA, tmp_path: Path, unused_tcp_port: int) -> None:
    async with tls_cluster(ca, token=TOKEN) as cluster:
        path = kubeconfig(tmp_path / "kc", cluster.url,
                          {"certificate-authority-data": b64(ca.cert_pem.bytes())}, {"token": TOKEN})
        _, pod = await forward_once(path, unused_tcp_port)
        assert pod.startswith("web-")


async def test_ca_file_and_client_certificate_files(ca: trustme.CA, tmp_path: Path, unused_tcp_port: int) -> None:
    client = ca.issue_cert("kubetray-user")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.crt"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    async with tls_cluster(ca, client_certs=True) as cluster:
        path = kubeconfig(tmp_path / "kc", cluster.url, {"certificate-authority": "ca.crt"},
                          {"client-certificate": "client.crt", "client-key": "client.key"})
        _, pod = await forward_once(path, unused_tcp_port)
        assert pod.startswith("web-")


async def test_token_file(ca: trustme.CA, tmp_path: Path, unused_tcp_port: int) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n", encoding="utf-8")
    async with tls_cluster(ca, token=TOKEN) as cluster:
        path = kubeconfig(tmp_path / "kc", cluster.url,
                          {"certificate-authority-data": b64(ca.cert_pem.bytes())},
                          {"tokenFile": str(tmp_path / "token")})
        _, pod = await forward_once(path, unused_tcp_port)
        assert pod.startswith("web-")


async def test_exec_credential_plugin(ca: trustme.CA, tmp_path: Path, unused_tcp_port: int) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',\n"
        f"                  'status': {{'token': {TOKEN!r}}}}}))\n",
        encoding="utf-8",
    )
    async with tls_cluster(ca, token=TOKEN) as cluster:
        path = kubeconfig(tmp_path / "kc", cluster.url,
                          {"certificate-authority-data": b64(ca.cert_pem.bytes())},
                          {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                                    "args": [str(plugin)], "interactiveMode": "Never"}})
        _, pod = await forward_once(path, unused_tcp_port)
        assert pod.startswith("web-")


async def test_tls_server_name(ca: trustme.CA, tmp_path: Path, unused_tcp_port: int) -> None:
    async with tls_cluster(ca, name="kubernetes.internal", token=TOKEN) as cluster:
        cluster_fields = {"certificate-authority-data": b64(ca.cert_pem.bytes()), "tls-server-name": "kubernetes.internal"}
        path = kubeconfig(tmp_path / "kc", cluster.url, cluster_fields, {"token": TOKEN})
        _, pod = await forward_once(path, unused_tcp_port)
        assert pod.startswith("web-")


async def test_wrong_server_name_is_refused_not_forwarded(ca: trustme.CA, tmp_path: Path, unused_tcp_port: int) -> None:
    async with tls_cluster(ca, name="kubernetes.internal", token=TOKEN) as cluster:
        path = kubeconfig(tmp_path / "kc", cluster.url,
                          {"certificate-authority-data": b64(ca.cert_pem.bytes())}, {"token": TOKEN})
        async with running(path, [web_rule(unused_tcp_port)]) as events:
            waiting = await events.wait_for(EventKind.WAITING)
            assert "certificate" in waiting.message.lower() or "could not reach" in waiting.message
            assert not events.of(EventKind.FORWARDING)


async def test_insecure_skip_tls_verify(ca: trustme.CA, tmp_path: Path, unused_tcp_port: int) -> None:
    async with tls_cluster(ca, token=TOKEN) as cluster:
        path = kubeconfig(tmp_path / "kc", cluster.url, {"insecure-skip-tls-verify": True}, {"token": TOKEN})
        _, pod = await forward_once(path, unused_tcp_port)
        assert pod.startswith("web-")


async def test_refused_token_names_the_context(tmp_path: Path, unused_tcp_port: int) -> None:
    async with SimCluster("auth", scenario=SCENARIO, token=TOKEN) as cluster:
        path = kubeconfig(tmp_path / "kc", cluster.url, {}, {"token": "wrong"})
        async with running(path, [web_rule(unused_tcp_port)]) as events:
            failed = await events.wait_for(EventKind.FAILED)
            assert "'ctx'" in failed.message and "new credentials" in failed.message
            assert TOKEN not in failed.message and "wrong" not in failed.message  # never echo a token


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on loopback that counts the tunnels it opened."""

    def __init__(self) -> None:
        self.tunnels = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, authority, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
        assert method == b"CONNECT"
        host, port = authority.decode().rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self.tunnels += 1
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def stop(self) -> None:
        if self.server:
            self.server.close()


async def test_http_proxy_url(ca: trustme.CA, tmp_path: Path, unused_tcp_port: int) -> None:
    proxy = ConnectProxy()
    proxy_url = await proxy.start()
    try:
        async with tls_cluster(ca, token=TOKEN) as cluster:
            path = kubeconfig(tmp_path / "kc", cluster.url,
                              {"certificate-authority-data": b64(ca.cert_pem.bytes()), "proxy-url": proxy_url},
                              {"token": TOKEN})
            _, pod = await forward_once(path, unused_tcp_port)
            assert pod.startswith("web-")
            assert proxy.tunnels >= 2  # the list/watch calls and the port-forward stream all went through it
    finally:
        await proxy.stop()


def test_garbage_kubeconfig_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    path.write_text("{{{ not yaml", encoding="utf-8")
    with pytest.raises(KubeconfigError) as caught:
        Credentials([path], None).load()
    assert str(path) in caught.value.message


def test_unknown_context_lists_the_known_ones(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", {}, {"token": "x"})
    with pytest.raises(KubeconfigError) as caught:
        Credentials([path], "nope").load()
    assert "'nope'" in caught.value.message and "ctx" in caught.value.message


async def test_rotated_exec_token_is_fetched_again_after_a_refusal(
    ca: trustme.CA, tmp_path: Path, unused_tcp_port: int
) -> None:
    current = tmp_path / "current-token"
    current.write_text("first-token", encoding="utf-8")
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, pathlib\n"
        f"token = pathlib.Path({str(current)!r}).read_text()\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',\n"
        "                  'status': {'token': token}}))\n",
        encoding="utf-8",
    )
    async with tls_cluster(ca, token="first-token") as cluster:
        path = kubeconfig(tmp_path / "kc", cluster.url,
                          {"certificate-authority-data": b64(ca.cert_pem.bytes())},
                          {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                                    "args": [str(plugin)], "interactiveMode": "Never"}})
        async with running(path, [web_rule(unused_tcp_port)]) as events:
            await events.wait_for(EventKind.FORWARDING)
            assert (await http_get(unused_tcp_port))[0] == 200
            cluster.set_token("second-token")  # the cluster rotates; the plugin now hands out the new one
            current.write_text("second-token", encoding="utf-8")
            status, _, _ = await http_get(unused_tcp_port)
            assert status == 200
            assert not events.of(EventKind.FAILED)


async def test_a_stored_token_serves_a_kubeconfig_user_without_credentials(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    async with SimCluster("keyring", scenario=SCENARIO, token=TOKEN) as cluster:
        path = kubeconfig(tmp_path / "kc", cluster.url, {}, {})
        asked: list[str] = []

        def stored(context: str) -> str | None:
            asked.append(context)
            return TOKEN if context == "ctx" else None

        events = Events()
        bus = EventBus()
        bus.subscribe(events)
        credentials = Credentials([path], "ctx", stored)
        access = await asyncio.to_thread(credentials.load)
        run = ContextRun(access, credentials, [web_rule(unused_tcp_port)], bus)
        await run.start()
        try:
            await events.wait_for(EventKind.FORWARDING)
            assert (await http_get(unused_tcp_port))[0] == 200
            assert set(asked) == {"ctx"}
        finally:
            await run.stop()


async def test_a_slow_keyring_answers_every_request_that_starts_at_once(tmp_path: Path) -> None:
    # A real keyring takes a D-Bus round trip; the watches of a starting context all ask at once.
    async with SimCluster("slow-keyring", scenario=SCENARIO, token=TOKEN) as cluster:
        path = kubeconfig(tmp_path / "kc", cluster.url, {}, {})
        asked: list[str] = []

        def slow(context: str) -> str | None:
            asked.append(context)
            time.sleep(0.2)
            return TOKEN

        credentials = Credentials([path], "ctx", slow)
        await asyncio.to_thread(credentials.load)
        headers = await asyncio.gather(*(credentials.authorization() for _ in range(3)))
        assert headers == [f"Bearer {TOKEN}"] * 3
        assert asked == ["ctx"]  # still asked once
        credentials.close()
