// Keypoints from the cell-wise softmax of the keypoint net: the most probable pixel of each 8x8 cell, scored
// by the cell's keypoint probability (1 - dustbin), non-maximum suppression between neighbouring cells,
// strongest first, top-k, refined to sub-pixel by the weighted mean offset of the 3x3 pixels around it
// (within its cell). Per-cell NMS costs ~1 ms on a 752x480
// image where a full-resolution NMS costs 16-34 ms.
#pragma once
#include <cstdint>
#include <vector>

namespace slam {

struct CellNmsParams {
  int width = 0, height = 0;  // image size [px]; pixels of the padded border beyond it are rejected
  float threshold = 0.0f;     // minimum keypoint probability of the cell (1 - dustbin)
  double radius = 4.0;        // a cell's keypoint is dropped if a stronger one lies closer than this [px]
  int64_t max_count = 0;      // <= 0: all
  int border = 0;             // no keypoint closer than this to the image edge [px]
};

struct CellKeypoints {
  std::vector<float> xy;     // x0, y0, x1, y1, ... pixel coordinates (sub-pixel)
  std::vector<float> score;  // keypoint probability of the cell, descending
};

// prob: rows x cols x channels (channels = cell*cell + 1, the last one the dustbin), row-major; mask:
// height x width bytes (0: no keypoint there) or nullptr. Ties are broken by cell index (row-major), so
// the result is deterministic.
CellKeypoints cell_nms(const float* prob, int rows, int cols, int channels, int cell, const uint8_t* mask,
                       const CellNmsParams& p);

}  // namespace slam
