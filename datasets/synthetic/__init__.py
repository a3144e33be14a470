"""Photo-realistic synthetic visual-inertial sequences with exact ground truth, in the ASL/EuRoC layout.

``generate("room_mav", out)`` ray-casts textured 3-D scenes (:mod:`.scene`, :mod:`.render`) into the EuRoC
stereo rig (:mod:`.rig`) along smooth analytic motions (:mod:`.trajectory`), with IMU readings from the
exact derivatives (:mod:`.imu`), and writes images, IMU, calibration and ground truth via AslWriter.
"""

from .generator import PRESETS, SequenceConfig, build, generate, make_config
from .imu import ImuNoise

__all__ = ["PRESETS", "ImuNoise", "SequenceConfig", "build", "generate", "make_config"]
