"""A deadline for a block of awaits that never swallows a cancellation.

`asyncio.wait_for` of Python 3.11 can lose a `cancel()` that arrives just as the awaited thing
finishes (fixed in 3.12): a stopping informer then keeps watching and `stop()` hangs. The
`asyncio.timeout` context manager does not, so every deadline in kubetray is one of these.
"""

from __future__ import annotations

import asyncio


def deadline(seconds: float) -> asyncio.Timeout:
    """Raise TimeoutError in the `async with` block if it runs longer than `seconds`."""
    return asyncio.timeout(seconds)
