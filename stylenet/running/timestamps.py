"""Presentation timestamps for decoded video frames, whatever the demuxer and decoder report.

A decoder hands its frames over in presentation order, but the timestamps on them are what the container knew, and
containers without presentation times get them wrong: an AVI with packed B-frames (DivX, Xvid) stamps the frames
1, 2, 3, 5, 4, 6, 8, 7, ... (the decode order), and an encoder or muxer refuses a frame whose time runs backwards.
Other files repeat a timestamp, lose one, or jump back (damage, a clip joined from two). `FrameClock` gives each frame,
in the order it arrives, the smallest timestamp among those of the frames held in a short window: the decode-order
stamps sorted back into presentation order (what FFmpeg's best-effort timestamp does), gaps of a variable frame rate
kept. A missing timestamp is the newest one plus a frame; one that would not increase is the last one plus a frame.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from typing import Generic, TypeVar

Frame = TypeVar("Frame")

# frames held to sort their timestamps: B-frame reordering reaches 2-4 frames in practice and 16 at most in H.264
# (its largest decoded picture buffer); 16 frames cost 16 decoded frames of memory (YUV, before stylizing)
WINDOW = 16


class FrameClock(Generic[Frame]):
    """push(frame, pts) and drain() yield (frame, pts) in arrival order with strictly increasing pts."""

    def __init__(self, frame_ticks: int, window: int = WINDOW) -> None:
        self.frame_ticks = max(1, frame_ticks)  # one frame's duration in the stream's time base
        self.window = window
        self.held: deque[Frame] = deque()
        self.stamps: list[int] = []  # a heap of the held frames' timestamps
        self.newest: int | None = None  # the largest timestamp seen
        self.last: int | None = None  # the last timestamp given out
        self.repaired = 0  # timestamps that were missing or did not increase: for the log

    def push(self, frame: Frame, pts: int | None) -> Iterator[tuple[Frame, int]]:
        """Hold the frame; yield those that leave the window."""
        if pts is None:
            self.repaired += 1
            known = self.newest if self.newest is not None else self.last
            pts = known + self.frame_ticks if known is not None else 0
        self.newest = pts if self.newest is None else max(self.newest, pts)
        heapq.heappush(self.stamps, pts)
        self.held.append(frame)
        yield from self.release(self.window)

    def drain(self) -> Iterator[tuple[Frame, int]]:
        """Every frame still held (at the end of the stream, or where decoding stopped)."""
        yield from self.release(0)

    def release(self, keep: int) -> Iterator[tuple[Frame, int]]:
        while len(self.held) > keep:
            pts = heapq.heappop(self.stamps)
            if self.last is not None and pts <= self.last:
                self.repaired += 1
                pts = self.last + self.frame_ticks
            self.last = pts
            yield self.held.popleft(), pts


def frame_ticks(rate: Fraction | None, time_base: Fraction) -> int:
    """One frame's duration in `time_base` units at `rate` frames/s (25 where the stream names none)."""
    return max(1, round(1 / ((rate or Fraction(25)) * time_base)))
