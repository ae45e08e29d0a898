"""Deadline timers for the alert engine: a binary heap keyed by deadline.

One pending deadline per key. ``schedule`` replaces an existing deadline, ``cancel``
removes it; both are O(log n) amortised. Cancelled heap entries are left in place and
skipped when they reach the top (lazy deletion); the heap is compacted when dead entries
outnumber live ones, so memory stays O(live timers).

Ties are broken by the key itself (keys must be mutually comparable, the engine uses
tuples of strings), never by insertion order: the firing order of timers is then a pure
function of (deadline, key). That is what lets a live engine that was restarted from a
snapshot, or that called ``advance`` at different instants, fire timers in exactly the
same order as a backtest.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

__all__ = ["TimerWheel"]


class _Entry:
    __slots__ = ("deadline", "key", "alive")

    def __init__(self, deadline: Any, key: Any) -> None:
        self.deadline = deadline
        self.key = key
        self.alive = True

    def __lt__(self, other: _Entry) -> bool:
        return (self.deadline, self.key) < (other.deadline, other.key)


class TimerWheel(Generic[K]):
    """Min-heap of (deadline, key) with cancel/reschedule by key."""

    __slots__ = ("_heap", "_live", "_dead")

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[K, _Entry] = {}
        self._dead = 0

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def deadline(self, key: K) -> Any | None:
        entry = self._live.get(key)
        return None if entry is None else entry.deadline

    def schedule(self, key: K, deadline: Any) -> None:
        """Set (or move) the deadline of ``key``."""
        old = self._live.get(key)
        if old is not None:
            if old.deadline == deadline:
                return
            self._kill(old)
        entry = _Entry(deadline, key)
        self._live[key] = entry
        heapq.heappush(self._heap, entry)

    def cancel(self, key: K) -> bool:
        entry = self._live.pop(key, None)
        if entry is None:
            return False
        entry.alive = False
        self._dead += 1
        self._maybe_compact()
        return True

    def next_deadline(self) -> Any | None:
        self._drop_dead_top()
        return self._heap[0].deadline if self._heap else None

    def pop_due(self, now: Any) -> tuple[Any, K] | None:
        """Remove and return the earliest (deadline, key) with deadline <= now, else None."""
        self._drop_dead_top()
        if not self._heap or self._heap[0].deadline > now:
            return None
        entry = heapq.heappop(self._heap)
        del self._live[entry.key]
        return entry.deadline, entry.key

    def items(self) -> Iterator[tuple[K, Any]]:
        """Live (key, deadline) pairs in no particular order."""
        return ((k, e.deadline) for k, e in self._live.items())

    def clear(self) -> None:
        self._heap.clear()
        self._live.clear()
        self._dead = 0

    # -- internals -------------------------------------------------------------------
    def _kill(self, entry: _Entry) -> None:
        entry.alive = False
        self._dead += 1
        self._maybe_compact()

    def _drop_dead_top(self) -> None:
        heap = self._heap
        while heap and not heap[0].alive:
            heapq.heappop(heap)
            self._dead -= 1

    def _maybe_compact(self) -> None:
        # Rebuild when more than half the heap is garbage: keeps reschedule-heavy
        # workloads (every reading moves an absence deadline) at O(live) memory.
        if self._dead > 64 and self._dead > len(self._live):
            self._heap = [e for e in self._heap if e.alive]
            heapq.heapify(self._heap)
            self._dead = 0
