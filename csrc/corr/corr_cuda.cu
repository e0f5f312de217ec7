// CUDA kernels of the correlation lookups over a materialized pyramid and their
// launchers (the on-the-fly kernels are tiled, in corr_onthefly_cuda.cu).
//
// Each kernel is a grid-stride loop over the same per-query helpers of
// corr_math.h that the CPU kernels call (so the CPU tests check this math):
//   lookup:             one thread per (query, level);
//   lookup backward:    one thread per query (it sums grad_coords over levels;
//                       each query owns its maps, so the corner stores need no atomics).
// Thread n of the (query, level) kernel handles level l of pixel ij with
// n = (b * L + l) * HW + ij, so neighbouring threads read coords and write the
// output with stride 1. Patches live in a fixed local array (kMaxPatch).
//
// No ATen ops here (allocation, checks and dtype conversion are in
// corr_cuda_ops.cpp), which keeps nvcc's include set small.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "corr/corr_cuda.h"
#include "corr/corr_cuda_levels.h"
#include "corr/corr_dispatch.h"  // dispatch_coords (never corr_checks.h in nvcc code)
#include "corr/corr_math.h"

namespace pyflowops {
namespace corr {
namespace cuda {
namespace {

constexpr int kThreads = 128;

// Grid for a grid-stride loop over n items (the loop makes any n correct).
inline unsigned int num_blocks(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 1 << 30));
}

#define PFO_GRID_STRIDE_LOOP(i, n)                                                    \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// ---- corr_lookup ----------------------------------------------------------------

template <typename scalar_t, typename coord_t>
__global__ void lookup_forward_kernel(LevelPtrs<const scalar_t> lv,
                                      const coord_t* __restrict__ coords,
                                      scalar_t* __restrict__ out, int64_t B, int64_t HW, int r) {
  using acc_t = at::opmath_type<scalar_t>;
  const int L = lv.num;
  const int64_t K = (2 * r + 1) * (2 * r + 1);
  acc_t P[kMaxPatch];
  PFO_GRID_STRIDE_LOOP(n, B * L * HW) {
    const int64_t ij = n % HW;
    const int64_t bl = n / HW;
    const int l = static_cast<int>(bl % L);
    const int64_t b = bl / L;
    const int64_t q = b * HW + ij;
    const acc_t x = static_cast<acc_t>(coords[(2 * b) * HW + ij]);
    const acc_t y = static_cast<acc_t>(coords[(2 * b + 1) * HW + ij]);
    const Bilinear<acc_t> s = bilinear_setup(x, y, level_scale<acc_t>(l));
    const int64_t h = lv.h[l], w = lv.w[l];
    fill_patch(lv.data[l] + q * h * w, h, w, s, r, P);
    window_forward(s, P, r, out + bl * K * HW + ij, HW);
  }
}

template <typename scalar_t, typename coord_t>
__global__ void lookup_backward_kernel(LevelPtrs<const scalar_t> lv,
                                       const coord_t* __restrict__ coords,
                                       const scalar_t* __restrict__ grad_out,
                                       LevelPtrs<scalar_t> grad_lv, bool pyramid_grad,
                                       coord_t* __restrict__ grad_coords, int64_t B, int64_t HW,
                                       int r) {
  using acc_t = at::opmath_type<scalar_t>;
  const int L = lv.num;
  const int64_t K = (2 * r + 1) * (2 * r + 1);
  acc_t P[kMaxPatch];
  acc_t coef[kMaxPatch];
  PFO_GRID_STRIDE_LOOP(q, B * HW) {
    const int64_t b = q / HW, ij = q - b * HW;
    const acc_t x = static_cast<acc_t>(coords[(2 * b) * HW + ij]);
    const acc_t y = static_cast<acc_t>(coords[(2 * b + 1) * HW + ij]);
    acc_t gx = acc_t(0), gy = acc_t(0);
    for (int l = 0; l < L; ++l) {
      const acc_t scale = level_scale<acc_t>(l);
      const Bilinear<acc_t> s = bilinear_setup(x, y, scale);
      const int64_t h = lv.h[l], w = lv.w[l];
      const scalar_t* g = grad_out + (b * L + l) * K * HW + ij;
      fill_patch(lv.data[l] + q * h * w, h, w, s, r, P);
      acc_t dx, dy;
      window_grad_coords(s, P, r, g, HW, &dx, &dy);
      gx += scale * dx;
      gy += scale * dy;
      if (pyramid_grad) {  // maps are zero-filled by the caller; this query owns its map
        window_coef(s, r, g, HW, coef);
        store_patch(s, r, coef, grad_lv.data[l] + q * h * w, h, w);
      }
    }
    grad_coords[(2 * b) * HW + ij] = static_cast<coord_t>(gx);
    grad_coords[(2 * b + 1) * HW + ij] = static_cast<coord_t>(gy);
  }
}

}  // namespace

void lookup_forward(const std::vector<at::Tensor>& pyramid, const at::Tensor& coords,
                    int64_t radius, const at::Tensor& out) {
  const int64_t B = coords.size(0), HW = coords.size(2) * coords.size(3);
  const int64_t n = B * HW * static_cast<int64_t>(pyramid.size());
  if (n == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pyramid[0].scalar_type(), "corr_lookup_cuda", [&] {
    dispatch_coords<scalar_t>(coords, [&](auto tag) {
      using coord_t = decltype(tag);
      lookup_forward_kernel<scalar_t, coord_t><<<num_blocks(n), kThreads, 0, stream>>>(
          level_ptrs<const scalar_t>(pyramid, 3, 4), coords.const_data_ptr<coord_t>(),
          out.mutable_data_ptr<scalar_t>(), B, HW, static_cast<int>(radius));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void lookup_backward(const at::Tensor& grad_out, const std::vector<at::Tensor>& pyramid,
                     const at::Tensor& coords, int64_t radius,
                     const std::vector<at::Tensor>& grad_pyramid, const at::Tensor& grad_coords) {
  const int64_t B = coords.size(0), HW = coords.size(2) * coords.size(3);
  if (B * HW == 0) return;
  const bool pyramid_grad = !grad_pyramid.empty();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pyramid[0].scalar_type(), "corr_lookup_backward_cuda", [&] {
    const LevelPtrs<scalar_t> grad_ptrs =
        pyramid_grad ? level_ptrs<scalar_t>(grad_pyramid, 3, 4) : LevelPtrs<scalar_t>{};
    dispatch_coords<scalar_t>(coords, [&](auto tag) {
      using coord_t = decltype(tag);
      lookup_backward_kernel<scalar_t, coord_t><<<num_blocks(B * HW), kThreads, 0, stream>>>(
          level_ptrs<const scalar_t>(pyramid, 3, 4), coords.const_data_ptr<coord_t>(),
          grad_out.const_data_ptr<scalar_t>(), grad_ptrs, pyramid_grad,
          grad_coords.mutable_data_ptr<coord_t>(), B, HW, static_cast<int>(radius));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

}  // namespace cuda
}  // namespace corr
}  // namespace pyflowops
