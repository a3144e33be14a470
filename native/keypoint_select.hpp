// Grid-bucketed keypoint selection: strongest first, at most `max_per_cell` per grid cell, none closer
// than `min_distance` to an already selected one, at most `max_total` overall.
#pragma once
#include <cstdint>
#include <vector>

namespace slam {

struct KeypointSelectParams {
  int width = 0, height = 0;    // image size [px]; points outside are rejected
  double cell_size = 32.0;      // bucketing cell [px]
  int max_per_cell = 4;         // <= 0: no per-cell limit
  double min_distance = 8.0;    // <= 0: no distance suppression
  int max_total = 1000;         // <= 0: no total limit
};

// xy: n points as x0,y0,x1,y1,...; score: n values. Returns selected indices, strongest first;
// ties keep input order (stable), so results are deterministic.
std::vector<int64_t> select_keypoints(const double* xy, const double* score, int64_t n,
                                      const KeypointSelectParams& p);

}  // namespace slam
