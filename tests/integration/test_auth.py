"""Every way a kubeconfig can say how to connect, through the engine against the simulator:
CA data and files, client certificates, bearer tokens, token files, exec plugins,
insecure-skip-tls-verify, tls-server-name and an http proxy-url; and what goes wrong with them:
broken or rotated certificates, exec plugins that hang, a keyring that does not answer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from trayapp.engine.aio import deadline
from trayapp.engine.events import EventBus
from trayapp.engine.kube.auth import Credentials
from trayapp.engine.kube.execplugin import ExecPluginFailed
from trayapp.engine.runtime import ContextRun
from trayapp.engine.supervisor import Supervisor
from trayapp.errors import KubeconfigError
from trayapp.model import EventKind, ResourceType, Rule
from trayapp.platform.secrets import SecretStore
from trayapp.sim import SimCluster, TlsConfig
from trayapp.sim.runner import run_in_thread

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
        # The pod it was forwarding to, or one it moved to since (a replica turning ready late).
        served_by = {forwarding.pod} | {e.pod for e in events.of(EventKind.RECONNECTED)}
        return events, headers["x-pod"] if headers["x-pod"] in served_by else ""


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


# --- exec credential plugins: one run at a time, a deadline, and never in the way of stopping ---

def exec_user(plugin: Path, *args: str) -> dict[str, Any]:
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                     "args": [str(plugin), *args], "interactiveMode": "Never"}}


def hanging_plugin(tmp_path: Path) -> tuple[Path, Path]:
    """A plugin that writes its process id and then waits forever, like one stuck on a login."""
    plugin, pid_file = tmp_path / "hang.py", tmp_path / "hang.pid"
    plugin.write_text(
        "import os, pathlib, time\n"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
        "while True:\n"
        "    time.sleep(3600)\n",
        encoding="utf-8",
    )
    return plugin, pid_file


def counting_plugin(tmp_path: Path, token: str = TOKEN) -> tuple[Path, Path]:
    """A plugin that notes each run in a file and answers a little later, as a real one does."""
    plugin, runs = tmp_path / "count.py", tmp_path / "runs"
    plugin.write_text(
        "import json, pathlib, time\n"
        f"with pathlib.Path({str(runs)!r}).open('a') as f:\n"
        "    f.write('run\\n')\n"
        "time.sleep(0.3)\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',\n"
        f"                  'status': {{'token': {token!r}}}}}))\n",
        encoding="utf-8",
    )
    return plugin, runs


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


async def wait_for_file(path: Path, timeout: float = 20.0) -> str:
    async with deadline(timeout):
        while not path.exists() or not path.read_text(encoding="utf-8"):
            await asyncio.sleep(0.05)
    return path.read_text(encoding="utf-8")


async def test_a_hanging_plugin_times_out_with_a_message_that_says_so(tmp_path: Path) -> None:
    async with SimCluster("exec-hang", scenario=SCENARIO, token=TOKEN) as cluster:
        plugin, pid_file = hanging_plugin(tmp_path)
        path = kubeconfig(tmp_path / "kc", cluster.url, {}, exec_user(plugin))
        credentials = Credentials([path], None, exec_timeout=1.0)
        await asyncio.to_thread(credentials.load)  # reading the kubeconfig runs no plugin
        assert not pid_file.exists()
        try:
            with pytest.raises(ExecPluginFailed) as caught:
                await credentials.authorization()
            message = caught.value.message
            assert "did not answer within 1 s" in message and "'ctx'" in message
            assert "kubetray stopped it" in message and "Traceback" not in message
            assert not alive(int(pid_file.read_text(encoding="utf-8")))
        finally:
            credentials.close()


async def test_concurrent_requests_run_the_plugin_once(tmp_path: Path) -> None:
    async with SimCluster("exec-once", scenario=SCENARIO, token=TOKEN) as cluster:
        plugin, runs = counting_plugin(tmp_path)
        path = kubeconfig(tmp_path / "kc", cluster.url, {}, exec_user(plugin))
        credentials = Credentials([path], None)
        await asyncio.to_thread(credentials.load)
        try:
            headers = await asyncio.gather(*(credentials.authorization() for _ in range(5)))
            assert headers == [f"Bearer {TOKEN}"] * 5
            assert runs.read_text(encoding="utf-8").splitlines() == ["run"]
            assert await credentials.authorization() == f"Bearer {TOKEN}"  # no expiry: reused
            assert runs.read_text(encoding="utf-8").splitlines() == ["run"]
        finally:
            credentials.close()


async def test_stopping_a_run_while_its_plugin_hangs_returns_at_once_and_ends_the_plugin(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    async with SimCluster("exec-stop", scenario=SCENARIO, token=TOKEN) as cluster:
        plugin, pid_file = hanging_plugin(tmp_path)
        path = kubeconfig(tmp_path / "kc", cluster.url, {}, exec_user(plugin))
        credentials = Credentials([path], None)  # the real 30 s deadline: stopping must not wait for it
        access = await asyncio.to_thread(credentials.load)
        run = ContextRun(access, credentials, [web_rule(unused_tcp_port)], EventBus())
        await run.start()
        pid = int(await wait_for_file(pid_file))
        assert alive(pid)
        async with deadline(10):  # far below the plugin's 30 s
            await run.stop()
        credentials.close()
        assert not alive(pid)


def test_ctrl_c_stops_headless_kubetray_while_its_plugin_hangs(tmp_path: Path, unused_tcp_port: int) -> None:
    with run_in_thread(SimCluster("exec-ctrl-c", scenario=SCENARIO, token=TOKEN)) as sim:
        plugin, pid_file = hanging_plugin(tmp_path)
        path = kubeconfig(tmp_path / "kc", sim.cluster.url, {}, exec_user(plugin))
        rules = tmp_path / "rules.yaml"
        rules.write_text("portForward:\n"
                         f"  - {{resourceType: service, resourceName: web, port: 80, localPort: {unused_tcp_port}}}\n",
                         encoding="utf-8")
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700)
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "XDG_STATE_HOME": str(tmp_path / "state")}
        app = subprocess.Popen([sys.executable, "-m", "trayapp", "--headless", "--kubeconfig", str(path),
                                "--config", str(rules)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
        try:
            deadline_at = time.monotonic() + 30
            while not (pid_file.exists() and pid_file.read_text(encoding="utf-8")):
                assert app.poll() is None and time.monotonic() < deadline_at, "the plugin never started"
                time.sleep(0.05)
            pid = int(pid_file.read_text(encoding="utf-8"))
            app.send_signal(signal.SIGINT)
            assert app.wait(timeout=15) == 0  # before the plugin's 30 s deadline
            assert "Traceback" not in (app.stderr.read() if app.stderr else "")
            assert not alive(pid)
        finally:
            if app.poll() is None:
                app.kill()
                app.wait()


# --- TLS material: broken certificates are kubeconfig problems, rotated ones are used ------------

def test_a_malformed_ca_names_the_kubeconfig_and_the_context(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "kc", "https://127.0.0.1:1",
                      {"certificate-authority-data": b64(b"-----BEGIN CERTIFICATE-----\nnot a cert\n"
                                                         b"-----END CERTIFICATE-----\n")}, {"token": TOKEN})
    with pytest.raises(KubeconfigError) as caught:
        Credentials([path], None).load()
    message = caught.value.message
    assert str(path) in message and "'ctx'" in message and "certificate authority" in message
    assert "SSL" not in message and "PEM lib" not in message  # no library text


def test_ca_data_that_is_not_base64_is_a_kubeconfig_problem(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", {"certificate-authority-data": "!!not base64!!"},
                      {"token": TOKEN})
    with pytest.raises(KubeconfigError) as caught:
        Credentials([path], None).load()
    assert "not valid base64" in caught.value.message and str(path) in caught.value.message


def test_a_malformed_client_certificate_file_names_the_file(ca: trustme.CA, tmp_path: Path) -> None:
    (tmp_path / "client.crt").write_text("garbage\n", encoding="utf-8")
    ca.issue_cert("kubetray-user").private_key_pem.write_to_path(str(tmp_path / "client.key"))
    path = kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", {"certificate-authority-data": b64(ca.cert_pem.bytes())},
                      {"client-certificate": "client.crt", "client-key": "client.key"})
    with pytest.raises(KubeconfigError) as caught:
        Credentials([path], None).load()
    message = caught.value.message
    assert str(tmp_path / "client.crt") in message and str(path) in message and "'ctx'" in message
    assert "client certificate" in message


def test_a_key_of_another_certificate_is_named_as_such(ca: trustme.CA, tmp_path: Path) -> None:
    mine, other = ca.issue_cert("kubetray-user"), ca.issue_cert("someone-else")
    path = kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", {"certificate-authority-data": b64(ca.cert_pem.bytes())},
                      {"client-certificate-data": b64(mine.cert_chain_pems[0].bytes()),
                       "client-key-data": b64(other.private_key_pem.bytes())})
    with pytest.raises(KubeconfigError) as caught:
        Credentials([path], None).load()
    assert "does not belong to the client certificate" in caught.value.message


async def test_a_malformed_ca_is_reported_once_by_the_supervisor_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", {"certificate-authority-data": b64(b"garbage")},
                      {"token": TOKEN})
    events = Events()
    bus = EventBus()
    bus.subscribe(events)
    supervisor = Supervisor([path], bus, lambda effective: [web_rule(1)])
    stop = asyncio.Event()
    task = asyncio.ensure_future(supervisor.serve(stop))
    try:
        failed = await events.wait_for(EventKind.FAILED)
        await supervisor.refresh(force=True)  # reading it again is the same problem: no second event
    finally:
        stop.set()
        async with deadline(15):
            await task
    assert str(path) in failed.message and "'ctx'" in failed.message and "certificate authority" in failed.message
    assert len(events.of(EventKind.FAILED)) == 1
    assert not [r for r in caplog.records if r.exc_info]


def write_atomically(path: Path, data: bytes) -> None:
    """As cert-manager, kubelet or a login helper replace a certificate: a new file moved in place."""
    temp = path.with_name(path.name + ".new")
    temp.write_bytes(data)
    os.replace(temp, path)


def rotating_cluster_contexts(name: str) -> tuple[trustme.CA, trustme.CA, ssl.SSLContext, ssl.SSLContext]:
    """Two CAs and a server context for each that admits only clients with a certificate from it."""
    old_ca, new_ca = trustme.CA(), trustme.CA()

    def server_context(ca: trustme.CA) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(name).configure_cert(context)
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    return old_ca, new_ca, server_context(old_ca), server_context(new_ca)


async def test_rotated_ca_and_client_certificate_files_are_used_from_the_next_connection(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    name = "kubernetes.internal"  # a name, so the client sends SNI and the server can switch per handshake
    old_ca, new_ca, first, second = rotating_cluster_contexts(name)

    def client_files(ca: trustme.CA) -> None:
        client = ca.issue_cert("kubetray-user")
        write_atomically(tmp_path / "ca.crt", ca.cert_pem.bytes())
        write_atomically(tmp_path / "client.crt", client.cert_chain_pems[0].bytes())
        write_atomically(tmp_path / "client.key", client.private_key_pem.bytes())

    client_files(old_ca)
    cluster = SimCluster("rotate", scenario=SCENARIO, tls=TlsConfig(first, old_ca.cert_pem.bytes()))
    await cluster.start()
    try:
        path = kubeconfig(tmp_path / "kc", cluster.url, {"certificate-authority": "ca.crt", "tls-server-name": name},
                          {"client-certificate": "client.crt", "client-key": "client.key"})
        async with running(path, [web_rule(unused_tcp_port)]) as events:
            await events.wait_for(EventKind.FORWARDING)
            assert (await http_get(unused_tcp_port))[0] == 200
            # The cluster moves to a new CA: every new handshake now gets the new server certificate
            # and admits only clients with a certificate from the new CA. Open connections stay.
            client_files(new_ca)

            def switch(connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
                connection.context = second

            first.sni_callback = switch
            status, headers, _ = await http_get(unused_tcp_port)  # a new port-forward connection
            assert status == 200 and headers["x-pod"].startswith("web-")
            assert not events.of(EventKind.STOPPED) and not events.of(EventKind.FAILED)
            assert len(events.of(EventKind.FORWARDING)) == 1  # the tunnel was not restarted
    finally:
        await cluster.stop()


# --- a keyring that does not answer -------------------------------------------------------------

async def test_a_silent_keyring_is_no_token_and_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import keyring
    import keyring.backend

    release = threading.Event()

    class Silent(keyring.backend.KeyringBackend):
        priority = 1  # type: ignore[assignment]

        def get_password(self, service: str, username: str) -> str | None:
            release.wait(60)
            return None

        def set_password(self, service: str, username: str, password: str) -> None:
            pass

        def delete_password(self, service: str, username: str) -> None:
            pass

    previous = keyring.get_keyring()
    keyring.set_keyring(Silent())
    try:
        store = SecretStore(tmp_path / "state")
        store.set_token("ctx", TOKEN)
        path = kubeconfig(tmp_path / "kc", "http://127.0.0.1:1", {}, {})
        credentials = Credentials([path], "ctx", store.get_token)
        await asyncio.to_thread(credentials.load)
        assert await credentials.authorization() is None  # within the store's second, not forever
        credentials.invalidate()  # a 401: the kubeconfig is read and the keyring asked again
        assert await credentials.authorization() is None
        told = [r for r in caplog.records if "did not answer within 1 s" in r.getMessage()]
        assert len(told) == 1 and told[0].levelname == "WARNING"
        assert TOKEN not in caplog.text
        credentials.close()
    finally:
        release.set()
        keyring.set_keyring(previous)


async def test_a_kubeconfig_rewritten_with_new_inline_certificates_is_used_from_the_next_connection(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    name = "kubernetes.internal"
    old_ca, new_ca, first, second = rotating_cluster_contexts(name)

    def write(ca: trustme.CA, server: str) -> Path:
        client = ca.issue_cert("kubetray-user")
        return kubeconfig(tmp_path / "kc", server,
                          {"certificate-authority-data": b64(ca.cert_pem.bytes()), "tls-server-name": name},
                          {"client-certificate-data": b64(client.cert_chain_pems[0].bytes()),
                           "client-key-data": b64(client.private_key_pem.bytes())})

    cluster = SimCluster("rotate-inline", scenario=SCENARIO, tls=TlsConfig(first, old_ca.cert_pem.bytes()))
    await cluster.start()
    try:
        path = write(old_ca, cluster.url)
        async with running(path, [web_rule(unused_tcp_port)]) as events:
            await events.wait_for(EventKind.FORWARDING)
            assert (await http_get(unused_tcp_port))[0] == 200
            temp = tmp_path / "kc.new"
            write(new_ca, cluster.url).rename(temp)
            os.replace(temp, path)  # as `kubectl config set-credentials` or a login helper rewrites it

            def switch(connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
                connection.context = second

            first.sni_callback = switch
            status, _, _ = await http_get(unused_tcp_port)
            assert status == 200
            assert len(events.of(EventKind.FORWARDING)) == 1 and not events.of(EventKind.FAILED)
    finally:
        await cluster.stop()


async def test_a_client_certificate_from_an_exec_plugin_is_used(ca: trustme.CA, tmp_path: Path, unused_tcp_port: int) -> None:
    client = ca.issue_cert("kubetray-user")
    plugin = tmp_path / "cert-plugin.py"
    plugin.write_text(
        "import json\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',\n"
        f"                  'status': {{'clientCertificateData': {client.cert_chain_pems[0].bytes().decode()!r},\n"
        f"                             'clientKeyData': {client.private_key_pem.bytes().decode()!r}}}}}))\n",
        encoding="utf-8",
    )
    async with tls_cluster(ca, client_certs=True) as cluster:  # no client certificate, no handshake
        path = kubeconfig(tmp_path / "kc", cluster.url, {"certificate-authority-data": b64(ca.cert_pem.bytes())},
                          exec_user(plugin))
        _, pod = await forward_once(path, unused_tcp_port)
        assert pod.startswith("web-")


async def test_a_missing_plugin_says_so_with_the_kubeconfigs_install_hint(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "kc", "http://127.0.0.1:1", {},
                      {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "kubetray-no-such-plugin",
                                "installHint": "Install it with: apt install no-such-plugin",
                                "interactiveMode": "Never"}})
    credentials = Credentials([path], None)
    await asyncio.to_thread(credentials.load)
    try:
        with pytest.raises(ExecPluginFailed) as caught:
            await credentials.authorization()
        message = caught.value.message
        assert "kubetray-no-such-plugin" in message and "was not found" in message
        assert "apt install no-such-plugin" in message and "'ctx'" in message
    finally:
        credentials.close()


async def test_a_failing_plugin_is_a_sentence_and_its_error_output_stays_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trayapp.engine.kube.execplugin")
    plugin = tmp_path / "fail.py"
    plugin.write_text("import sys\nsys.stderr.write('error: you must log in first\\n')\nsys.exit(3)\n", encoding="utf-8")
    path = kubeconfig(tmp_path / "kc", "http://127.0.0.1:1", {}, exec_user(plugin))
    credentials = Credentials([path], None)
    await asyncio.to_thread(credentials.load)
    try:
        with pytest.raises(ExecPluginFailed) as caught:
            await credentials.authorization()
        assert "failed (exit status 3)" in caught.value.message
        assert "must log in" not in caught.value.message and "must log in" in caplog.text
    finally:
        credentials.close()
