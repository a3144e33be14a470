"""Clock estimates for live sources: the offset between a sensor's clock and this host's."""

from __future__ import annotations

from collections import deque

import numpy as np


class ClockOffset:
    """``host - sensor`` clock offset: the sliding-window minimum of (receive time - sensor stamp), i.e. the
    offset plus the smallest transport delay."""

    def __init__(self, window_s: float = 30.0):
        self.window_ns = int(window_s * 1e9)
        self._mins: deque[tuple[int, int]] = deque()  # (received_ns, diff_ns), diffs increasing
        self._excess: deque[int] = deque(maxlen=2000)  # diff above the minimum: transport jitter
        self.samples = 0

    def add(self, received_ns: int, t_sensor_ns: int) -> None:
        diff = received_ns - t_sensor_ns
        while self._mins and self._mins[-1][1] >= diff:
            self._mins.pop()
        self._mins.append((received_ns, diff))
        while self._mins[0][0] < received_ns - self.window_ns:
            self._mins.popleft()
        self._excess.append(diff - self._mins[0][1])
        self.samples += 1

    @property
    def offset_ns(self) -> int | None:
        return self._mins[0][1] if self._mins else None

    def summary(self) -> dict | None:
        if self.offset_ns is None:
            return None
        excess = np.array(self._excess) * 1e-6
        return {"offset_s": round(self.offset_ns * 1e-9, 6), "samples": self.samples,
                "delay_above_min_ms_p50": round(float(np.percentile(excess, 50)), 3),
                "delay_above_min_ms_p95": round(float(np.percentile(excess, 95)), 3)}
