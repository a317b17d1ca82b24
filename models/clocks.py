"""The low watermark of several order partitions, as one later stage sees them (store and menu stages)."""

from __future__ import annotations

import math


class SourceClocks:
    """What one stage partition knows of its sources' clocks, and their low watermark.

    Each order partition (a *source*) stamps what it forwards with its clock, the
    newest order time it has processed. A source's messages reach a downstream
    partition in the order they were sent, so once a partition has seen clock
    ``T`` from a source it has every message that source sent for orders up to
    ``T``; the minimum over all ``n`` sources (the **low watermark**) is the event
    time up to which the partition's input is complete. A source never heard
    from holds it at ``-inf``.

    Idle sources: a source silent for ``idle_seconds`` of *wall-clock* time (no
    message at all; never heard from counts from when this object was made) no
    longer holds the others back; when every source is idle, the watermark is
    the newest clock (each has delivered all it had). A partition that is only
    *slow* keeps sending while it catches up, so it is never idle; one that was
    stalled that long (not idle) and then delivers older orders has them amend
    the closed days as late data. ``wall`` is passed in, so this stays a pure
    function of its inputs. Memory only: after a restart it is rebuilt from the
    next messages.
    """

    __slots__ = ("born", "clocks", "n", "seen")

    def __init__(self, wall: float = 0.0) -> None:
        self.clocks: dict[int, float] = {}
        self.seen: dict[int, float] = {}  # source -> wall time of its last message
        self.n = 1
        self.born = wall

    def see(self, src: int, n: int, wm: float, wall: float = 0.0) -> None:
        if wm > self.clocks.get(src, -math.inf):
            self.clocks[src] = wm
        self.seen[src] = wall
        if n > self.n:
            self.n = n

    def low(self, idle_seconds: float = 0.0, wall: float = 0.0) -> float:
        active = [self.clocks.get(i, -math.inf) for i in range(self.n)
                  if not (idle_seconds > 0 and wall - self.seen.get(i, self.born) >= idle_seconds)]
        if active:
            return min(active)
        return max(self.clocks.values(), default=-math.inf)
