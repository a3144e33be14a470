// Descriptor matching on a similarity matrix: mutual nearest neighbours, Lowe's ratio test on the
// distances of unit descriptors (d = sqrt(2 - 2 s)), a similarity floor. One pass over the matrix.
#pragma once
#include <cstdint>
#include <vector>

namespace slam {

struct MatchParams {
  double ratio = 1.0;            // keep i->j only if d_best < ratio * d_second; >= 1 disables the test
  double min_similarity = -1.0;  // keep only pairs with similarity >= this
};

// sim: n x m row-major (sim[i * m + j] = a_i . b_j). Returns pairs i0, j0, i1, j1, ... with ascending i.
// Ties go to the lowest index, so the result is deterministic.
std::vector<int64_t> mutual_match(const float* sim, int64_t n, int64_t m, const MatchParams& p);

}  // namespace slam
