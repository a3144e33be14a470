// Python bindings of the native kernels: the extension module slam._native.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstring>

#include "keypoint_select.hpp"

namespace nb = nanobind;
using namespace nb::literals;

using PointsIn = nb::ndarray<const double, nb::shape<-1, 2>, nb::c_contig, nb::device::cpu>;
using ScoresIn = nb::ndarray<const double, nb::shape<-1>, nb::c_contig, nb::device::cpu>;
using IndicesOut = nb::ndarray<nb::numpy, int64_t, nb::shape<-1>>;

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

NB_MODULE(_native, m) {
  m.doc() = "Native C++ kernels of the slam package (each has a NumPy twin in Python).";
  m.def("select_keypoints", &select_keypoints_py, "xy"_a, "score"_a, "width"_a, "height"_a, "cell_size"_a,
        "max_per_cell"_a, "min_distance"_a, "max_total"_a,
        "Grid-bucketed greedy keypoint selection; returns indices, strongest first.");
}
