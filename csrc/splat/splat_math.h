// Per-Gaussian and per-pixel math of the Gaussian-splatting family, shared by the
// CPU kernels (splat_cpu.cpp) and the CUDA kernels (splat_cuda.cu).
// Semantics: docs/splat_kernel_contract.md (step numbers below are its steps).
//
// Every function is templated on the opmath type T (float or double) and has its
// hand-derived VJP next to it. Forward helpers write their outputs; VJP helpers
// recompute what they need of the forward and also write (never accumulate).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/host_device.h"
#include "common/scalar_math.h"

namespace pyflowops {
namespace splat {

// ---- constants of the contract ---------------------------------------------------
// Kept as double and converted to T at the use (T(kAlphaMin)), as torch compares a
// float tensor with a Python float: the double rounded once to float.
constexpr double kCovBlur = 0.3;           // added to the 2D covariance's diagonal
constexpr double kAlphaMax = 0.999;        // alpha = min(kAlphaMax, o exp(-sigma))
constexpr double kAlphaMin = 1.0 / 255.0;  // fainter contributions are skipped
constexpr double kTransmittanceMin = 1e-4; // stop before T would fall below this
constexpr double kSigmaRange = 3.0;        // radius = ceil(3 sqrt(lambda_max))
constexpr int32_t kRadiusMax = 1 << 30;    // radius saturation (fits int32)

// ---- camera -----------------------------------------------------------------------

// World-to-camera rotation R (row-major 3x3 = viewmat[:3,:3]), translation t
// (viewmat[:3,3]) and the pinhole intrinsics (K[0,0], K[1,1], K[0,2], K[1,2]).
template <typename T>
struct Camera {
  T R[9];
  T t[3];
  T fx, fy, cx, cy;
};

// viewmat: contiguous [4,4]; K: contiguous [3,3] (other entries of K ignored).
template <typename T, typename scalar_t>
PFO_HOST_DEVICE inline Camera<T> load_camera(const scalar_t* viewmat, const scalar_t* K) {
  Camera<T> cam;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) cam.R[3 * i + j] = static_cast<T>(viewmat[4 * i + j]);
    cam.t[i] = static_cast<T>(viewmat[4 * i + 3]);
  }
  cam.fx = static_cast<T>(K[0]);
  cam.fy = static_cast<T>(K[4]);
  cam.cx = static_cast<T>(K[2]);
  cam.cy = static_cast<T>(K[5]);
  return cam;
}

// ---- projection (steps 1-7) -----------------------------------------------------

// Rq of the normalized quaternion q = quat / |quat| (step 1), row-major; also q.
template <typename T>
PFO_HOST_DEVICE inline void quat_to_rotmat(const T* quat, T* q, T* Rq) {
  const T n = pfo_sqrt(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] +
                         quat[3] * quat[3]);
  for (int k = 0; k < 4; ++k) q[k] = quat[k] / n;
  const T w = q[0], x = q[1], y = q[2], z = q[3];
  Rq[0] = T(1) - T(2) * (y * y + z * z);
  Rq[1] = T(2) * (x * y - w * z);
  Rq[2] = T(2) * (x * z + w * y);
  Rq[3] = T(2) * (x * y + w * z);
  Rq[4] = T(1) - T(2) * (x * x + z * z);
  Rq[5] = T(2) * (y * z - w * x);
  Rq[6] = T(2) * (x * z - w * y);
  Rq[7] = T(2) * (y * z + w * x);
  Rq[8] = T(1) - T(2) * (x * x + y * y);
}

// Everything steps 1-6 compute for one Gaussian (the VJP reuses it).
template <typename T>
struct Projection {
  T q[4];      // normalized quaternion
  T Rq[9];     // its rotation
  T M[9];      // Rq diag(s): Sigma = M M^T
  T t[3];      // camera point (t[2] = depth z)
  T A[6];      // J W (2x3, row-major)
  T cov[3];    // c00, c01, c11 of J W Sigma W^T J^T + 0.3 I
  T det;       // c00 c11 - c01^2
};

template <typename T>
PFO_HOST_DEVICE inline void project_core(const T* mean, const T* quat, const T* scale,
                                         const Camera<T>& cam, Projection<T>& p) {
  quat_to_rotmat(quat, p.q, p.Rq);
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 3; ++k) p.M[3 * i + k] = p.Rq[3 * i + k] * scale[k];
  for (int i = 0; i < 3; ++i)
    p.t[i] = cam.R[3 * i] * mean[0] + cam.R[3 * i + 1] * mean[1] + cam.R[3 * i + 2] * mean[2] +
             cam.t[i];
  const T z = p.t[2], z2 = z * z;
  // J = [[fx/z, 0, j02], [0, fy/z, j12]]; A = J W.
  const T j00 = cam.fx / z, j02 = -cam.fx * p.t[0] / z2;
  const T j11 = cam.fy / z, j12 = -cam.fy * p.t[1] / z2;
  for (int k = 0; k < 3; ++k) {
    p.A[k] = j00 * cam.R[k] + j02 * cam.R[6 + k];
    p.A[3 + k] = j11 * cam.R[3 + k] + j12 * cam.R[6 + k];
  }
  // B = A M (2x3): cov = B B^T + 0.3 I.
  T B[6];
  for (int r = 0; r < 2; ++r)
    for (int k = 0; k < 3; ++k)
      B[3 * r + k] = p.A[3 * r] * p.M[k] + p.A[3 * r + 1] * p.M[3 + k] + p.A[3 * r + 2] * p.M[6 + k];
  p.cov[0] = B[0] * B[0] + B[1] * B[1] + B[2] * B[2] + T(kCovBlur);
  p.cov[1] = B[0] * B[3] + B[1] * B[4] + B[2] * B[5];
  p.cov[2] = B[3] * B[3] + B[4] * B[4] + B[5] * B[5] + T(kCovBlur);
  p.det = p.cov[0] * p.cov[2] - p.cov[1] * p.cov[1];
}

// Step 7: ceil(3 sqrt(lambda_max)) saturated at 2^30 (NaN saturates too).
template <typename T>
PFO_HOST_DEVICE inline int32_t cov_radius(T c00, T c11, T det) {
  const T mid = T(0.5) * (c00 + c11);
  const T disc = mid * mid - det;
  const T lambda_max = mid + pfo_sqrt(disc > T(0) ? disc : T(0));
  const T r = pfo_ceil(T(kSigmaRange) * pfo_sqrt(lambda_max));
  return r < T(kRadiusMax) ? static_cast<int32_t>(r) : kRadiusMax;
}

// Steps 1-8 for one Gaussian: mean [3], quat [4] (w, x, y, z), scale [3] ->
// mean2d [2], conic [3], depth, radius (0 = culled: mean2d and conic 0, depth z).
template <typename T>
PFO_HOST_DEVICE inline void project_one(const T* mean, const T* quat, const T* scale,
                                        const Camera<T>& cam, int64_t width, int64_t height,
                                        T near_plane, T far_plane, T* mean2d, T* conic, T* depth,
                                        int32_t* radius) {
  Projection<T> p;
  project_core(mean, quat, scale, cam, p);
  const T z = p.t[2];
  *depth = z;
  mean2d[0] = mean2d[1] = T(0);
  conic[0] = conic[1] = conic[2] = T(0);
  *radius = 0;
  if (!(z >= near_plane && z <= far_plane) || !(p.det > T(0))) return;
  const int32_t r = cov_radius(p.cov[0], p.cov[2], p.det);
  const T mx = cam.fx * p.t[0] / z + cam.cx, my = cam.fy * p.t[1] / z + cam.cy;
  const T rf = static_cast<T>(r);
  if (mx + rf < T(0.5) || mx - rf > static_cast<T>(width) - T(0.5) || my + rf < T(0.5) ||
      my - rf > static_cast<T>(height) - T(0.5))
    return;
  mean2d[0] = mx;
  mean2d[1] = my;
  conic[0] = p.cov[2] / p.det;
  conic[1] = -p.cov[1] / p.det;
  conic[2] = p.cov[0] / p.det;
  *radius = r;
}

// VJP of steps 1-6 (call only for radius > 0): g_mean2d [2], g_conic [3], g_depth ->
// g_mean [3], g_quat [4], g_scale [3].
template <typename T>
PFO_HOST_DEVICE inline void project_one_vjp(const T* mean, const T* quat, const T* scale,
                                            const Camera<T>& cam, const T* g_mean2d,
                                            const T* g_conic, T g_depth, T* g_mean, T* g_quat,
                                            T* g_scale) {
  Projection<T> p;
  project_core(mean, quat, scale, cam, p);
  const T z = p.t[2], z2 = z * z;
  const T tx = p.t[0], ty = p.t[1];

  // conic = (c11, -c01, c00) / det -> cov. With (a, b, c) the conic:
  const T a = p.cov[2] / p.det, b = -p.cov[1] / p.det, c = p.cov[0] / p.det;
  const T g0 = g_conic[0], g1 = g_conic[1], g2 = g_conic[2];
  const T g_c00 = -(g0 * a * a + g1 * a * b + g2 * b * b);
  const T g_c11 = -(g0 * b * b + g1 * b * c + g2 * c * c);
  const T g_c01 = -(T(2) * g0 * a * b + g1 * (a * c + b * b) + T(2) * g2 * b * c);
  // Symmetric gradient G of the 2x2 cov = B B^T (B = A M): dB = 2 G B, with
  // G = [[g_c00, g_c01/2], [g_c01/2, g_c11]].
  const T G00 = g_c00, G01 = T(0.5) * g_c01, G11 = g_c11;
  T B[6];
  for (int r = 0; r < 2; ++r)
    for (int k = 0; k < 3; ++k)
      B[3 * r + k] = p.A[3 * r] * p.M[k] + p.A[3 * r + 1] * p.M[3 + k] + p.A[3 * r + 2] * p.M[6 + k];
  T gB[6];
  for (int k = 0; k < 3; ++k) {
    gB[k] = T(2) * (G00 * B[k] + G01 * B[3 + k]);
    gB[3 + k] = T(2) * (G01 * B[k] + G11 * B[3 + k]);
  }
  // B = A M: gA = gB M^T, gM = A^T gB.
  T gA[6], gM[9];
  for (int r = 0; r < 2; ++r)
    for (int i = 0; i < 3; ++i)
      gA[3 * r + i] = gB[3 * r] * p.M[3 * i] + gB[3 * r + 1] * p.M[3 * i + 1] +
                      gB[3 * r + 2] * p.M[3 * i + 2];
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 3; ++k) gM[3 * i + k] = p.A[i] * gB[k] + p.A[3 + i] * gB[3 + k];

  // A = J W: gJ = gA W^T (only the four nonzero entries of J matter).
  T gJ[6];
  for (int r = 0; r < 2; ++r)
    for (int i = 0; i < 3; ++i)
      gJ[3 * r + i] = gA[3 * r] * cam.R[3 * i] + gA[3 * r + 1] * cam.R[3 * i + 1] +
                      gA[3 * r + 2] * cam.R[3 * i + 2];
  // J00 = fx/z, J02 = -fx tx/z^2, J11 = fy/z, J12 = -fy ty/z^2; mean2d = (fx tx/z + cx, fy ty/z + cy).
  const T z3 = z2 * z;
  T gt[3];
  gt[0] = -cam.fx / z2 * gJ[2] + cam.fx / z * g_mean2d[0];
  gt[1] = -cam.fy / z2 * gJ[5] + cam.fy / z * g_mean2d[1];
  gt[2] = -cam.fx / z2 * gJ[0] - cam.fy / z2 * gJ[4] + T(2) * cam.fx * tx / z3 * gJ[2] +
          T(2) * cam.fy * ty / z3 * gJ[5] - cam.fx * tx / z2 * g_mean2d[0] -
          cam.fy * ty / z2 * g_mean2d[1] + g_depth;
  // t = W mean + T: g_mean = W^T gt.
  for (int k = 0; k < 3; ++k)
    g_mean[k] = cam.R[k] * gt[0] + cam.R[3 + k] * gt[1] + cam.R[6 + k] * gt[2];

  // M = Rq diag(s): gRq = gM diag(s), g_s = sum_i gM[i][k] Rq[i][k].
  T gR[9];
  for (int k = 0; k < 3; ++k) {
    g_scale[k] = gM[k] * p.Rq[k] + gM[3 + k] * p.Rq[3 + k] + gM[6 + k] * p.Rq[6 + k];
    for (int i = 0; i < 3; ++i) gR[3 * i + k] = gM[3 * i + k] * scale[k];
  }
  // Rq(q) -> gq (q normalized), then through q = quat / |quat|.
  const T w = p.q[0], x = p.q[1], y = p.q[2], zq = p.q[3];
  T gq[4];
  gq[0] = T(2) * (-zq * gR[1] + y * gR[2] + zq * gR[3] - x * gR[5] - y * gR[6] + x * gR[7]);
  gq[1] = T(2) * (y * gR[1] + zq * gR[2] + y * gR[3] - T(2) * x * gR[4] - w * gR[5] +
                  zq * gR[6] + w * gR[7] - T(2) * x * gR[8]);
  gq[2] = T(2) * (-T(2) * y * gR[0] + x * gR[1] + w * gR[2] + x * gR[3] + zq * gR[5] -
                  w * gR[6] + zq * gR[7] - T(2) * y * gR[8]);
  gq[3] = T(2) * (-T(2) * zq * gR[0] - w * gR[1] + x * gR[2] + w * gR[3] - T(2) * zq * gR[4] +
                  y * gR[5] + x * gR[6] + y * gR[7]);
  const T n = pfo_sqrt(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] +
                         quat[3] * quat[3]);
  const T dot = gq[0] * p.q[0] + gq[1] * p.q[1] + gq[2] * p.q[2] + gq[3] * p.q[3];
  for (int k = 0; k < 4; ++k) g_quat[k] = (gq[k] - p.q[k] * dot) / n;
}

// ---- binning ----------------------------------------------------------------------

// Half-open tile ranges [tx0, tx1) x [ty0, ty1) of the superset pixel box
// cols [floor(mx - r - 0.5), ceil(mx + r - 0.5)], rows likewise, clamped to the
// image (empty, tx0 == tx1 == 0 etc., when it misses the image or radius <= 0).
// NaN centers give the whole image (the per-pixel test then rejects every pixel).
template <typename T>
PFO_HOST_DEVICE inline void tile_bounds(T mx, T my, int32_t radius, int64_t width,
                                        int64_t height, int64_t tile_size, int64_t* tx0,
                                        int64_t* tx1, int64_t* ty0, int64_t* ty1) {
  *tx0 = *tx1 = *ty0 = *ty1 = 0;
  if (radius <= 0) return;
  const T r = static_cast<T>(radius);
  const T w_last = static_cast<T>(width - 1), h_last = static_cast<T>(height - 1);
  T c0 = pfo_floor(mx - r - T(0.5)), c1 = pfo_ceil(mx + r - T(0.5));
  T r0 = pfo_floor(my - r - T(0.5)), r1 = pfo_ceil(my + r - T(0.5));
  if (c1 < T(0) || c0 > w_last || r1 < T(0) || r0 > h_last) return;
  c0 = c0 > T(0) ? c0 : T(0);
  r0 = r0 > T(0) ? r0 : T(0);
  c1 = c1 < w_last ? c1 : w_last;
  r1 = r1 < h_last ? r1 : h_last;
  *tx0 = static_cast<int64_t>(c0) / tile_size;
  *tx1 = static_cast<int64_t>(c1) / tile_size + 1;
  *ty0 = static_cast<int64_t>(r0) / tile_size;
  *ty1 = static_cast<int64_t>(r1) / tile_size + 1;
}

// ---- per pixel ----------------------------------------------------------------------

// What the per-pixel loop of one (pixel, Gaussian) pair computes.
template <typename T>
struct PixelHit {
  T dx, dy;      // p - mean2d
  T e;           // exp(-sigma)
  T alpha;       // min(0.999, o e)
  bool clamped;  // o e >= 0.999: alpha is a constant (no gradient)
};

// The radius test, sigma, and the sigma < 0 and alpha < 1/255 skips for the pixel
// center (px, py) = (j + 0.5, i + 0.5). false: the pair is skipped; else *hit holds
// alpha (the caller does the early stop on T (1 - alpha) < 1e-4).
template <typename T>
PFO_HOST_DEVICE inline bool pixel_alpha(T px, T py, T mx, T my, T r, T ca, T cb, T cc,
                                        T opacity, PixelHit<T>* hit) {
  const T dx = px - mx, dy = py - my;
  if (!(pfo_abs(dx) <= r && pfo_abs(dy) <= r)) return false;
  const T sigma = T(0.5) * (ca * dx * dx + cc * dy * dy) + cb * dx * dy;
  if (sigma < T(0)) return false;
  const T e = pfo_exp(-sigma);
  const T raw = opacity * e;
  const bool clamped = !(raw < T(kAlphaMax));
  const T alpha = clamped ? T(kAlphaMax) : raw;
  if (alpha < T(kAlphaMin)) return false;
  hit->dx = dx;
  hit->dy = dy;
  hit->e = e;
  hit->alpha = alpha;
  hit->clamped = clamped;
  return true;
}

// VJP of pixel_alpha's alpha: g_alpha -> g_mean2d [2], g_conic [3], *g_opacity
// (all zero when clamped).
template <typename T>
PFO_HOST_DEVICE inline void pixel_alpha_vjp(const PixelHit<T>& hit, T ca, T cb, T cc, T g_alpha,
                                            T* g_mean2d, T* g_conic, T* g_opacity) {
  if (hit.clamped) {
    g_mean2d[0] = g_mean2d[1] = T(0);
    g_conic[0] = g_conic[1] = g_conic[2] = T(0);
    *g_opacity = T(0);
    return;
  }
  const T dx = hit.dx, dy = hit.dy;
  *g_opacity = g_alpha * hit.e;
  const T g_sigma = -g_alpha * hit.alpha;
  g_conic[0] = g_sigma * T(0.5) * dx * dx;
  g_conic[1] = g_sigma * dx * dy;
  g_conic[2] = g_sigma * T(0.5) * dy * dy;
  g_mean2d[0] = -g_sigma * (ca * dx + cb * dy);
  g_mean2d[1] = -g_sigma * (cb * dx + cc * dy);
}

}  // namespace splat
}  // namespace pyflowops
