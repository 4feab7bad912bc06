"""The API client against a real server on 127.0.0.1 that misbehaves on purpose (tests/hostile_server.py):
paging, caps, deadlines, busy answers, the 401 hint, and watches that lie, stall or never end."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import hostile_server as hs
from trayapp.errors import ApiBusy, ApiError, ApiUnreachable, AuthError, ResponseTooLarge

MiB = 1024 * 1024


@pytest.fixture
async def server() -> AsyncIterator[hs.HostileServer]:
    s = hs.HostileServer()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def fill(server: hs.HostileServer, count: int) -> None:
    for i in range(count):
        server.put(hs.pod(f"p{i}"))


# ---- lists ---------------------------------------------------------------------------------------


async def test_a_list_is_read_in_pages_and_merged(server: hs.HostileServer, tmp_path: Path) -> None:
    fill(server, 7)
    api = await hs.kube_api(server, tmp_path, page_size=3)
    listed = await api.list("pods", "default")
    assert [item["metadata"]["name"] for item in listed["items"]] == [f"p{i}" for i in range(7)]
    assert listed["metadata"]["resourceVersion"] == str(server.rv)
    assert [(r.query.get("limit"), r.query.get("continue")) for r in server.requests] == [
        ("3", None), ("3", "3"), ("3", "6")]


async def test_an_expired_continue_token_lists_again_whole(server: hs.HostileServer, tmp_path: Path) -> None:
    fill(server, 5)

    async def expiring(s: hs.HostileServer, request: hs.Request, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        if request.query.get("continue"):
            await hs.status(410, "The provided continue parameter is too old")(s, request, reader, writer)
        else:
            await hs.good_list(s, request, reader, writer)

    server.on_list = expiring
    api = await hs.kube_api(server, tmp_path, page_size=2)
    listed = await api.list("pods", "default")
    assert len(listed["items"]) == 5
    assert [(r.query.get("limit"), r.query.get("continue")) for r in server.requests] == [
        ("2", None), ("2", "2"), (None, None)]


async def test_a_continue_token_that_repeats_is_refused(server: hs.HostileServer, tmp_path: Path) -> None:
    async def loop(s: hs.HostileServer, request: hs.Request, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        await hs.respond_json(writer, 200, {"metadata": {"continue": "same"}, "items": [hs.pod("a")]})

    server.on_list = loop
    api = await hs.kube_api(server, tmp_path)
    with pytest.raises(ApiError, match="same continue token twice"):
        await api.list("pods", "default")


async def test_a_list_announcing_a_terabyte_is_refused_at_once(server: hs.HostileServer, tmp_path: Path) -> None:
    server.on_list = hs.huge_length()
    api = await hs.kube_api(server, tmp_path)
    with pytest.raises(ResponseTooLarge, match="larger than kubetray accepts"):
        await api.list("pods", "default")


async def test_a_list_streaming_past_its_cap_stops_with_bounded_memory(server: hs.HostileServer, tmp_path: Path) -> None:
    server.on_list = hs.huge_chunk()  # a 1 TiB chunk of x's, sent as fast as the client reads
    cap = 8 * MiB
    api = await hs.kube_api(server, tmp_path, max_list=cap)
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge):
            await api.list("pods", "default")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * cap, f"peak {peak / MiB:.1f} MiB for a cap of {cap / MiB:.0f} MiB"


async def test_a_list_sent_a_byte_at_a_time_ends_at_the_list_deadline(server: hs.HostileServer, tmp_path: Path) -> None:
    server.on_list = hs.trickle(0.05)
    api = await hs.kube_api(server, tmp_path, list_timeout=1.0, read_timeout=0.5)
    with pytest.raises(ApiUnreachable, match=f"The API server {server.url} did not send the whole response within 1 s"):
        await api.list("pods", "default")


async def test_a_list_nobody_answers_is_unreachable_naming_the_server(server: hs.HostileServer, tmp_path: Path) -> None:
    server.on_list = hs.silent
    api = await hs.kube_api(server, tmp_path, read_timeout=0.3)
    with pytest.raises(ApiUnreachable, match=f"The API server {server.url} did not answer within 0.3 s"):
        await api.list("pods", "default")


@pytest.mark.parametrize("body", [b"not json at all", b'"a string"', b'{"items": "not a list"}'])
async def test_a_list_that_is_not_a_list_is_an_api_error(server: hs.HostileServer, tmp_path: Path, body: bytes) -> None:
    async def send(s: hs.HostileServer, request: hs.Request, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        hs.head(writer, 200, [("Content-Length", str(len(body)))], chunked=False)
        writer.write(body)

    server.on_list = send
    api = await hs.kube_api(server, tmp_path)
    with pytest.raises(ApiError, match="list of pods in namespace 'default'"):
        await api.list("pods", "default")


# ---- error answers -------------------------------------------------------------------------------


async def test_429_with_retry_after_is_a_busy_server(server: hs.HostileServer, tmp_path: Path) -> None:
    server.on_list = hs.status(429, "Too many requests", [("Retry-After", "7")])
    api = await hs.kube_api(server, tmp_path)
    with pytest.raises(ApiBusy) as caught:
        await api.list("pods", "default")
    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)
    assert isinstance(caught.value, ApiUnreachable)
    assert caught.value.message == (
        f"The API server {server.url} is too busy to answer for pods in namespace 'default' "
        "(HTTP 429: Too many requests) and asked kubetray to come back in 7 s.")


async def test_503_with_an_http_date_retry_after(server: hs.HostileServer, tmp_path: Path) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.on_list = hs.status(503, "shutting down", [("Retry-After", when)])
    api = await hs.kube_api(server, tmp_path)
    with pytest.raises(ApiBusy) as caught:
        await api.list("pods", "default")
    assert caught.value.retry_after is not None and 20 < caught.value.retry_after <= 31


async def test_503_without_retry_after_is_busy_with_no_time(server: hs.HostileServer, tmp_path: Path) -> None:
    server.on_list = hs.status(503, "unavailable")
    api = await hs.kube_api(server, tmp_path)
    with pytest.raises(ApiBusy) as caught:
        await api.list("pods", "default")
    assert caught.value.retry_after is None


async def test_401_tells_the_user_how_to_fix_the_credentials(server: hs.HostileServer, tmp_path: Path) -> None:
    server.on_list = hs.status(401, "Unauthorized")
    api = await hs.kube_api(server, tmp_path)
    with pytest.raises(AuthError) as caught:
        await api.list("pods", "default")
    assert caught.value.message.endswith(
        "Refresh the credentials in your kubeconfig, or store a token with `kubetray token set hostile`.")
    assert len(server.requests) == 2  # one retry with fresh credentials


async def test_an_error_body_over_its_cap_is_not_read(server: hs.HostileServer, tmp_path: Path) -> None:
    async def giant(s: hs.HostileServer, request: hs.Request, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        hs.head(writer, 500)
        await hs.chunk(writer, b"{" + b" " * (2 * MiB))
        await hs.hang(reader)

    server.on_list = giant
    api = await hs.kube_api(server, tmp_path)
    with pytest.raises(ApiError, match="answered 500 for pods in namespace 'default': HTTP 500"):
        await api.list("pods", "default")


# ---- watches -------------------------------------------------------------------------------------


async def watch_all(api, rv: str = "1", on_open=None) -> list:
    return [event async for event in api.watch("pods", "default", rv, on_open=on_open)]


async def test_a_watch_silent_past_its_deadline_is_unreachable(server: hs.HostileServer, tmp_path: Path) -> None:
    server.on_watch = hs.silent_after_head
    api = await hs.kube_api(server, tmp_path, watch_silence=0.3)
    opened = []
    with pytest.raises(ApiUnreachable, match=f"The API server {server.url} sent nothing on a watch for 0.3 s"):
        await watch_all(api, on_open=lambda: opened.append(True))
    assert opened == [True]


async def test_bookmarks_keep_a_quiet_watch_alive(server: hs.HostileServer, tmp_path: Path) -> None:
    server.bookmark_interval = 0.1
    api = await hs.kube_api(server, tmp_path, watch_silence=1.0)
    seen = []
    async for event in api.watch("pods", "default", "1"):
        seen.append(event.type)
        if len(seen) == 30:  # 3 s of bookmarks: three times the silence deadline
            break
    assert set(seen) == {"BOOKMARK"}


async def test_a_watch_that_stops_its_bookmark_pace_is_dead_well_before_the_ceiling(
    server: hs.HostileServer, tmp_path: Path
) -> None:
    server.bookmark_interval = 0.1
    api = await hs.kube_api(server, tmp_path, watch_silence=60.0)
    api.pace.floor = 0.5  # the product's floor is 10 s; the pace is what is under test
    seen = 0
    loop = asyncio.get_running_loop()
    with pytest.raises(ApiUnreachable, match="sent nothing on a watch for 0.5 s"):
        async for _event in api.watch("pods", "default", "1"):
            seen += 1
            if seen == 5:
                server.bookmark_interval = 3600  # the path dies: no FIN, no reset, no bookmark
                silent_since = loop.time()
    assert loop.time() - silent_since < 5  # not the 60 s ceiling


async def test_a_watch_line_longer_than_the_cap_closes_the_watch(server: hs.HostileServer, tmp_path: Path) -> None:
    server.on_watch = hs.endless_line(64 * MiB)
    api = await hs.kube_api(server, tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge, match="longer than 16,777,216 bytes"):
            await watch_all(api)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 16 * MiB, f"peak {peak / MiB:.1f} MiB"


async def test_a_watch_line_that_is_not_json_closes_the_watch(server: hs.HostileServer, tmp_path: Path) -> None:
    server.on_watch = hs.lines(b'{"type": "ADDED", "object": {"metadata": {"name": "a"}}}', b"<html>oops</html>")
    api = await hs.kube_api(server, tmp_path)
    seen = []
    with pytest.raises(ApiError, match="not JSON"):
        async for event in api.watch("pods", "default", "1"):
            seen.append(event.object["metadata"]["name"])
    assert seen == ["a"]


async def test_malformed_watch_envelopes_are_skipped(server: hs.HostileServer, tmp_path: Path) -> None:
    server.on_watch = hs.lines(
        b'"just a string"', b"[1, 2]", b'{"type": "ADDED", "object": "a string"}', b'{"object": {}}',
        b'{"type": "ADDED", "object": {"metadata": {"name": "good"}}}', then_hang=False)
    api = await hs.kube_api(server, tmp_path)
    assert [e.object["metadata"]["name"] for e in await watch_all(api)] == ["good"]


async def test_a_watch_error_event_429_is_busy_with_its_retry_after(server: hs.HostileServer, tmp_path: Path) -> None:
    error = {"type": "ERROR", "object": {"kind": "Status", "code": 429, "message": "slow down",
                                         "details": {"retryAfterSeconds": 3}}}
    server.on_watch = hs.lines(json.dumps(error).encode())
    api = await hs.kube_api(server, tmp_path)
    with pytest.raises(ApiBusy) as caught:
        await watch_all(api)
    assert caught.value.retry_after == 3.0


async def test_a_watch_error_event_with_a_garbage_code_is_still_an_error(server: hs.HostileServer, tmp_path: Path) -> None:
    server.on_watch = hs.lines(b'{"type": "ERROR", "object": {"code": "teapot", "message": ["x"]}}')
    api = await hs.kube_api(server, tmp_path)
    with pytest.raises(ApiError, match="answered 500"):
        await watch_all(api)


async def test_a_watch_on_a_chunk_promising_a_terabyte_reads_what_comes(server: hs.HostileServer, tmp_path: Path) -> None:
    server.on_watch = hs.huge_chunk(b'{"type": "ADDED", "object": {"metadata": {"name": "a"}}}\n')
    api = await hs.kube_api(server, tmp_path, watch_silence=0.5)
    seen = []
    with pytest.raises(ApiUnreachable, match="sent nothing on a watch for 0.5 s"):
        async for event in api.watch("pods", "default", "1"):
            seen.append(event.object["metadata"]["name"])
    assert seen == ["a"]


# ---- next to healthy tunnels ---------------------------------------------------------------------


async def test_tunnels_keep_serving_and_following_the_cluster_while_a_hostile_server_streams(
        cluster, run_rules, unused_tcp_port: int, server: hs.HostileServer, tmp_path: Path) -> None:
    """One context's tunnel on the simulator; in the same engine loop, informers of another context
    whose server sends an endless line, a byte at a time, and garbage. The tunnel serves and
    follows a pod deletion throughout, and the hostile informers recover when their server does."""
    from trayapp.engine.kube.informer import Informer
    from trayapp.model import EventKind, ResourceType, Rule

    from .test_reconnect import serving_pod

    cluster.scale("deployments", "default", "web", 1)
    _, events = await run_rules([Rule(ResourceType.DEPLOYMENT, "web", 8080, local_port=unused_tcp_port)])
    first = await events.wait_for(EventKind.FORWARDING)

    plans = {"a": hs.endless_line(64 * MiB), "b": hs.trickle(0.01), "c": hs.lines(b"garbage")}

    async def by_namespace(s: hs.HostileServer, request: hs.Request, reader, writer) -> None:
        await plans[request.path.split("/")[4]](s, request, reader, writer)

    server.on_watch = by_namespace
    api = await hs.kube_api(server, tmp_path, max_line=4 * MiB, watch_silence=2.0)
    recorders = {ns: hs.Recorder() for ns in plans}
    hostile = [Informer(api, "pods", ns, recorders[ns].changed, recorders[ns].failed) for ns in plans]
    for informer in hostile:
        informer.start()
    try:
        await server.wait_requests(3, watch=True)
        for _ in range(20):
            assert await serving_pod(unused_tcp_port) == first.pod
        replacement = cluster.delete_pod("default", first.pod)
        await events.wait_for(EventKind.RECONNECTED, lambda e: e.pod == replacement)
        assert await serving_pod(unused_tcp_port) == replacement
        for recorder in recorders.values():
            await recorder.until(lambda r=recorder: r.errors)
        assert isinstance(recorders["a"].errors[0], ResponseTooLarge)
        assert isinstance(recorders["c"].errors[0], ApiError)
        # the byte-a-second watch never completes a line: taken for dead
        assert isinstance(recorders["b"].errors[0], ApiUnreachable)

        server.bookmark_interval = 0.2
        server.on_watch = hs.good_watch  # the server behaves again
        for informer, recorder in zip(hostile, recorders.values(), strict=True):
            await recorder.until(lambda i=informer: i.last_error is None)
        server.put(hs.pod("fresh"))
        for informer, recorder in zip(hostile, recorders.values(), strict=True):
            await recorder.until(lambda i=informer: i.objects)
    finally:
        for informer in hostile:
            await informer.stop()
    assert await serving_pod(unused_tcp_port) == replacement
