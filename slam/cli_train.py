"""``slam train``: train the learned keypoint/descriptor net. Commands register on :data:`slam.cli.app`."""

from __future__ import annotations

from slam.cli import app  # noqa: F401
