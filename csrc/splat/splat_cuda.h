// Launchers of the CUDA Gaussian-splatting kernels (splat_project_cuda.cu,
// splat_raster_cuda.cu), called by the op wrappers in splat_cuda_ops.cpp. Inputs are
// contiguous, on one CUDA device, checked and allocated by the caller; launches go on
// the current stream. Semantics: docs/splat_kernel_contract.md.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace pyflowops {
namespace splat {
namespace cuda {

// means [N,3], quats [N,4], scales [N,3], viewmat [4,4], K [3,3] -> means2d [N,2],
// conics [N,3], depths [N] (input dtype), radii [N] int32.
void project_forward(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                     const at::Tensor& viewmat, const at::Tensor& K, int64_t width,
                     int64_t height, double near_plane, double far_plane,
                     const at::Tensor& means2d, const at::Tensor& conics,
                     const at::Tensor& depths, const at::Tensor& radii);

// radii [N] int32, grad_means2d [N,2], grad_conics [N,3], grad_depths [N] ->
// grad_means [N,3], grad_quats [N,4], grad_scales [N,3] (zero where radius is 0).
void project_backward(const at::Tensor& means, const at::Tensor& quats,
                      const at::Tensor& scales, const at::Tensor& viewmat, const at::Tensor& K,
                      const at::Tensor& radii, const at::Tensor& grad_means2d,
                      const at::Tensor& grad_conics, const at::Tensor& grad_depths,
                      const at::Tensor& grad_means, const at::Tensor& grad_quats,
                      const at::Tensor& grad_scales);

// Tile grid of the binning: T = tiles_x * tiles_y tiles of tile_size^2 pixels.
struct TileGrid {
  int64_t width, height, tile_size, tiles_x, tiles_y;
  int64_t count() const { return tiles_x * tiles_y; }
};

// Binning, first half: order [N] int32 = the Gaussians sorted by depth (stable, so
// ties by index), ends [N] int64 = inclusive prefix sum of their tile counts in that
// order. Returns M = the number of (tile, Gaussian) instances (synchronizes the stream
// to read it).
int64_t bin_count(const at::Tensor& means2d, const at::Tensor& depths, const at::Tensor& radii,
                  const TileGrid& grid, const at::Tensor& order, const at::Tensor& ends);

// Binning, second half (M < 2^31): gaussian_ids [M] int32 sorted by (tile, depth,
// index) and tile_offsets [T+1] int32, its CSR offsets.
void bin_fill(const at::Tensor& means2d, const at::Tensor& radii, const TileGrid& grid,
              const at::Tensor& order, const at::Tensor& ends, const at::Tensor& gaussian_ids,
              const at::Tensor& tile_offsets);

// Gaussians means2d [N,2], conics [N,3], opacities [N], features [N,C], depths [N],
// radii [N] int32, background [C] (or undefined); binning tile_offsets [T+1],
// gaussian_ids [M] -> image [H,W,C], alpha [H,W,1], depth [H,W,1] (input dtype),
// last [H,W] int32.
void rasterize_forward(const at::Tensor& means2d, const at::Tensor& conics,
                       const at::Tensor& opacities, const at::Tensor& features,
                       const at::Tensor& depths, const at::Tensor& radii,
                       const at::Tensor& background, const TileGrid& grid,
                       const at::Tensor& tile_offsets, const at::Tensor& gaussian_ids,
                       const at::Tensor& image, const at::Tensor& alpha,
                       const at::Tensor& depth, const at::Tensor& last);

// grad_image [H,W,C], grad_alpha [H,W,1], grad_depth [H,W,1], alpha [H,W,1], last [H,W]
// plus the forward's inputs and binning -> the per-Gaussian gradients, ADDED (atomics)
// into zero-initialized opmath-dtype buffers: grad_means2d [N,2], grad_conics [N,3],
// grad_opacities [N], grad_features [N,C], grad_depths [N].
void rasterize_backward(const at::Tensor& grad_image, const at::Tensor& grad_alpha,
                        const at::Tensor& grad_depth, const at::Tensor& means2d,
                        const at::Tensor& conics, const at::Tensor& opacities,
                        const at::Tensor& features, const at::Tensor& depths,
                        const at::Tensor& radii, const at::Tensor& background,
                        const at::Tensor& alpha, const TileGrid& grid,
                        const at::Tensor& tile_offsets, const at::Tensor& gaussian_ids,
                        const at::Tensor& last, const at::Tensor& grad_means2d,
                        const at::Tensor& grad_conics, const at::Tensor& grad_opacities,
                        const at::Tensor& grad_features, const at::Tensor& grad_depths);

}  // namespace cuda
}  // namespace splat
}  // namespace pyflowops
