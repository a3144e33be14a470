// The extension is built with -Os (nanobind's default); the per-pixel loops need -O3.
#pragma GCC optimize("O3")
#include "patch_align.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace slam {

namespace {

// Bilinear sample at (x, y) inside [0, width - 1) x [0, height - 1).
inline double sample_inside(const uint8_t* image, int width, double x, double y) {
  const int x0 = static_cast<int>(x), y0 = static_cast<int>(y);
  const double fx = x - x0, fy = y - y0;
  const uint8_t* r0 = image + static_cast<int64_t>(y0) * width + x0;
  const uint8_t* r1 = r0 + width;
  const double top = r0[0] + (r0[1] - r0[0]) * fx;
  const double bottom = r1[0] + (r1[1] - r1[0]) * fx;
  return top + (bottom - top) * fy;
}

// Bilinear sample with the coordinates clamped to the image (edge pixels replicated).
double sample(const uint8_t* image, int height, int width, double x, double y) {
  x = std::min(std::max(x, 0.0), width - 1.0);
  y = std::min(std::max(y, 0.0), height - 1.0);
  const int x0 = static_cast<int>(x), y0 = static_cast<int>(y);
  const int x1 = std::min(x0 + 1, width - 1), y1 = std::min(y0 + 1, height - 1);
  const double fx = x - x0, fy = y - y0;
  const uint8_t* r0 = image + static_cast<int64_t>(y0) * width;
  const uint8_t* r1 = image + static_cast<int64_t>(y1) * width;
  const double top = r0[x0] + (r0[x1] - r0[x0]) * fx;
  const double bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
  return top + (bottom - top) * fy;
}

// Solves H x = b for a symmetric positive definite 6x6 H (Cholesky); false when H is not.
bool solve6(const double* H, const double* b, double* x) {
  double L[36] = {0};
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j <= i; ++j) {
      double s = H[i * 6 + j];
      for (int k = 0; k < j; ++k) s -= L[i * 6 + k] * L[j * 6 + k];
      if (i == j) {
        if (!(s > 1e-12)) return false;
        L[i * 6 + i] = std::sqrt(s);
      } else {
        L[i * 6 + j] = s / L[j * 6 + j];
      }
    }
  double y[6];
  for (int i = 0; i < 6; ++i) {
    double s = b[i];
    for (int k = 0; k < i; ++k) s -= L[i * 6 + k] * y[k];
    y[i] = s / L[i * 6 + i];
  }
  for (int i = 5; i >= 0; --i) {
    double s = y[i];
    for (int k = i + 1; k < 6; ++k) s -= L[k * 6 + i] * x[k];
    x[i] = s / L[i * 6 + i];
  }
  return true;
}

}  // namespace

void align_patches(const uint8_t* image, int height, int width, const double* templates, int64_t n, int radius,
                   double* warps, int iterations, double* residual) {
  const int side = 2 * radius + 1, outer = side + 2, pixels = side * side;
  std::vector<double> t(pixels), jac(6 * static_cast<size_t>(pixels)), warped(pixels);
  for (int64_t i = 0; i < n; ++i) {
    const double* T = templates + i * outer * outer;
    double* M = warps + 6 * i;
    residual[i] = std::numeric_limits<double>::infinity();
    // normalized template, steepest-descent images J = grad T * dW/dp and the normal matrix H = sum J J^T
    double mean = 0, var = 0;
    for (int r = 0; r < side; ++r)
      for (int c = 0; c < side; ++c) mean += T[(r + 1) * outer + c + 1];
    mean /= pixels;
    for (int r = 0; r < side; ++r)
      for (int c = 0; c < side; ++c) {
        const double d = T[(r + 1) * outer + c + 1] - mean;
        var += d * d;
      }
    const double scale = 1.0 / std::max(std::sqrt(var / pixels), 1e-9);
    double H[36] = {0}, jsum[6] = {0}, jt[6] = {0};
    for (int r = 0; r < side; ++r)
      for (int c = 0; c < side; ++c) {
        const int k = r * side + c;
        const double* p = T + (r + 1) * outer + (c + 1);
        const double gx = c - radius, gy = r - radius;
        const double dx = 0.5 * (p[1] - p[-1]) * scale, dy = 0.5 * (p[outer] - p[-outer]) * scale;
        const double J[6] = {dx * gx, dy * gx, dx * gy, dy * gy, dx, dy};
        t[k] = (*p - mean) * scale;
        for (int a = 0; a < 6; ++a) {
          jac[6 * k + a] = J[a];
          jsum[a] += J[a];
          jt[a] += J[a] * t[k];
          for (int b = 0; b <= a; ++b) H[a * 6 + b] += J[a] * J[b];
        }
      }
    for (int a = 0; a < 6; ++a)
      for (int b = a + 1; b < 6; ++b) H[a * 6 + b] = H[b * 6 + a];

    // The patch under the current warp, and its mean and standard deviation.
    auto warp = [&](double& w_mean, double& w_scale) {
      const double x0 = M[2] - radius * (M[0] + M[1]), y0 = M[5] - radius * (M[3] + M[4]);
      // the patch's corners inside the image (the usual case): no clamping needed in between
      const double xs[4] = {x0, x0 + 2 * radius * M[0], x0 + 2 * radius * M[1], x0 + 2 * radius * (M[0] + M[1])};
      const double ys[4] = {y0, y0 + 2 * radius * M[3], y0 + 2 * radius * M[4], y0 + 2 * radius * (M[3] + M[4])};
      bool inside = true;
      for (int k = 0; k < 4; ++k)
        inside = inside && xs[k] >= 0 && ys[k] >= 0 && xs[k] < width - 1 && ys[k] < height - 1;
      double sum = 0, sum2 = 0;
      for (int r = 0; r < side; ++r) {
        double x = x0 + r * M[1], y = y0 + r * M[4];
        for (int c = 0; c < side; ++c, x += M[0], y += M[3]) {
          const double v = inside ? sample_inside(image, width, x, y) : sample(image, height, width, x, y);
          warped[r * side + c] = v;
          sum += v;
          sum2 += v * v;
        }
      }
      w_mean = sum / pixels;
      w_scale = 1.0 / std::max(std::sqrt(std::max(sum2 / pixels - w_mean * w_mean, 0.0)), 1e-9);
    };
    bool ok = true;
    double w_mean, w_scale;
    for (int it = 0; it < iterations && ok; ++it) {
      warp(w_mean, w_scale);
      // b = sum J (normalized warped - t) = scale (sum J w - mean sum J) - sum J t
      double jw[6] = {0}, b[6], dp[6];
      for (int k = 0; k < pixels; ++k)
        for (int a = 0; a < 6; ++a) jw[a] += jac[6 * k + a] * warped[k];
      for (int a = 0; a < 6; ++a) b[a] = w_scale * (jw[a] - w_mean * jsum[a]) - jt[a];
      if (!solve6(H, b, dp)) {
        ok = false;
        break;
      }
      // M <- M o D(dp)^-1, D = [[1 + p0, p2, p4], [p1, 1 + p3, p5]]
      const double a = 1 + dp[0], bb = dp[2], c = dp[1], d = 1 + dp[3], det = a * d - bb * c;
      const double ia = d / det, ib = -bb / det, ic = -c / det, id = a / det;
      const double itx = -(ia * dp[4] + ib * dp[5]), ity = -(ic * dp[4] + id * dp[5]);
      const double m0 = M[0] * ia + M[1] * ic, m1 = M[0] * ib + M[1] * id, m2 = M[0] * itx + M[1] * ity + M[2];
      const double m3 = M[3] * ia + M[4] * ic, m4 = M[3] * ib + M[4] * id, m5 = M[3] * itx + M[4] * ity + M[5];
      M[0] = m0, M[1] = m1, M[2] = m2, M[3] = m3, M[4] = m4, M[5] = m5;
      for (int k = 0; k < 6; ++k) ok = ok && std::isfinite(M[k]);
    }
    if (!ok) continue;
    warp(w_mean, w_scale);
    double sum = 0;
    for (int k = 0; k < pixels; ++k) {
      const double e = (warped[k] - w_mean) * w_scale - t[k];
      sum += e * e;
    }
    residual[i] = std::sqrt(sum / pixels);
  }
}

}  // namespace slam
