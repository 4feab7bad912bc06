"""Pure retry delays: exponential growth from `initial`, capped at `cap`, with +-`jitter` spread.

No clock and no sleeping here: the caller asks for the delay of attempt n and schedules the
wake-up itself (a timer command), so tests inject the random source and never wait.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay policy for reconnects: attempt 0 waits about `initial`, each attempt `factor` longer.

    `jitter` is a fraction: 0.2 spreads each delay over +-20% so that many tunnels that broke
    together (an API server restart) do not all reconnect in the same instant.
    """

    initial: float = 0.2
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not self.initial > 0:
            raise ValueError(f"Backoff initial delay must be positive, not {self.initial!r}.")
        if not self.factor >= 1:
            raise ValueError(f"Backoff factor must be at least 1, not {self.factor!r}.")
        if not self.cap >= self.initial:
            raise ValueError(
                f"Backoff cap ({self.cap!r}) must not be below "
                f"the initial delay ({self.initial!r})."
            )
        if not 0 <= self.jitter < 1:
            raise ValueError(f"Backoff jitter must be a fraction in [0, 1), not {self.jitter!r}.")

    def base(self, attempt: int) -> float:
        """The delay before jitter: initial * factor**attempt, never above `cap`."""
        if attempt < 0:
            raise ValueError(f"Backoff attempt must be 0 or more, not {attempt}.")
        try:
            grown = self.initial * self.factor**attempt
        except OverflowError:  # a very long outage: factor**attempt left float range
            return self.cap
        return min(grown, self.cap)

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt `attempt` (0-based); `rng` returns floats in [0, 1).

        The jitter is applied after capping and the result is capped again, so a delay never
        exceeds `cap` (a user who sets cap=5 expects at most 5 seconds).
        """
        base = self.base(attempt)
        spread = base * self.jitter
        jittered = base + (2.0 * rng() - 1.0) * spread
        return max(0.0, min(jittered, self.cap))
