"""Process limits a forwarder needs: every tunnelled connection holds two sockets.

Distributions default the soft open-file limit to 1024, which would cap kubetray at about 500
concurrent connections; like Go programs since 1.19, raise the soft limit to the hard one.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def raise_open_file_limit() -> int | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit (None off POSIX)."""
    try:
        import resource
    except ImportError:  # Windows has no such limit for sockets
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.debug("could not raise the open-file limit from %s to %s: %s", soft, target, exc)
        return soft
    return target
