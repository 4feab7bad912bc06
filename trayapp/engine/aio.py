"""A deadline for a block of awaits that never swallows a cancellation.

Python 3.11's `asyncio.wait_for` can lose a `cancel()` that arrives just as the awaited thing
finishes (fixed in 3.12): a stopping informer then keeps watching and `stop()` hangs. The
`asyncio.timeout` context manager of 3.11+ does not; on 3.10 this module provides the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def deadline(seconds: float) -> AsyncIterator[None]:
    """Raise asyncio.TimeoutError in the block if it runs longer than `seconds`."""
    native = getattr(asyncio, "timeout", None)
    if native is not None:
        async with native(seconds):
            yield
        return
    task = asyncio.current_task()
    assert task is not None
    fired = False

    def fire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_later(seconds, fire)
    try:
        yield
    except asyncio.CancelledError:
        if fired:
            raise asyncio.TimeoutError from None
        raise
    finally:
        handle.cancel()
