"""Sequence readers (ASL/EuRoC, TUM-VI, KITTI, TUM RGB-D, rosbags, feature tracks) and the synthetic generator."""
