#include "keypoint_select.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace slam {

std::vector<int64_t> select_keypoints(const double* xy, const double* score, int64_t n,
                                      const KeypointSelectParams& p) {
  if (p.width <= 0 || p.height <= 0 || !(p.cell_size >= 1))
    throw std::invalid_argument("width and height must be positive and cell_size >= 1 px");
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return score[a] > score[b]; });

  const int cells_x = static_cast<int>(std::ceil(p.width / p.cell_size));
  const int cells_y = static_cast<int>(std::ceil(p.height / p.cell_size));
  std::vector<int> per_cell(static_cast<size_t>(cells_x) * cells_y, 0);

  // Occupancy grid with cells no smaller than min_distance, so a conflicting point lies in the 3x3
  // neighbourhood; at least 4 px so a tiny radius cannot blow up the grid.
  const bool suppress = p.min_distance > 0;
  const double r = suppress ? p.min_distance : 1.0;
  const double g = std::max(r, 4.0);
  const int occ_x = static_cast<int>(std::ceil(p.width / g)), occ_y = static_cast<int>(std::ceil(p.height / g));
  std::vector<std::vector<int64_t>> occupied(suppress ? static_cast<size_t>(occ_x) * occ_y : 0);
  const double r2 = r * r;

  std::vector<int64_t> selected;
  for (int64_t idx : order) {
    if (p.max_total > 0 && static_cast<int64_t>(selected.size()) >= p.max_total) break;
    const double x = xy[2 * idx], y = xy[2 * idx + 1];
    if (!(x >= 0 && y >= 0 && x < p.width && y < p.height) || std::isnan(score[idx])) continue;
    const int cell = static_cast<int>(y / p.cell_size) * cells_x + static_cast<int>(x / p.cell_size);
    if (p.max_per_cell > 0 && per_cell[cell] >= p.max_per_cell) continue;
    int ox = 0, oy = 0;
    if (suppress) {
      ox = static_cast<int>(x / g);
      oy = static_cast<int>(y / g);
      bool clash = false;
      for (int gy = std::max(oy - 1, 0); gy <= std::min(oy + 1, occ_y - 1) && !clash; ++gy)
        for (int gx = std::max(ox - 1, 0); gx <= std::min(ox + 1, occ_x - 1) && !clash; ++gx)
          for (int64_t j : occupied[static_cast<size_t>(gy) * occ_x + gx]) {
            const double dx = xy[2 * j] - x, dy = xy[2 * j + 1] - y;
            if (dx * dx + dy * dy < r2) { clash = true; break; }
          }
      if (clash) continue;
      occupied[static_cast<size_t>(oy) * occ_x + ox].push_back(idx);
    }
    ++per_cell[cell];
    selected.push_back(idx);
  }
  return selected;
}

}  // namespace slam
