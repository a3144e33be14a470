// The extension is built with -Os (nanobind's default); this kernel needs -O3 to vectorize its sweeps.
#pragma GCC optimize("O3")
#include "mutual_match.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace slam {

static double unit_distance(float similarity) {
  return std::sqrt(std::max(2.0 - 2.0 * static_cast<double>(similarity), 0.0));
}

namespace {

constexpr int kLanes = 8;  // independent running maxima: fill a vector register, no dependency chain

// Best and second-best value of one row and the first column of the best, kept per lane of 8 columns.
struct RowLanes {
  float best[kLanes], second[kLanes];
  int32_t index[kLanes];

  RowLanes() {
    for (int k = 0; k < kLanes; ++k) {
      best[k] = second[k] = -std::numeric_limits<float>::infinity();
      index[k] = 0;
    }
  }

  void add(int k, float v, int32_t j) {  // strict >: a later equal value only becomes the second best
    const bool better = v > best[k];
    second[k] = better ? best[k] : (v > second[k] ? v : second[k]);
    best[k] = better ? v : best[k];
    index[k] = better ? j : index[k];
  }

  // Merge the lanes: the first column holding the maximum, and the largest of all the other values.
  void reduce(float& value, int64_t& column, float& runner_up) const {
    int w = 0;
    for (int k = 1; k < kLanes; ++k)
      if (best[k] > best[w] || (best[k] == best[w] && index[k] < index[w])) w = k;
    value = best[w];
    column = index[w];
    runner_up = second[w];
    for (int k = 0; k < kLanes; ++k) {
      if (second[k] > runner_up) runner_up = second[k];
      if (k != w && best[k] > runner_up) runner_up = best[k];
    }
  }
};

}  // namespace

std::vector<int64_t> mutual_match(const float* sim, int64_t n, int64_t m, const MatchParams& p) {
  std::vector<int64_t> pairs;
  if (n == 0 || m == 0) return pairs;
  if (n > INT32_MAX || m > INT32_MAX) throw std::invalid_argument("similarity matrix too large");
  std::vector<int64_t> row_best(n, 0);
  std::vector<float> row_value(n), row_second(n);
  std::vector<float> col_value(sim, sim + m);  // row 0 to start with
  std::vector<int32_t> col_best(m, 0);
  float* cv = col_value.data();
  int32_t* cb = col_best.data();
  // One pass: row i updates every column's best (strict >: the lowest i wins ties) and its own lanes.
  for (int64_t i = 0; i < n; ++i) {
    const float* s = sim + i * m;
    const int32_t row = static_cast<int32_t>(i);
    RowLanes lanes;
    int64_t j = 0;
    for (; j + kLanes <= m; j += kLanes)
      for (int k = 0; k < kLanes; ++k) {
        const float v = s[j + k];
        const bool better = v > cv[j + k];
        cv[j + k] = better ? v : cv[j + k];
        cb[j + k] = better ? row : cb[j + k];
        lanes.add(k, v, static_cast<int32_t>(j + k));
      }
    for (; j < m; ++j) {
      const float v = s[j];
      const bool better = v > cv[j];
      cv[j] = better ? v : cv[j];
      cb[j] = better ? row : cb[j];
      lanes.add(static_cast<int>(j % kLanes), v, static_cast<int32_t>(j));
    }
    lanes.reduce(row_value[i], row_best[i], row_second[i]);
  }
  const bool ratio_test = p.ratio < 1.0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = row_best[i];
    if (col_best[j] != i || static_cast<double>(row_value[i]) < p.min_similarity) continue;
    if (ratio_test && m > 1 && !(unit_distance(row_value[i]) < p.ratio * unit_distance(row_second[i]))) continue;
    pairs.push_back(i);
    pairs.push_back(j);
  }
  return pairs;
}

}  // namespace slam
