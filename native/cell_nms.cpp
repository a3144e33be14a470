// The extension is built with -Os (nanobind's default); this kernel needs -O3 to vectorize its sweeps.
#pragma GCC optimize("O3")
#include "cell_nms.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace slam {

CellKeypoints cell_nms(const float* prob, int rows, int cols, int channels, int cell, const uint8_t* mask,
                       const CellNmsParams& p) {
  if (cell < 1 || channels != cell * cell + 1)
    throw std::invalid_argument("prob must have cell*cell + 1 channels (the last one the dustbin)");
  if (!(p.radius >= 0)) throw std::invalid_argument("radius must be >= 0");
  const int64_t n = static_cast<int64_t>(rows) * cols;
  std::vector<float> score(n, -1.0f);  // -1: no candidate in this cell
  std::vector<int> px(n, 0), py(n, 0);
  std::vector<int64_t> candidates;
  for (int64_t c = 0; c < n; ++c) {
    const float* q = prob + c * channels;
    int best = 0;
    float value = q[0];  // the most probable pixel (the first of equals)
    for (int k = 1; k < channels - 1; ++k)
      if (q[k] > value) {
        value = q[k];
        best = k;
      }
    const float keypoint = 1.0f - q[channels - 1];
    if (keypoint < p.threshold) continue;
    const int x = static_cast<int>(c % cols) * cell + best % cell;
    const int y = static_cast<int>(c / cols) * cell + best / cell;
    if (x < p.border || y < p.border || x >= p.width - p.border || y >= p.height - p.border ||
        (mask != nullptr && mask[static_cast<int64_t>(y) * p.width + x] == 0))
      continue;
    px[c] = x;
    py[c] = y;
    score[c] = keypoint;
    candidates.push_back(c);
  }

  // Only cells within ceil(radius / cell) of each other can hold two keypoints closer than radius.
  const int span = static_cast<int>(std::ceil(p.radius / cell));
  const double r2 = p.radius * p.radius;
  std::vector<int64_t> kept;
  for (int64_t c : candidates) {
    const int row = static_cast<int>(c / cols), col = static_cast<int>(c % cols);
    bool suppressed = false;
    for (int r = std::max(row - span, 0); r <= std::min(row + span, rows - 1) && !suppressed; ++r)
      for (int q = std::max(col - span, 0); q <= std::min(col + span, cols - 1); ++q) {
        const int64_t o = static_cast<int64_t>(r) * cols + q;
        if (o == c || score[o] < 0) continue;
        const bool stronger = score[o] > score[c] || (score[o] == score[c] && o < c);
        const double ex = px[o] - px[c], ey = py[o] - py[c];
        if (stronger && ex * ex + ey * ey < r2) {
          suppressed = true;
          break;
        }
      }
    if (!suppressed) kept.push_back(c);
  }
  // Strongest first, ties by cell index: a strict total order, so a partial sort gives the stable result.
  const auto first = [&](int64_t a, int64_t b) { return score[a] > score[b] || (score[a] == score[b] && a < b); };
  const size_t count = p.max_count > 0 ? std::min(kept.size(), static_cast<size_t>(p.max_count)) : kept.size();
  std::partial_sort(kept.begin(), kept.begin() + count, kept.end(), first);
  kept.resize(count);

  CellKeypoints out;
  out.xy.reserve(2 * count);
  out.score.reserve(count);
  for (int64_t c : kept) {
    // Sub-pixel: the probability-weighted mean offset over the 3x3 pixels around the best one, within
    // its cell (the net spreads a keypoint between pixels over its cell's classes only).
    const float* q = prob + c * channels;
    const int bx = px[c] % cell, by = py[c] % cell;
    double total = 0, sx = 0, sy = 0;
    for (int dy = -1; dy <= 1; ++dy)
      for (int dx = -1; dx <= 1; ++dx) {
        const int x = bx + dx, y = by + dy;
        if (x < 0 || y < 0 || x >= cell || y >= cell) continue;
        const double w = q[y * cell + x];
        total += w;
        sx += w * dx;
        sy += w * dy;
      }
    if (!(total > 0)) total = 1;  // all-zero neighbourhood (possible with threshold 0): sx = sy = 0
    out.xy.push_back(static_cast<float>(px[c] + sx / total));
    out.xy.push_back(static_cast<float>(py[c] + sy / total));
    out.score.push_back(score[c]);
  }
  return out;
}

}  // namespace slam
