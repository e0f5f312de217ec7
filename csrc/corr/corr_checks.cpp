// Definitions of corr_checks.h: the one translation unit (g++, never nvcc) that
// formats the correlation ops' argument errors.
#include "corr/corr_checks.h"

namespace pyflowops {
namespace corr {

void check_radius(int64_t radius, const char* op) {
  TORCH_CHECK(radius >= 0 && radius <= kMaxRadius, op, ": radius must be in [0, ", kMaxRadius,
              "], got ", radius);
}

void check_num_levels(size_t num_levels, const char* op, const char* name) {
  TORCH_CHECK(num_levels >= 1 && num_levels <= static_cast<size_t>(kMaxLevels), op, ": ", name,
              " must hold between 1 and ", kMaxLevels, " levels, got ", num_levels);
}

void check_coords(const at::Tensor& coords, const char* op) {
  check_dim(coords, 4, op, "coords");
  check_floating(coords, op, "coords");
  check_size(coords, 1, 2, op, "coords");
}

void check_coords_dtype(const at::Tensor& coords, const at::Tensor& maps, const char* maps_name,
                        const char* op) {
  TORCH_CHECK(maps.device() == coords.device(), op, ": ", maps_name, " is on ", maps.device(),
              " but coords is on ", coords.device());
  const bool low = maps.scalar_type() == at::kHalf || maps.scalar_type() == at::kBFloat16;
  TORCH_CHECK(coords.scalar_type() == maps.scalar_type() || (low && coords.scalar_type() == at::kFloat), op,
              ": coords has dtype ", coords.scalar_type(), " but ", maps_name, " has dtype ", maps.scalar_type(),
              " (coords take the maps' dtype, or float32 with float16/bfloat16 maps)");
}

void check_lookup_inputs(at::TensorList pyramid, const at::Tensor& coords, int64_t radius,
                         const char* op) {
  check_radius(radius, op);
  check_num_levels(pyramid.size(), op, "pyramid");
  check_coords(coords, op);
  check_coords_dtype(coords, pyramid[0], "pyramid[0]", op);
  for (const auto& level : pyramid) {
    check_dim(level, 5, op, "pyramid level");
    check_same_device_dtype(pyramid[0], "pyramid[0]", level, "pyramid level", op);
    TORCH_CHECK(level.size(0) == coords.size(0) && level.size(1) == coords.size(2) &&
                    level.size(2) == coords.size(3),
                op, ": pyramid levels must be [B, H, W, H_l, W_l] with B, H, W of coords ",
                coords.sizes(), ", got ", level.sizes());
  }
}

void check_onthefly_inputs(const at::Tensor& fmap1, at::TensorList fmap2_levels,
                           const at::Tensor& coords, int64_t radius, const char* op) {
  check_radius(radius, op);
  check_num_levels(fmap2_levels.size(), op, "fmap2_levels");
  check_coords(coords, op);
  check_dim(fmap1, 4, op, "fmap1");
  check_coords_dtype(coords, fmap1, "fmap1", op);
  TORCH_CHECK(fmap1.size(0) == coords.size(0) && fmap1.size(1) == coords.size(2) &&
                  fmap1.size(2) == coords.size(3),
              op, ": fmap1 must be [B, H, W, D] with B, H, W of coords ", coords.sizes(), ", got ",
              fmap1.sizes());
  for (const auto& level : fmap2_levels) {
    check_dim(level, 4, op, "fmap2 level");
    check_same_device_dtype(fmap1, "fmap1", level, "fmap2 level", op);
    TORCH_CHECK(level.size(0) == fmap1.size(0) && level.size(3) == fmap1.size(3), op,
                ": fmap2 levels must be [B, H_l, W_l, D] with B, D of fmap1 ", fmap1.sizes(),
                ", got ", level.sizes());
  }
}

void check_grad_out(const at::Tensor& grad_out, const at::Tensor& coords, const at::Tensor& maps,
                    int64_t num_levels, int64_t radius, const char* op) {
  check_dim(grad_out, 4, op, "grad_out");
  check_same_device_dtype(maps, "the maps", grad_out, "grad_out", op);
  const int64_t K = (2 * radius + 1) * (2 * radius + 1);
  check_shape(grad_out, {coords.size(0), num_levels * K, coords.size(2), coords.size(3)}, op,
              "grad_out");
}

}  // namespace corr
}  // namespace pyflowops
