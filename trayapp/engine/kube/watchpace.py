"""How long a watch may stay silent, learned from the bookmarks its API server sends.

A watch that asked for bookmarks hears from a live server at a steady pace even when nothing
changes: kube-apiserver sends one about every minute, the simulator every few seconds. A dead
path (a sleeping laptop, a dropped VPN) is silence without a FIN or a reset, and TCP keepalive
cannot see it through a proxy, whose own socket stays alive. So a watch that has seen its server's
pace takes silence of several bookmark gaps for death, instead of waiting out the fixed ceiling.

Pure: the caller gives the clock readings, so tests need no sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Silence of this many bookmark gaps means the path is dead: one late bookmark (a loaded
# server, a garbage-collection pause) is normal, three in a row are not.
GAPS = 3.0
# Never tighter than this, whatever the pace: a slow machine must not take a live watch for dead.
FLOOR_SECONDS = 10.0


@dataclass
class WatchPace:
    """The bookmark gap of each watched collection, shared by the watches that resume one another."""

    ceiling: float  # the silence allowed before any bookmark was seen (KubeApi.watch_silence)
    floor: float = FLOOR_SECONDS
    gaps: dict[str, float] = field(default_factory=dict)

    def limit(self, collection: str) -> float:
        """Seconds of silence after which a watch on `collection` is taken for dead."""
        gap = self.gaps.get(collection)
        if gap is None:
            return self.ceiling
        return min(self.ceiling, max(self.floor, GAPS * gap))

    def bookmark(self, collection: str, since_last: float) -> None:
        """A bookmark came `since_last` seconds after the previous one on the same watch.

        The largest recent gap counts, so that a burst of early bookmarks never tightens the
        limit below what the server's usual pace needs; it forgets slowly, as a server that
        sped up is safe to follow late.
        """
        known = self.gaps.get(collection)
        self.gaps[collection] = since_last if known is None else max(since_last, 0.8 * known)
