"""Line-oriented parsing of the text formats sensor data comes in, with errors naming file and line."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from slam.messages import DataError

_MAX_SECONDS = Decimal(9_000_000_000)  # int64 nanoseconds end in 2262


class StampChecker:
    """Rejects non-increasing stamps within one sensor stream, naming the file and line."""

    def __init__(self, path: Path | str, what: str):
        self.path, self.what, self.last, self.last_line = path, what, None, None

    def __call__(self, t_ns: int, line: int) -> None:
        if self.last is not None and t_ns <= self.last:
            kind = "duplicated" if t_ns == self.last else "out-of-order"
            raise DataError(f"{kind} {self.what} timestamp {t_ns} (previous {self.last} at line "
                            f"{self.last_line}); timestamps must strictly increase", self.path, line)
        self.last, self.last_line = t_ns, line


def csv_rows(path: Path, delimiter: str | None = ",", comment: str = "#") -> Iterator[tuple[int, list[str]]]:
    """Yield (1-based line number, stripped fields) for each data row; skips blanks and comments.

    ``delimiter=None`` splits on whitespace (TUM, KITTI).
    """
    try:
        handle = open(path, encoding="utf-8", errors="replace", newline="")
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except OSError as exc:
        raise DataError(f"cannot open: {exc.strerror}", path) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.strip()
            if not text or text.startswith(comment):
                continue
            parts = text.split(delimiter) if delimiter else text.split()
            yield number, [p.strip() for p in parts]


def parse_ns(text: str, path, line: int, field: str = "timestamp") -> int:
    """Integer nanoseconds from an integer string."""
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{field} {text!r} is not an integer nanosecond stamp", path, line) from None


def seconds_to_ns(text: str, path, line: int | None, field: str = "timestamp") -> int:
    """Exact nanoseconds from a decimal seconds string (no float rounding: 1403715273.2621431 s)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise DataError(f"{field} {text!r} is not a number of seconds", path, line) from None
    if not value.is_finite():
        raise DataError(f"{field} {text!r} is not finite", path, line)
    if value.copy_abs() >= _MAX_SECONDS:
        raise DataError(f"{field} {text!r} s is out of range (int64 nanoseconds end in 2262)", path, line)
    return int((value * 1_000_000_000).to_integral_value())


def format_seconds(t_ns: int) -> str:
    """``t_ns`` as exact decimal seconds, nine decimals (what :func:`seconds_to_ns` reads back unchanged)."""
    sec, nsec = divmod(int(t_ns), 1_000_000_000)
    return f"{sec}.{nsec:09d}"


def parse_floats(fields: list[str], path, line: int, names: list[str]) -> np.ndarray:
    """Floats for the named columns; a clear error naming the column when one is not a number."""
    out = np.empty(len(names))
    for i, (text, name) in enumerate(zip(fields, names)):
        try:
            out[i] = float(text)
        except ValueError:
            raise DataError(f"column {name!r}: {text!r} is not a number", path, line) from None
    return out


def expect_columns(fields: list[str], n: int, path, line: int, what: str) -> None:
    if len(fields) < n:
        raise DataError(f"expected {n} columns ({what}), found {len(fields)}", path, line)


def load_yaml(path: str | Path) -> dict:
    """Load a YAML file, accepting OpenCV's ``%YAML:1.0`` header and ``!!opencv-matrix`` tags (EuRoC)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", path) from None
    # OpenCV writes "%YAML:1.0", which PyYAML rejects; blank it out (keeps line numbers).
    text = text.replace("%YAML:1.0", "", 1).replace("!!opencv-matrix", "")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DataError(f"invalid YAML: {problem}", path, mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise DataError("expected a YAML mapping at the top level", path)
    return data


def require(mapping: dict, key: str, path, prefix: str = ""):
    """``mapping[key]`` or a DataError naming the missing field."""
    if key not in mapping or mapping[key] is None:
        raise DataError("required field is missing", path, field=prefix + key)
    return mapping[key]
