"""FileWatcher against real files, real directories and the real kubectl; no mocks, no timing asserts."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from trayapp.engine.filewatch import FileWatcher
from trayapp.engine.kubeconfig import read_effective_context

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


def test_clean_shutdown_leaves_no_thread_and_no_warning(tmp_path: Path, config: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, threading
        from pathlib import Path
        from trayapp.engine.filewatch import FileWatcher

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
