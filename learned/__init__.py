"""Learned keypoints and descriptors (installed as ``slam.learned``).

- :mod:`.model` the net (encoder, cell-wise softmax keypoint head, descriptor head), :mod:`.weights` weight
  files (shipped: ``weights/keypoint_net_v1.pt``, see ``weights/MODEL_CARD.md``),
- :mod:`.features` inference (``LearnedFeatures``: net + per-cell NMS + top-k + descriptors),
  :mod:`.keypoints` and :mod:`.matching` the post-processing and matching kernels (C++ with NumPy twins),
- :mod:`.train` the training entry point (CPU/GPU, torchrun DDP), with :mod:`.data`, :mod:`.homography`,
  :mod:`.labels`, :mod:`.losses`, :mod:`.metrics`; :mod:`.export` Core ML export.

Nothing here is imported with the package: torch loads only when a learned component is used.
"""
