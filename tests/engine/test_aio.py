"""The deadline helper: times out, and never loses a cancellation."""

import asyncio

import pytest

from trayapp.engine.aio import deadline


async def test_times_out() -> None:
    with pytest.raises(asyncio.TimeoutError):
        async with deadline(0.01):
            await asyncio.Event().wait()


async def test_cancel_arriving_as_the_work_finishes_is_kept() -> None:
    """The race that wait_for loses on 3.11: the inner future is done when the cancel lands."""
    ready = asyncio.get_running_loop().create_future()

    async def worker() -> None:
        async with deadline(10):
            await ready
        await asyncio.Event().wait()  # only a lost cancellation would leave us waiting here

    task = asyncio.ensure_future(worker())
    await asyncio.sleep(0)
    ready.set_result(None)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
