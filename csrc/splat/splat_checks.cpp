// Definitions of splat_checks.h: the one translation unit (g++, never nvcc) that
// formats the splatting ops' argument errors.
#include "splat/splat_checks.h"

namespace pyflowops {
namespace splat {

void check_float_input(const at::Tensor& ref, const char* ref_name, const at::Tensor& t,
                       at::IntArrayRef shape, const char* op, const char* name) {
  check_defined(t, op, name);
  check_floating(t, op, name);
  check_same_device_dtype(ref, ref_name, t, name, op);
  check_shape(t, shape, op, name);
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

void check_int_input(const at::Tensor& ref, const char* ref_name, const at::Tensor& t,
                     at::IntArrayRef shape, const char* op, const char* name) {
  check_defined(t, op, name);
  TORCH_CHECK(t.scalar_type() == at::kInt, op, ": ", name, " must be int32, got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but ",
              ref_name, " is on ", ref.device());
  check_shape(t, shape, op, name);
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

void check_image_size(int64_t width, int64_t height, const char* op) {
  TORCH_CHECK(width >= 1 && height >= 1, op, ": width and height must be >= 1, got ", width,
              " x ", height);
  TORCH_CHECK(width <= (int64_t(1) << 30) && height <= (int64_t(1) << 30), op,
              ": width and height must be <= 2^30, got ", width, " x ", height);
}

void check_tile_size(int64_t tile_size, const char* op) {
  TORCH_CHECK(tile_size >= 4 && tile_size <= 64 && (tile_size & (tile_size - 1)) == 0, op,
              ": tile_size must be a power of two in [4, 64], got ", tile_size);
}

int64_t check_project_inputs(const at::Tensor& means, const at::Tensor& quats,
                             const at::Tensor& scales, const at::Tensor& viewmat,
                             const at::Tensor& K, const char* op) {
  check_dim(means, 2, op, "means");
  const int64_t n = means.size(0);
  check_float_input(means, "means", means, {n, 3}, op, "means");
  check_float_input(means, "means", quats, {n, 4}, op, "quats");
  check_float_input(means, "means", scales, {n, 3}, op, "scales");
  check_float_input(means, "means", viewmat, {4, 4}, op, "viewmat");
  check_float_input(means, "means", K, {3, 3}, op, "K");
  return n;
}

void check_project_backward_inputs(const at::Tensor& means, const at::Tensor& radii,
                                   const at::Tensor& grad_means2d,
                                   const at::Tensor& grad_conics,
                                   const at::Tensor& grad_depths, const char* op) {
  const int64_t n = means.size(0);
  check_int_input(means, "means", radii, {n}, op, "radii");
  check_float_input(means, "means", grad_means2d, {n, 2}, op, "grad_means2d");
  check_float_input(means, "means", grad_conics, {n, 3}, op, "grad_conics");
  check_float_input(means, "means", grad_depths, {n}, op, "grad_depths");
}

int64_t check_rasterize_inputs(const at::Tensor& means2d, const at::Tensor& conics,
                               const at::Tensor& opacities, const at::Tensor& features,
                               const at::Tensor& depths, const at::Tensor& radii,
                               const c10::optional<at::Tensor>& background,
                               int64_t width, int64_t height, int64_t tile_size,
                               const char* op) {
  check_dim(means2d, 2, op, "means2d");
  check_dim(features, 2, op, "features");
  const int64_t n = means2d.size(0), c = features.size(1);
  TORCH_CHECK(c >= 1, op, ": features must have at least one channel, got shape ",
              features.sizes());
  check_float_input(means2d, "means2d", means2d, {n, 2}, op, "means2d");
  check_float_input(means2d, "means2d", conics, {n, 3}, op, "conics");
  check_float_input(means2d, "means2d", opacities, {n}, op, "opacities");
  check_float_input(means2d, "means2d", features, {n, c}, op, "features");
  check_float_input(means2d, "means2d", depths, {n}, op, "depths");
  check_int_input(means2d, "means2d", radii, {n}, op, "radii");
  if (background.has_value())
    check_float_input(means2d, "means2d", *background, {c}, op, "background");
  check_image_size(width, height, op);
  check_tile_size(tile_size, op);
  TORCH_CHECK(n < (int64_t(1) << 31), op, ": at most 2^31 - 1 Gaussians, got ", n);
  return c;
}

void check_rasterize_backward_inputs(const at::Tensor& means2d,
                                     const at::Tensor& grad_image,
                                     const at::Tensor& grad_alpha,
                                     const at::Tensor& grad_depth, const at::Tensor& alpha,
                                     const at::Tensor& tile_offsets,
                                     const at::Tensor& gaussian_ids, const at::Tensor& last,
                                     int64_t channels, int64_t width, int64_t height,
                                     int64_t tile_size, const char* op) {
  check_float_input(means2d, "means2d", grad_image, {height, width, channels}, op, "grad_image");
  check_float_input(means2d, "means2d", grad_alpha, {height, width, 1}, op, "grad_alpha");
  check_float_input(means2d, "means2d", grad_depth, {height, width, 1}, op, "grad_depth");
  check_float_input(means2d, "means2d", alpha, {height, width, 1}, op, "alpha");
  check_int_input(means2d, "means2d", tile_offsets, {num_tiles(width, height, tile_size) + 1}, op,
                  "tile_offsets");
  check_dim(gaussian_ids, 1, op, "gaussian_ids");
  check_int_input(means2d, "means2d", gaussian_ids, {gaussian_ids.size(0)}, op, "gaussian_ids");
  check_int_input(means2d, "means2d", last, {height, width}, op, "last");
}

}  // namespace splat
}  // namespace pyflowops
