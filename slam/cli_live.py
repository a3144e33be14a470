"""``slam live`` and ``slam replay``: run on live camera + IMU sources, and serve a recorded sequence over
loopback as if it were live. Commands register on :data:`slam.cli.app`.
"""

from __future__ import annotations

from slam.cli import app  # noqa: F401
