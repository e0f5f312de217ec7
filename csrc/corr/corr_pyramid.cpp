// corr_pyramid: the all-pairs correlation pyramid, CompositeImplicitAutograd.
//
// Made of ATen ops (one batched matmul, then a 2x2 average pool per level), so autograd,
// every device, meta/fake tensors and torch.compile work without a custom
// kernel. Same numbers as pyflowops/reference/corr.py corr_pyramid.
#include <ATen/core/Tensor.h>
#include <ATen/ops/avg_pool2d.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/unfold.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "common/checks.h"
#include "corr/corr_math.h"

namespace pyflowops {
namespace corr {
namespace {

// avg_pool2d's CUDA kernels put the N maps in a grid dimension capped at 65535, so a
// pyramid of more maps (B*H*W > 65535: 256^2 features, a 2048^2 image) fails there with
// "invalid argument" (RAFT's CorrBlock too). Past that, pool with unfold + mean: views and
// one reduction, no such limit. Below it avg_pool2d stays: about 3x faster on the CPU.
constexpr int64_t kMaxPoolMaps = 65535;

// [N, 1, h, w] -> [N, 1, h/2, w/2] (floor), the mean of each 2x2 block.
at::Tensor pool2x2(const at::Tensor& level) {
  if (level.sym_size(0).guard_int(__FILE__, __LINE__) <= kMaxPoolMaps) {
    return at::avg_pool2d(level, {2, 2}, {2, 2});
  }
  return level.unfold(2, 2, 2).unfold(3, 2, 2).mean({-1, -2});  // unfold drops an odd last row/column
}

// fmap1, fmap2: [B, D, H, W] -> num_levels tensors [B, H, W, H_l, W_l].
std::vector<at::Tensor> corr_pyramid(const at::Tensor& fmap1, const at::Tensor& fmap2,
                                     int64_t num_levels) {
  constexpr const char* op = "corr_pyramid";
  check_dim(fmap1, 4, op, "fmap1");
  check_dim(fmap2, 4, op, "fmap2");
  check_floating(fmap1, op, "fmap1");
  check_same_device_dtype(fmap1, "fmap1", fmap2, "fmap2", op);
  TORCH_CHECK(fmap2.sym_sizes().equals(fmap1.sym_sizes()), op,
              ": fmap1 and fmap2 must have the same shape, got ", fmap1.sym_sizes(), " and ",
              fmap2.sym_sizes());
  TORCH_CHECK(num_levels >= 1 && num_levels <= kMaxLevels, op, ": num_levels must be in [1, ",
              kMaxLevels, "], got ", num_levels);
  // SymInt sizes: under torch.compile with dynamic shapes this composite is
  // traced with symbolic sizes, where size() would throw.
  const c10::SymInt B = fmap1.sym_size(0), D = fmap1.sym_size(1);
  const c10::SymInt H = fmap1.sym_size(2), W = fmap1.sym_size(3);
  // Every level keeps at least one pixel (each level halves the map, floor).
  const int64_t min_side = int64_t(1) << (num_levels - 1);
  TORCH_SYM_CHECK(H.sym_ge(min_side), op, ": a feature map of height ", H,
                  " cannot make ", num_levels, " levels (each level halves it, floor; the last must keep 1 pixel)");
  TORCH_SYM_CHECK(W.sym_ge(min_side), op, ": a feature map of width ", W,
                  " cannot make ", num_levels, " levels (each level halves it, floor; the last must keep 1 pixel)");
  // Scale fmap1 (O(HWD)) rather than the product (O((HW)^2)): dividing the
  // volume would hold an unscaled copy of it, a third more peak memory.
  const double scale = std::sqrt(static_cast<double>(D.guard_int(__FILE__, __LINE__)));
  const at::Tensor f1 = fmap1.div(scale).reshape_symint({B, D, H * W}).transpose(1, 2);  // [B, HW, D]
  const at::Tensor f2 = fmap2.reshape_symint({B, D, H * W});                             // [B, D, HW]
  at::Tensor level = at::matmul(f1, f2);
  level = level.reshape_symint({B * H * W, 1, H, W});
  std::vector<at::Tensor> pyramid;
  pyramid.reserve(static_cast<size_t>(num_levels));
  pyramid.push_back(level.reshape_symint({B, H, W, H, W}));
  for (int64_t l = 1; l < num_levels; ++l) {
    level = pool2x2(level);
    pyramid.push_back(level.reshape_symint({B, H, W, level.sym_size(2), level.sym_size(3)}));
  }
  return pyramid;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyflowops, CompositeImplicitAutograd, m) {
  m.impl("corr_pyramid", &corr_pyramid);
}

}  // namespace corr
}  // namespace pyflowops
