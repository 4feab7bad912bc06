"""FileWatcher against real files, real directories and the real kubectl; no mocks, no timing asserts.

Every test runs on each backend this platform has: inotify on the event loop (Linux) and watchfiles
(macOS and Windows; on Linux too, so that backend stays tested where CI runs).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from trayapp.engine import filewatch
from trayapp.engine.filewatch import FileWatcher
from trayapp.engine.kube.kubeconfig import read_effective_context

TIMEOUT = 5.0  # generous: only a bound, never a measurement

KUBECTL = shutil.which("kubectl")

CONFIG = """
    apiVersion: v1
    kind: Config
    current-context: one
    clusters:
    - {name: k, cluster: {server: "https://k.example"}}
    users:
    - {name: u, user: {token: t}}
    contexts:
    - {name: one, context: {cluster: k, user: u}}
    - {name: two, context: {cluster: k, user: u, namespace: other}}
"""


async def until_reported(batches: AsyncIterator[set[Path]], wanted: Path) -> set[Path]:
    """Collect batches until `wanted` is in one; fails after TIMEOUT."""

    async def collect() -> set[Path]:
        seen: set[Path] = set()
        async for batch in batches:
            seen |= batch
            if wanted in batch:
                return seen
        raise AssertionError("the watcher stopped")

    return await asyncio.wait_for(collect(), TIMEOUT)


BACKENDS = ["inotify", "watchfiles"] if sys.platform == "linux" else ["watchfiles"]


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(filewatch, "_BACKEND", request.param)
    return str(request.param)


@pytest.fixture
def inotify_only(backend: str) -> None:
    if backend != "inotify":
        pytest.skip("about the inotify backend")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "kube" / "config"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(CONFIG))
    return path


async def test_in_place_write(config: Path) -> None:
    async with FileWatcher([config]) as watcher:
        batches = watcher.changes()
        with config.open("a") as handle:
            handle.write("# touched\n")
        assert await until_reported(batches, config) == {config}


async def test_editor_style_replace(config: Path) -> None:
    async with FileWatcher([config]) as watcher:
        batches = watcher.changes()
        temp = config.with_name(".config.swp")
        temp.write_text(config.read_text().replace("current-context: one", "current-context: two"))
        os.replace(temp, config)
        seen = await until_reported(batches, config)
        assert seen == {config}  # the temp file is filtered out
        assert read_effective_context([config]).name == "two"


async def test_delete_then_create(config: Path) -> None:
    text = config.read_text()
    async with FileWatcher([config]) as watcher:
        batches = watcher.changes()
        config.unlink()
        await until_reported(batches, config)
        config.write_text(text)
        await until_reported(batches, config)
        assert read_effective_context([config]).name == "one"


async def test_second_of_two_files_in_different_directories(tmp_path: Path, config: Path) -> None:
    other = tmp_path / "elsewhere" / "second.yaml"
    other.parent.mkdir()
    other.write_text("{}\n")
    async with FileWatcher([config, other]) as watcher:
        batches = watcher.changes()
        other.write_text("current-context: two\n")
        assert await until_reported(batches, other) == {other}


async def test_file_in_a_directory_that_did_not_exist_yet(tmp_path: Path) -> None:
    target = tmp_path / "home" / ".kube" / "config"
    (tmp_path / "home").mkdir()
    async with FileWatcher([target]) as watcher:
        batches = watcher.changes()
        target.parent.mkdir()
        target.write_text(textwrap.dedent(CONFIG))
        await until_reported(batches, target)
        # Now watched in its own directory: later writes are seen as well.
        target.write_text(
            textwrap.dedent(CONFIG).replace("current-context: one", "current-context: two")
        )
        await until_reported(batches, target)
        assert read_effective_context([target]).name == "two"


async def test_a_symlinked_file_is_followed_to_its_target(tmp_path: Path, config: Path) -> None:
    link = tmp_path / "home" / ".kube" / "config"
    link.parent.mkdir(parents=True)
    link.symlink_to(config)
    async with FileWatcher([link]) as watcher:
        batches = watcher.changes()
        temp = config.with_name("config.tmp")
        temp.write_text(config.read_text().replace("current-context: one", "current-context: two"))
        os.replace(temp, config)  # the target changes; the link does not
        assert await until_reported(batches, link) == {link}
        assert read_effective_context([link]).name == "two"


async def test_directory_deleted_and_made_again(config: Path) -> None:
    text = config.read_text()
    async with FileWatcher([config]) as watcher:
        batches = watcher.changes()
        shutil.rmtree(config.parent)
        await until_reported(batches, config)
        config.parent.mkdir()
        config.write_text(text)
        await until_reported(batches, config)
        with config.open("a") as handle:
            handle.write("# and again\n")
        await until_reported(batches, config)


async def test_a_change_right_after_start_is_not_lost(config: Path) -> None:
    # The documented pattern: start() returns once armed; anything written after it is reported.
    for _ in range(20):
        watcher = FileWatcher([config])
        await watcher.start()
        with config.open("a") as handle:
            handle.write("# right away\n")
        await until_reported(watcher.changes(), config)
        await watcher.aclose()


async def test_unrelated_files_are_not_reported(config: Path) -> None:
    async with FileWatcher([config]) as watcher:
        batches = watcher.changes()
        config.with_name("config.lock").write_text("")  # kubectl's lock file
        (config.parent / "cache").mkdir()
        with config.open("a") as handle:
            handle.write("\n")
        assert await until_reported(batches, config) == {config}


async def test_cancelling_the_consumer_stops_the_watch(config: Path) -> None:
    watcher = FileWatcher([config])
    await watcher.start()

    async def consume() -> None:
        async for _ in watcher.changes():
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert watcher._pump is None  # aclose() ran and waited for the pump


def test_clean_shutdown_leaves_no_thread_and_no_warning(tmp_path: Path, config: Path, backend: str) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, threading
        from pathlib import Path
        from trayapp.engine import filewatch
        from trayapp.engine.filewatch import FileWatcher
        filewatch._BACKEND = {backend!r}

        async def main():
            # -X dev also reports callbacks slower than 0.1 s, which a loaded machine produces
            # anywhere; this test is about threads and warnings, not speed.
            asyncio.get_running_loop().slow_callback_duration = 60
            watcher = FileWatcher([Path({str(config)!r})])
            async def consume():
                async for _ in watcher.changes():
                    pass
            task = asyncio.create_task(consume())
            await watcher.start()
            Path({str(config)!r}).write_text("current-context: one\\n")
            await asyncio.sleep(0.2)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            async with FileWatcher([Path({str(config)!r})]):
                pass

        asyncio.run(main())
        for thread in threading.enumerate():
            if thread is not threading.main_thread():
                thread.join(5)
        alive = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        assert not alive, alive
        print("clean")
        """
    )
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "clean", "")


@pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not on PATH; this test runs it against the watched file"
)
async def test_kubectl_use_context_is_seen(config: Path) -> None:
    assert KUBECTL is not None
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(config.parent),
        "KUBECONFIG": str(config),
    }
    async with FileWatcher([config]) as watcher:
        batches = watcher.changes()
        process = await asyncio.create_subprocess_exec(
            KUBECTL, "config", "use-context", "two", env=env, stdout=asyncio.subprocess.DEVNULL
        )
        assert await asyncio.wait_for(process.wait(), 60) == 0
        await until_reported(batches, config)
        effective = read_effective_context([config])
        assert (effective.name, effective.namespace) == ("two", "other")


# What follows checks the parts the backends differ in: what a rename or a late directory does,
# a kernel queue overflow, and that an idle watcher holds nothing but its fd.


async def test_a_file_renamed_over_from_another_directory(tmp_path: Path, config: Path) -> None:
    async with FileWatcher([config]) as watcher:
        batches = watcher.changes()
        staged = tmp_path / "staged"
        staged.write_text(config.read_text().replace("current-context: one", "current-context: two"))
        os.replace(staged, config)  # the watched directory sees only the arrival (IN_MOVED_TO)
        assert await until_reported(batches, config) == {config}
        assert read_effective_context([config]).name == "two"


async def test_a_file_renamed_away(tmp_path: Path, config: Path) -> None:
    async with FileWatcher([config]) as watcher:
        batches = watcher.changes()
        os.replace(config, tmp_path / "moved-away")
        assert await until_reported(batches, config) == {config}


async def test_a_file_created_later(tmp_path: Path) -> None:
    later = tmp_path / "kube" / "config"
    later.parent.mkdir()
    async with FileWatcher([later]) as watcher:
        batches = watcher.changes()
        later.write_text(textwrap.dedent(CONFIG))
        assert await until_reported(batches, later) == {later}


async def test_directories_created_later_two_levels_down(tmp_path: Path) -> None:
    target = tmp_path / "home" / ".kube" / "config"
    async with FileWatcher([target]) as watcher:
        batches = watcher.changes()
        target.parent.mkdir(parents=True)
        await until_reported(batches, target)  # the re-arm reports every path once
        target.write_text(textwrap.dedent(CONFIG))
        await until_reported(batches, target)
        with target.open("a") as handle:
            handle.write("# later\n")
        await until_reported(batches, target)


@pytest.mark.usefixtures("inotify_only")
async def test_an_overflowed_queue_reports_every_path(
    tmp_path: Path, config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 200_000:
        pytest.skip(f"max_queued_events is {limit}: too many writes to overflow it here")
    untouched = tmp_path / "elsewhere" / "untouched"
    untouched.parent.mkdir()
    caplog.set_level("INFO", logger="trayapp.engine.filewatch")
    async with FileWatcher([config, untouched]) as watcher:
        batches = watcher.changes()
        # Without yielding to the loop, so the watcher reads nothing meanwhile: each write queues
        # IN_MODIFY then IN_CLOSE_WRITE (different, so the kernel cannot merge them).
        for _ in range(limit // 2 + 100):
            with config.open("a") as handle:
                handle.write("#")
        assert await until_reported(batches, untouched) >= {untouched}
    assert "its queue was full" in caplog.text


@pytest.mark.usefixtures("inotify_only")  # watchfiles' Rust watcher lets go of its fds on its own time
async def test_close_leaves_no_fd_open(config: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    watcher = FileWatcher([config])
    await watcher.start()
    await watcher.aclose()
    assert len(os.listdir("/proc/self/fd")) == before
    # Closing with a batch still pending (its debounce not over) also cancels the timer.
    watcher = FileWatcher([config], debounce_ms=60_000)
    await watcher.start()
    config.write_text("current-context: two\n")
    await asyncio.sleep(0)
    pump = watcher._pump
    await watcher.aclose()
    assert len(os.listdir("/proc/self/fd")) == before
    assert not _our_timers(asyncio.get_running_loop(), pump)


@pytest.mark.usefixtures("inotify_only")
async def test_an_idle_watcher_schedules_nothing(config: Path) -> None:
    loop = asyncio.get_running_loop()
    threads = threading.active_count()
    before = len(os.listdir("/proc/self/fd"))
    async with FileWatcher([config]) as watcher:
        assert (threading.active_count(), len(os.listdir("/proc/self/fd"))) == (threads, before + 1)
        assert not _our_timers(loop, watcher._pump)
        batches = watcher.changes()
        config.write_text("current-context: two\n")
        await until_reported(batches, config)
        # The batch is handed over: its debounce timer is gone and nothing else was started.
        assert not _our_timers(loop, watcher._pump)
        assert threading.active_count() == threads


def _our_timers(loop: asyncio.AbstractEventLoop, pump: object) -> list[asyncio.TimerHandle]:
    """Live timers whose callback is a method of `pump` (asyncio keeps them in the loop's heap)."""
    assert pump is not None
    scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
    return [h for h in scheduled if not h.cancelled() and getattr(h._callback, "__self__", None) is pump]  # type: ignore[attr-defined]
