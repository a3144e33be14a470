"""What every sequence reader provides, and the small parsing helpers they share.

A reader is a :class:`Sequence`: calibration up front, then ``messages()`` yields one time-ordered
stream of :class:`ImuSample`, :class:`CameraFrame` and :class:`FeatureFrame` lazily (images are decoded
only when a consumer calls ``load()``), so a 20-minute sequence never sits in memory.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from slam.messages import Calibration, CameraFrame, FeatureFrame, ImuSample, Message, Trajectory
from slam.parsing import StampChecker, csv_rows, expect_columns, parse_floats, parse_ns

log = logging.getLogger("slam.datasets")

# At equal stamps the IMU sample comes first, so the IMU up to a frame's time is known when it arrives.
_ORDER = {ImuSample: 0, FeatureFrame: 1, CameraFrame: 2}


class Sequence(ABC):
    """A recorded sequence: calibration, a lazy time-ordered message stream, optional ground truth."""

    format_name: str = "?"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.warnings: list[str] = []  # things users should know (also logged), e.g. rows skipped
        self.ground_truth_path: Path | None = None  # TUM or EuRoC CSV; readers find one, --gt overrides

    @property
    def name(self) -> str:
        return self.path.name

    @property
    @abstractmethod
    def calibration(self) -> Calibration: ...

    @abstractmethod
    def messages(self) -> Iterator[Message]:
        """All messages in time order (IMU before frames at equal stamps). Re-iterable."""

    def ground_truth(self) -> Trajectory | None:
        from slam.trajectory_io import read_trajectory

        return read_trajectory(self.ground_truth_path) if self.ground_truth_path else None

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)
            log.warning(text)


def merge_streams(*streams: Iterable[Message]) -> Iterator[Message]:
    """Merge per-sensor streams, each already time-ordered, into one time-ordered stream."""
    tie = itertools.count()  # unique tie-breaker, so messages themselves are never compared
    keyed = [((m.t_ns, _ORDER[type(m)], next(tie), m) for m in stream) for stream in streams]
    for *_, msg in heapq.merge(*keyed):
        yield msg


class ImuCsvStream:
    """IMU rows ``t, gx, gy, gz, ax, ay, az`` (ASL order) with validation.

    Non-finite rows are skipped and reported once with their count; gaps above ``gap_factor`` times
    the nominal period are reported. Non-increasing stamps are an error.
    """

    def __init__(self, sequence: Sequence, path: Path, rate_hz: float | None, parse_time=parse_ns,
                 delimiter: str | None = ",", gap_factor: float = 2.5):
        self.sequence, self.path, self.rate_hz = sequence, path, rate_hz
        self.parse_time, self.delimiter, self.gap_factor = parse_time, delimiter, gap_factor

    def __iter__(self) -> Iterator[ImuSample]:
        names = ["gyro_x", "gyro_y", "gyro_z", "accel_x", "accel_y", "accel_z"]
        check = StampChecker(self.path, "IMU")
        bad_lines: list[int] = []
        gaps: list[tuple[int, float]] = []
        max_gap_ns = None if not self.rate_hz else self.gap_factor * 1e9 / self.rate_hz
        prev_t = None
        for line, fields in csv_rows(self.path, self.delimiter):
            expect_columns(fields, 7, self.path, line, "timestamp, 3 gyro, 3 accel")
            t_ns = self.parse_time(fields[0], self.path, line)
            values = parse_floats(fields[1:7], self.path, line, names)
            check(t_ns, line)
            if not np.all(np.isfinite(values)):
                bad_lines.append(line)
                continue
            if max_gap_ns is not None and prev_t is not None and t_ns - prev_t > max_gap_ns:
                gaps.append((line, (t_ns - prev_t) * 1e-9))
            prev_t = t_ns
            yield ImuSample(t_ns, values[:3], values[3:])
        if bad_lines:
            self.sequence.warn(f"{self.path}: skipped {len(bad_lines)} IMU rows with NaN/inf values "
                               f"(lines {_short_list(bad_lines)})")
        if gaps:
            worst = max(g for _, g in gaps)
            self.sequence.warn(f"{self.path}: {len(gaps)} IMU gaps longer than {self.gap_factor:g} periods "
                               f"(longest {worst:.3f} s; at lines {_short_list([ln for ln, _ in gaps])})")


def _short_list(items: list[int], n: int = 5) -> str:
    head = ", ".join(str(i) for i in items[:n])
    return head + (f", ... (+{len(items) - n} more)" if len(items) > n else "")
