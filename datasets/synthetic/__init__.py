"""Photo-realistic synthetic visual-inertial sequences with exact ground truth, in the ASL/EuRoC layout.

``generate("room_mav", out)`` ray-casts textured 3-D scenes (:mod:`.scene`, :mod:`.render`) into the EuRoC
stereo rig (:mod:`.rig`) along smooth analytic motions (:mod:`.trajectory`), with IMU readings from the
exact derivatives (:mod:`.imu`), and writes images, IMU, calibration and ground truth via AslWriter.
Surfaces show real photos (:mod:`.textures`: scikit-image's sample images by default). The fixed benchmark
set that results report on lives in :mod:`.benchmark_set` (``ensure_sequence("room_mav")``).
"""

from .benchmark_set import BENCHMARK_SET, ensure_all, ensure_sequence
from .generator import PRESETS, SequenceConfig, build, generate, make_config
from .imu import ImuNoise

__all__ = ["BENCHMARK_SET", "PRESETS", "ImuNoise", "SequenceConfig", "build", "ensure_all", "ensure_sequence",
           "generate", "make_config"]
