// Python bindings of the native kernels: the extension module slam._native.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>

#include <cstring>
#include <utility>
#include <vector>

#include "cell_nms.hpp"
#include "keypoint_select.hpp"
#include "mutual_match.hpp"
#include "patch_align.hpp"

namespace nb = nanobind;
using namespace nb::literals;

using PointsIn = nb::ndarray<const double, nb::shape<-1, 2>, nb::c_contig, nb::device::cpu>;
using ScoresIn = nb::ndarray<const double, nb::shape<-1>, nb::c_contig, nb::device::cpu>;
using IndicesOut = nb::ndarray<nb::numpy, int64_t, nb::shape<-1>>;
using ProbIn = nb::ndarray<const float, nb::shape<-1, -1, -1>, nb::c_contig, nb::device::cpu>;
using MaskIn = nb::ndarray<const uint8_t, nb::shape<-1, -1>, nb::c_contig, nb::device::cpu>;
using SimilarityIn = nb::ndarray<const float, nb::shape<-1, -1>, nb::c_contig, nb::device::cpu>;
using PairsOut = nb::ndarray<nb::numpy, int64_t, nb::shape<-1, 2>>;
using XyOut = nb::ndarray<nb::numpy, float, nb::shape<-1, 2>>;
using ScoreOut = nb::ndarray<nb::numpy, float, nb::shape<-1>>;
using ImageIn = nb::ndarray<const uint8_t, nb::shape<-1, -1>, nb::c_contig, nb::device::cpu>;
using TemplatesIn = nb::ndarray<const double, nb::shape<-1, -1, -1>, nb::c_contig, nb::device::cpu>;
using WarpsInOut = nb::ndarray<double, nb::shape<-1, 2, 3>, nb::c_contig, nb::device::cpu>;
using ValuesOut = nb::ndarray<nb::numpy, double, nb::shape<-1>>;

// A NumPy array owning a copy of `values`, shaped (size / cols, cols) or (size,) when cols == 0.
template <typename T, typename Out>
static Out to_numpy(const std::vector<T>& values, size_t cols) {
  auto* data = new T[values.size()];
  std::memcpy(data, values.data(), values.size() * sizeof(T));
  nb::capsule owner(data, [](void* ptr) noexcept { delete[] static_cast<T*>(ptr); });
  if (cols == 0) return Out(data, {values.size()}, owner);
  return Out(data, {values.size() / cols, cols}, owner);
}

static IndicesOut select_keypoints_py(PointsIn xy, ScoresIn score, int width, int height, double cell_size,
                                      int max_per_cell, double min_distance, int max_total) {
  if (xy.shape(0) != score.shape(0)) throw nb::value_error("xy and score must have the same length");
  slam::KeypointSelectParams p{width, height, cell_size, max_per_cell, min_distance, max_total};
  std::vector<int64_t> picked;
  {
    nb::gil_scoped_release release;
    picked = slam::select_keypoints(xy.data(), score.data(), static_cast<int64_t>(xy.shape(0)), p);
  }
  auto* out = new int64_t[picked.size()];
  std::memcpy(out, picked.data(), picked.size() * sizeof(int64_t));
  nb::capsule owner(out, [](void* ptr) noexcept { delete[] static_cast<int64_t*>(ptr); });
  return IndicesOut(out, {picked.size()}, owner);
}

static std::pair<XyOut, ScoreOut> cell_nms_py(ProbIn prob, int cell, MaskIn mask, int width, int height,
                                              float threshold, double radius, int64_t max_count, int border) {
  const bool masked = mask.size() > 0;
  if (masked && (mask.shape(0) != static_cast<size_t>(height) || mask.shape(1) != static_cast<size_t>(width)))
    throw nb::value_error("mask must have shape (height, width) or be empty");
  slam::CellNmsParams p{width, height, threshold, radius, max_count, border};
  slam::CellKeypoints kp;
  {
    nb::gil_scoped_release release;
    kp = slam::cell_nms(prob.data(), static_cast<int>(prob.shape(0)), static_cast<int>(prob.shape(1)),
                        static_cast<int>(prob.shape(2)), cell, masked ? mask.data() : nullptr, p);
  }
  return {to_numpy<float, XyOut>(kp.xy, 2), to_numpy<float, ScoreOut>(kp.score, 0)};
}

static PairsOut mutual_match_py(SimilarityIn sim, double ratio, double min_similarity) {
  std::vector<int64_t> pairs;
  {
    nb::gil_scoped_release release;
    pairs = slam::mutual_match(sim.data(), static_cast<int64_t>(sim.shape(0)), static_cast<int64_t>(sim.shape(1)),
                               slam::MatchParams{ratio, min_similarity});
  }
  return to_numpy<int64_t, PairsOut>(pairs, 2);
}

static ValuesOut align_patches_py(ImageIn image, TemplatesIn templates, WarpsInOut warps, int iterations) {
  const size_t n = templates.shape(0), side = templates.shape(1);
  if (templates.shape(2) != side || side < 5 || side % 2 == 0)
    throw nb::value_error("templates must have shape (N, 2r + 3, 2r + 3) with r >= 1");
  if (warps.shape(0) != n) throw nb::value_error("warps must have shape (N, 2, 3), one per template");
  std::vector<double> residual(n);
  {
    nb::gil_scoped_release release;
    slam::align_patches(image.data(), static_cast<int>(image.shape(0)), static_cast<int>(image.shape(1)),
                        templates.data(), static_cast<int64_t>(n), static_cast<int>((side - 3) / 2), warps.data(),
                        iterations, residual.data());
  }
  return to_numpy<double, ValuesOut>(residual, 0);
}

NB_MODULE(_native, m) {
  m.doc() = "Native C++ kernels of the slam package (each has a NumPy twin in Python).";
  m.def("select_keypoints", &select_keypoints_py, "xy"_a, "score"_a, "width"_a, "height"_a, "cell_size"_a,
        "max_per_cell"_a, "min_distance"_a, "max_total"_a,
        "Grid-bucketed greedy keypoint selection; returns indices, strongest first.");
  m.def("cell_nms", &cell_nms_py, "prob"_a, "cell"_a, "mask"_a, "width"_a, "height"_a, "threshold"_a, "radius"_a,
        "max_count"_a, "border"_a,
        "Best pixel per cell of a (rows, cols, cell*cell+1) softmax scored by 1 - dustbin, neighbour-cell NMS, "
        "top-k, sub-pixel refinement; returns (xy, score), strongest first.");
  m.def("mutual_match", &mutual_match_py, "sim"_a, "ratio"_a, "min_similarity"_a,
        "Mutual nearest neighbours + ratio test on an (n, m) similarity matrix; returns (k, 2) index pairs.");
  m.def("align_patches", &align_patches_py, "image"_a, "templates"_a, "warps"_a, "iterations"_a,
        "Inverse-compositional affine alignment of (N, 2r+3, 2r+3) templates into a uint8 image; refines the "
        "(N, 2, 3) warps in place and returns the normalized RMS residual of each.");
}
