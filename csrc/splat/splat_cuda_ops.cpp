// CUDA op wrappers of the Gaussian-splatting family: checks, output allocation
// (outputs in the input dtype; the backward's atomic accumulators in the opmath
// dtype), device guard; the kernels are in splat_cuda.cu and splat_raster_cuda.cu.
// Compiled by the host compiler (only when the CUDA kernels are built), so nvcc
// never sees the ATen operator headers.
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>

#include "splat/splat_checks.h"
#include "splat/splat_cuda.h"

namespace pyflowops {
namespace splat {
namespace {

cuda::TileGrid make_grid(int64_t width, int64_t height, int64_t tile_size, const char* op) {
  cuda::TileGrid g{width, height, tile_size, (width + tile_size - 1) / tile_size,
                   (height + tile_size - 1) / tile_size};
  // Tile ids are int32 (and the grid's x dimension), offsets [T+1] int32.
  TORCH_CHECK(g.count() < (int64_t(1) << 31) - 1, op, ": ", g.count(),
              " tiles do not fit int32; use larger tiles");
  return g;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> project_gaussians_cuda(
    const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
    const at::Tensor& viewmat, const at::Tensor& K, int64_t width, int64_t height, double near,
    double far) {
  constexpr const char* op = "project_gaussians";
  const int64_t n = check_project_inputs(means, quats, scales, viewmat, K, op);
  check_image_size(width, height, op);
  const c10::cuda::CUDAGuard guard(means.device());
  at::Tensor means2d = at::empty({n, 2}, means.options());
  at::Tensor conics = at::empty({n, 3}, means.options());
  at::Tensor depths = at::empty({n}, means.options());
  at::Tensor radii = at::empty({n}, means.options().dtype(at::kInt));
  cuda::project_forward(means, quats, scales, viewmat, K, width, height, near, far, means2d,
                        conics, depths, radii);
  return {means2d, conics, depths, radii};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> project_gaussians_backward_cuda(
    const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
    const at::Tensor& viewmat, const at::Tensor& K, const at::Tensor& radii,
    const at::Tensor& grad_means2d, const at::Tensor& grad_conics, const at::Tensor& grad_depths) {
  constexpr const char* op = "project_gaussians_backward";
  const int64_t n = check_project_inputs(means, quats, scales, viewmat, K, op);
  check_project_backward_inputs(means, radii, grad_means2d, grad_conics, grad_depths, op);
  const c10::cuda::CUDAGuard guard(means.device());
  at::Tensor g_means = at::empty({n, 3}, means.options());
  at::Tensor g_quats = at::empty({n, 4}, means.options());
  at::Tensor g_scales = at::empty({n, 3}, means.options());
  cuda::project_backward(means, quats, scales, viewmat, K, radii, grad_means2d, grad_conics,
                         grad_depths, g_means, g_quats, g_scales);
  return {g_means, g_quats, g_scales};
}

at::Tensor bg_or_undefined(const c10::optional<at::Tensor>& background) {
  return background.has_value() ? *background : at::Tensor();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
rasterize_gaussians_cuda(const at::Tensor& means2d, const at::Tensor& conics,
                         const at::Tensor& opacities, const at::Tensor& features,
                         const at::Tensor& depths, const at::Tensor& radii, int64_t width,
                         int64_t height, const c10::optional<at::Tensor>& background,
                         int64_t tile_size) {
  constexpr const char* op = "rasterize_gaussians";
  const int64_t C = check_rasterize_inputs(means2d, conics, opacities, features, depths, radii,
                                           background, width, height, tile_size, op);
  const cuda::TileGrid grid = make_grid(width, height, tile_size, op);
  const c10::cuda::CUDAGuard guard(means2d.device());
  const int64_t n = means2d.size(0);
  const auto int_opts = means2d.options().dtype(at::kInt);
  // Binning: Gaussians in depth order [N], inclusive ends of their instance ranges [N].
  at::Tensor order = at::empty({n}, int_opts);
  at::Tensor ends = at::empty({n}, means2d.options().dtype(at::kLong));
  const int64_t m = cuda::bin_count(means2d, depths, radii, grid, order, ends);
  TORCH_CHECK(m < (int64_t(1) << 31), op, ": ", m,
              " (tile, Gaussian) instances do not fit int32; use larger tiles");
  at::Tensor ids = at::empty({m}, int_opts);
  at::Tensor offsets = at::empty({grid.count() + 1}, int_opts);
  cuda::bin_fill(means2d, radii, grid, order, ends, ids, offsets);

  at::Tensor image = at::empty({height, width, C}, means2d.options());
  at::Tensor alpha = at::empty({height, width, 1}, means2d.options());
  at::Tensor depth = at::empty({height, width, 1}, means2d.options());
  at::Tensor last = at::empty({height, width}, int_opts);
  cuda::rasterize_forward(means2d, conics, opacities, features, depths, radii,
                          bg_or_undefined(background), grid, offsets, ids, image, alpha, depth,
                          last);
  return {image, alpha, depth, offsets, ids, last};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
rasterize_gaussians_backward_cuda(
    const at::Tensor& grad_image, const at::Tensor& grad_alpha, const at::Tensor& grad_depth,
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& opacities,
    const at::Tensor& features, const at::Tensor& depths, const at::Tensor& radii,
    const c10::optional<at::Tensor>& background, const at::Tensor& alpha,
    const at::Tensor& tile_offsets, const at::Tensor& gaussian_ids, const at::Tensor& last,
    int64_t width, int64_t height, int64_t tile_size) {
  constexpr const char* op = "rasterize_gaussians_backward";
  const int64_t C = check_rasterize_inputs(means2d, conics, opacities, features, depths, radii,
                                           background, width, height, tile_size, op);
  check_rasterize_backward_inputs(means2d, grad_image, grad_alpha, grad_depth, alpha,
                                  tile_offsets, gaussian_ids, last, C, width, height, tile_size,
                                  op);
  // Unlike the CPU op, the saved binning is not validated (that would read it back to the
  // host); the kernel clamps `last` to its tile's list, ids are trusted.
  const cuda::TileGrid grid = make_grid(width, height, tile_size, op);
  const c10::cuda::CUDAGuard guard(means2d.device());
  const int64_t n = means2d.size(0);
  // Atomic accumulators in opmath: half/bfloat16 sums would round at every add.
  const auto acc_opts = means2d.options().dtype(at::toOpMathType(means2d.scalar_type()));
  at::Tensor g_means2d = at::zeros({n, 2}, acc_opts);
  at::Tensor g_conics = at::zeros({n, 3}, acc_opts);
  at::Tensor g_opacities = at::zeros({n}, acc_opts);
  at::Tensor g_features = at::zeros({n, C}, acc_opts);
  at::Tensor g_depths = at::zeros({n}, acc_opts);
  cuda::rasterize_backward(grad_image, grad_alpha, grad_depth, means2d, conics, opacities,
                           features, depths, radii, bg_or_undefined(background), alpha, grid,
                           tile_offsets, gaussian_ids, last, g_means2d, g_conics, g_opacities,
                           g_features, g_depths);
  const auto dtype = means2d.scalar_type();
  return {g_means2d.to(dtype), g_conics.to(dtype), g_opacities.to(dtype), g_features.to(dtype),
          g_depths.to(dtype)};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyflowops, CUDA, m) {
  m.impl("project_gaussians", &project_gaussians_cuda);
  m.impl("project_gaussians_backward", &project_gaussians_backward_cuda);
  m.impl("rasterize_gaussians", &rasterize_gaussians_cuda);
  m.impl("rasterize_gaussians_backward", &rasterize_gaussians_backward_cuda);
}

}  // namespace splat
}  // namespace pyflowops
