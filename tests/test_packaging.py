"""The installed package: one `slam` namespace, the native module inside it, the `slam` command."""

from __future__ import annotations

import importlib.metadata
import shutil

import pytest


def test_stages_install_under_slam_namespace():
    import slam.backend
    import slam.datasets
    import slam.frontend
    import slam.learned

    assert slam.datasets.__name__ == "slam.datasets" and slam.frontend.__name__ == "slam.frontend"
    files = importlib.metadata.files("slam") or []
    if any(str(f).endswith(".pth") for f in files):
        pytest.skip("editable install (its .pth puts source folders on sys.path); the wheel test runs in CI")
    top_level = {str(f).split("/")[0] for f in files if not str(f).startswith("..")}
    # Nothing named datasets/backend/frontend/learned at the top of site-packages.
    assert top_level <= {"slam", "slam-0.1.0.dist-info"} | {t for t in top_level if t.endswith(".dist-info")}, top_level
    assert any(str(f).startswith("slam/datasets/") for f in files)
    assert any(str(f).startswith("slam/_native") for f in files)


def test_native_module_and_console_script():
    from slam import _native

    assert hasattr(_native, "select_keypoints")
    assert shutil.which("slam") is not None
