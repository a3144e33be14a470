// Affine patch alignment (inverse compositional Lucas-Kanade): each feature's template, taken where the
// feature was first seen, aligned to a new image under an affine warp with gain and bias normalized away.
#pragma once
#include <cstdint>

namespace slam {

// image: height x width grey values. templates: n patches of side 2r + 3 (the aligned (2r + 1)^2 patch plus a
// one-pixel ring for the gradients), row-major. warps: n 2x3 row-major affine maps from template offsets
// (gx, gy) to image pixels, updated in place over `iterations` Gauss-Newton steps. residual: n values, the RMS
// difference of the zero-mean unit-variance patches at the final warp; infinity where the template has no
// texture to align (singular normal equations) or a step produced a non-finite warp.
void align_patches(const uint8_t* image, int height, int width, const double* templates, int64_t n, int radius,
                   double* warps, int iterations, double* residual);

}  // namespace slam
