"""Visual-inertial SLAM: learned frontend, GTSAM backend, native C++ kernels.

Stages install as subpackages: ``slam.datasets``, ``slam.frontend``, ``slam.backend``, ``slam.learned``.
"""

__version__ = "0.1.0"
