"""The informer and the cluster cache against a real server that misbehaves (tests/hostile_server.py):
malformed objects are skipped, dead watches are reported and resumed, backoff starts over after a
healthy watch, Retry-After is honoured within a cap, and one failing subscriber does not silence
the others."""

from __future__ import annotations

import json
import random
import tracemalloc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import hostile_server as hs
from trayapp.engine.backoff import Backoff
from trayapp.engine.kube.cache import ClusterCache
from trayapp.engine.kube.informer import Informer
from trayapp.engine.kube.objshape import shape_problem
from trayapp.errors import ApiBusy, ApiUnreachable, KubetrayError, ResponseTooLarge

MiB = 1024 * 1024


@dataclass(frozen=True)
class RecordingBackoff(Backoff):
    """Fast delays, and the attempt number of each one asked for."""

    attempts: list[int] = field(default_factory=list)

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        self.attempts.append(attempt)
        return super().delay(attempt, rng)


def fast() -> RecordingBackoff:
    return RecordingBackoff(initial=0.01, cap=0.05, jitter=0.0)


@pytest.fixture
async def server() -> AsyncIterator[hs.HostileServer]:
    s = hs.HostileServer()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def informers() -> AsyncIterator[list[Informer]]:
    started: list[Informer] = []
    yield started
    for informer in started:
        await informer.stop()


async def start(server: hs.HostileServer, tmp_path: Path, informers: list[Informer], *,
                backoff: Backoff | None = None, api_options: dict | None = None,
                **options: float) -> tuple[Informer, hs.Recorder]:
    api = await hs.kube_api(server, tmp_path, **(api_options or {}))
    recorder = hs.Recorder()
    informer = Informer(api, "pods", "default", recorder.changed, recorder.failed,
                        backoff or fast(), **options)
    informers.append(informer)
    informer.start()
    return informer, recorder


# ---- malformed objects ---------------------------------------------------------------------------

MALFORMED = [
    "a string",
    ["a", "list"],
    {"spec": {}},
    {"metadata": "a string"},
    {"metadata": {"name": 7}},
    {"metadata": {"name": ""}},
    {"metadata": {"name": "labels", "labels": ["a"]}},
    {"metadata": {"name": "label-values", "labels": {"app": 1}}},
    {"metadata": {"name": "owners", "ownerReferences": "me"}},
    {"metadata": {"name": "spec"}, "spec": "a string"},
    {"metadata": {"name": "status"}, "status": ["Running"]},
    {"metadata": {"name": "containers"}, "spec": {"containers": "c"}},
    {"metadata": {"name": "container"}, "spec": {"containers": ["c"]}},
    {"metadata": {"name": "ports"}, "spec": {"containers": [{"ports": {"containerPort": 80}}]}},
    {"metadata": {"name": "port"}, "spec": {"containers": [{"ports": [{"containerPort": "80"}]}]}},
    {"metadata": {"name": "conditions"}, "status": {"conditions": "Ready"}},
    {"metadata": {"name": "condition"}, "status": {"conditions": ["Ready"]}},
    {"metadata": {"name": "restarts"}, "status": {"containerStatuses": [{"restartCount": "3"}]}},
    {"metadata": {"name": "selector"}, "spec": {"selector": {"matchLabels": ["a"]}}},
]


@pytest.mark.parametrize("obj", MALFORMED, ids=lambda o: json.dumps(o)[:40])
def test_shape_problem_names_what_is_wrong(obj: object) -> None:
    assert shape_problem("pods", obj)


def test_a_real_pod_and_service_have_no_shape_problem() -> None:
    assert shape_problem("pods", hs.pod("a")) is None
    service = {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}], "clusterIP": "None"}}
    assert shape_problem("services", service) is None
    # A service's selector is a plain map: "matchLabels" there is just a label key.
    assert shape_problem("services", {"metadata": {"name": "odd"}, "spec": {"selector": {"matchLabels": "x"}}}) is None
    assert shape_problem("deployments", {"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": "x"}}})


async def test_malformed_objects_are_skipped_in_lists_and_watches_and_the_others_kept(
        server: hs.HostileServer, tmp_path: Path, informers: list[Informer]) -> None:
    server.objects = {f"bad{i}": obj for i, obj in enumerate(MALFORMED)}  # type: ignore[misc]
    server.objects["good"] = hs.pod("good")
    informer, recorder = await start(server, tmp_path, informers)
    await recorder.until(lambda: informer.synced.is_set())
    assert list(informer.objects) == ["good"]
    assert informer.malformed == len(MALFORMED)
    await server.wait_requests(1, watch=True)
    for obj in MALFORMED:
        server.emit("MODIFIED", obj)
    server.put(hs.pod("later"))
    await recorder.until(lambda: "later" in informer.objects)
    assert sorted(informer.objects) == ["good", "later"]
    # The two that are not objects at all never reach the informer: the watch drops their envelope.
    assert informer.malformed == 2 * len(MALFORMED) - 2
    assert recorder.errors == []


async def test_a_deleted_event_needs_only_the_name(
        server: hs.HostileServer, tmp_path: Path, informers: list[Informer]) -> None:
    server.put(hs.pod("a"))
    informer, recorder = await start(server, tmp_path, informers)
    await server.wait_requests(1, watch=True)
    server.emit("DELETED", {"metadata": {"name": "a"}, "status": "gone"})
    await recorder.until(lambda: not informer.objects)


# ---- dead and hostile watches --------------------------------------------------------------------


async def test_a_silent_watch_is_reported_and_resumed_from_the_last_version(
        server: hs.HostileServer, tmp_path: Path, informers: list[Informer]) -> None:
    server.put(hs.pod("a"))
    server.bookmark_interval = 0.1  # the healthy watches are never silent for long
    informer, recorder = await start(server, tmp_path, informers, api_options={"watch_silence": 0.5})
    first = (await server.wait_requests(1, watch=True))[0]
    server.put(hs.pod("b"))
    await recorder.until(lambda: "b" in informer.objects)
    last_version = str(server.rv)
    server.on_watch = hs.silent_after_head
    for queue in server.watchers:  # the open watch goes quiet too: end it, the next one hangs
        queue.put_nowait(b"")
    await recorder.until(lambda: recorder.errors)
    error = recorder.errors[0]
    assert isinstance(error, ApiUnreachable) and server.url in error.message
    assert informer.last_error is error
    server.on_watch = hs.good_watch
    watches = await server.wait_requests(3, watch=True)
    assert first.query["resourceVersion"] == "2"
    assert {r.query["resourceVersion"] for r in watches[1:]} == {last_version}
    assert len(server.requests) - len(watches) == 1  # never listed again
    changes = recorder.changes
    await recorder.until(lambda: informer.last_error is None)
    assert recorder.changes > changes  # told subscribers the server is back, though nothing changed


async def test_an_endless_line_is_reported_then_the_informer_recovers(
        server: hs.HostileServer, tmp_path: Path, informers: list[Informer]) -> None:
    server.put(hs.pod("a"))
    server.on_watch = hs.endless_line(64 * MiB)
    tracemalloc.start()
    try:
        informer, recorder = await start(server, tmp_path, informers, api_options={"max_line": 4 * MiB})
        await recorder.until(lambda: recorder.errors)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(recorder.errors[0], ResponseTooLarge)
    assert peak < 2 * 4 * MiB + MiB, f"peak {peak / MiB:.1f} MiB"
    server.on_watch = hs.good_watch
    await recorder.until(lambda: informer.last_error is None)
    server.put(hs.pod("b"))
    await recorder.until(lambda: "b" in informer.objects)


async def test_garbage_json_is_reported_then_the_informer_recovers(
        server: hs.HostileServer, tmp_path: Path, informers: list[Informer]) -> None:
    server.on_watch = hs.lines(b"\x00\xff garbage {")
    informer, recorder = await start(server, tmp_path, informers)
    await recorder.until(lambda: recorder.errors)
    server.on_watch = hs.good_watch
    await recorder.until(lambda: informer.last_error is None)
    server.put(hs.pod("b"))
    await recorder.until(lambda: "b" in informer.objects)


# ---- backoff and Retry-After ---------------------------------------------------------------------


async def test_backoff_starts_over_after_a_watch_that_delivered_events(
        server: hs.HostileServer, tmp_path: Path, informers: list[Informer]) -> None:
    event = json.dumps({"type": "ADDED", "object": hs.pod("a")}).encode() + b"\n"
    server.on_watch = hs.reset_after(event)  # every watch delivers one event, then is reset
    backoff = fast()
    _, recorder = await start(server, tmp_path, informers, backoff=backoff)
    await recorder.until(lambda: len(recorder.errors) >= 6)
    assert set(backoff.attempts) == {0}, backoff.attempts


async def test_backoff_grows_while_the_server_keeps_failing(
        server: hs.HostileServer, tmp_path: Path, informers: list[Informer]) -> None:
    server.on_watch = hs.status(500, "broken")
    backoff = fast()
    _, recorder = await start(server, tmp_path, informers, backoff=backoff)
    await recorder.until(lambda: len(recorder.errors) >= 4)
    assert backoff.attempts[:4] == [0, 1, 2, 3]


async def test_backoff_starts_over_after_a_watch_that_stayed_up(
        server: hs.HostileServer, tmp_path: Path, informers: list[Informer]) -> None:
    server.on_watch = hs.silent_after_head  # up, quiet, then taken for dead after 0.3 s
    backoff = fast()
    _, recorder = await start(server, tmp_path, informers, backoff=backoff, stable_after=0.1,
                              api_options={"watch_silence": 0.3})
    await recorder.until(lambda: len(recorder.errors) >= 3)
    assert set(backoff.attempts) == {0}, backoff.attempts


async def test_retry_after_is_waited_for(server: hs.HostileServer, tmp_path: Path, informers: list[Informer]) -> None:
    server.on_watch = hs.status(429, "slow down", [("Retry-After", "1")])
    _, recorder = await start(server, tmp_path, informers)
    watches = await server.wait_requests(2, watch=True)
    assert isinstance(recorder.errors[0], ApiBusy)
    assert watches[1].at - watches[0].at >= 0.9  # the backoff alone would be 0.01 s


async def test_retry_after_is_capped(server: hs.HostileServer, tmp_path: Path, informers: list[Informer]) -> None:
    server.on_watch = hs.status(503, "away", [("Retry-After", "3600")])
    _, recorder = await start(server, tmp_path, informers, retry_after_cap=0.2)
    await server.wait_requests(3, watch=True)
    assert all(isinstance(e, ApiBusy) and e.retry_after == 3600 for e in recorder.errors)


async def test_a_busy_watch_resumes_without_listing_again(
        server: hs.HostileServer, tmp_path: Path, informers: list[Informer]) -> None:
    server.on_watch = hs.status(503, "away")
    await start(server, tmp_path, informers)
    await server.wait_requests(3, watch=True)
    assert len([r for r in server.requests if not r.is_watch]) == 1


# ---- the cache -----------------------------------------------------------------------------------


class Subscriber:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.recorder = hs.Recorder()

    def cluster_changed(self) -> None:
        self.recorder.changed()
        if self.fail:
            raise RuntimeError("a subscriber bug")

    def cluster_failed(self, error: KubetrayError) -> None:
        self.recorder.failed(error)
        if self.fail:
            raise RuntimeError("a subscriber bug")


async def test_one_failing_subscriber_does_not_silence_the_others(
        server: hs.HostileServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    api = await hs.kube_api(server, tmp_path)
    cache = ClusterCache(api)
    subscribers = [Subscriber(fail=True), Subscriber(fail=False), Subscriber(fail=True), Subscriber(fail=False)]
    try:
        for subscriber in subscribers:
            cache.subscribe(subscriber, ["pods"], "default")
        await server.wait_requests(1, watch=True)
        server.put(hs.pod("a"))
        for subscriber in subscribers:
            await subscriber.recorder.until(lambda s=subscriber: s.recorder.changes >= 2)
        server.on_watch = hs.status(500, "broken")
        for queue in server.watchers:
            queue.put_nowait(b"")  # an empty chunk ends the open watch
        for subscriber in subscribers:
            await subscriber.recorder.until(lambda s=subscriber: s.recorder.errors)
    finally:
        await cache.stop()
    assert "a subscriber failed to handle a cluster change" in caplog.text
