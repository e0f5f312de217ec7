// CPU kernels of the gradient-regularization family. Semantics:
// docs/gradreg_kernel_contract.md.
//
// Work is split into bands of consecutive rows of one image (or plane), one band
// per task (parallel_tasks), processed row by row so that the three input rows a
// stencil reads stay in cache. In each row the interior columns run through the
// vectorized row kernels of gradreg_cpu_vec.h, the two border columns (every
// column of images narrower than 3) through the per-pixel helpers of
// gradreg_math.h, the code the CUDA kernels run. Forward stencils take rows 0 and
// H-1 on the vector path with clamped row pointers (exact replicate padding); the
// backward gathers take them on the helper path, as several taps of one neighbour
// can land on a border pixel.
//
// Reductions are deterministic: one partial sum per fixed band of kReduceRows rows
// (whatever the thread count), in double, added in band order.
// The regularization backward reads the forward's saved weight instead of the
// image, and computes each row's d loss / d G (gl * w * rho'(G)) once per band
// into a 3-row ring that the gather then reads.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common/cpu_memory.h"
#include "common/cpu_parallel.h"
#include "gradreg/gradreg_checks.h"
#include "gradreg/gradreg_cpu_vec.h"
#include "gradreg/gradreg_math.h"

namespace pyflowops {
namespace gradreg {
namespace {

// Rows per partial sum of the reductions: fixed, so the sum does not depend on threads.
constexpr int64_t kReduceRows = 32;

// Bands of `rows` rows over `planes` planes of H rows; task t -> (plane, rows [i0, i1)).
struct Bands {
  int64_t H, rows, per_plane;
  Bands(int64_t H_, int64_t rows_) : H(H_), rows(std::max<int64_t>(1, std::min(rows_, H_))) {
    per_plane = (H + rows - 1) / rows;
  }
  int64_t count(int64_t planes) const { return planes * per_plane; }
  void get(int64_t t, int64_t* plane, int64_t* i0, int64_t* i1) const {
    *plane = t / per_plane;
    *i0 = (t - *plane * per_plane) * rows;
    *i1 = std::min(H, *i0 + rows);
  }
};

// Rows per band for about 8 bands per thread (load balance), at least min_rows.
int64_t balanced_rows(int64_t planes, int64_t H, int64_t min_rows) {
  const int64_t want = 8 * std::max<int64_t>(1, at::get_num_threads());
  const int64_t per_plane = std::max<int64_t>(1, (want + planes - 1) / planes);
  return std::max(min_rows, (H + per_plane - 1) / per_plane);
}

// Border columns of a W-wide row: 0 and W-1 (one column when W == 1).
inline int num_border_cols(int64_t W) { return W > 1 ? 2 : 1; }
inline int64_t border_col(int q, int64_t W) { return q == 0 ? 0 : W - 1; }

// Stores an opmath row into the output (a no-op when the kernel wrote it in place).
template <typename scalar_t, typename acc_t>
inline void store_row(const acc_t* src, scalar_t* dst, int64_t W) {
  if (static_cast<const void*>(src) == static_cast<const void*>(dst)) return;
  for (int64_t j = 0; j < W; ++j) dst[j] = static_cast<scalar_t>(src[j]);
}

// Where a row kernel writes output row dst: in place for opmath outputs, else buf.
template <typename scalar_t, typename acc_t>
inline acc_t* row_target(scalar_t* dst, acc_t* buf) {
  if constexpr (std::is_same<scalar_t, acc_t>::value) {
    return dst;
  } else {
    return buf;
  }
}

// One output row of a backward gather: the vector kernel on the interior (crow:
// coefficient rows, see vec::gather_row), gather_3x3 with coef(qi, qj, c) on the
// border columns, and on every column of the first and last rows.
template <Operator OP, int ORDER, typename acc_t, typename Coef>
void gather_output_row(const acc_t* const* crow, int64_t i, int64_t H, int64_t W,
                       const acc_t* scale, const Coef& coef, acc_t* out) {
  if (i >= 1 && i + 1 < H) {
    vec::gather_row<acc_t, OP, ORDER>(crow, W, scale, out);
    for (int q = 0; q < num_border_cols(W); ++q) {
      const int64_t j = border_col(q, W);
      out[j] = gather_3x3<OP, ORDER, acc_t>(i, j, H, W, scale, coef);
    }
  } else {
    for (int64_t j = 0; j < W; ++j) out[j] = gather_3x3<OP, ORDER, acc_t>(i, j, H, W, scale, coef);
  }
}

// g[c][k] = G_{c,k} of both flow channels at (i, j) by the helpers (border columns).
template <Operator OP, int ORDER, typename scalar_t, typename acc_t>
void flow_gradients(const PlaneDiff<scalar_t>& d, int64_t i, int64_t j, const acc_t* scale,
                    acc_t (&g)[2][kMaxDirections]) {
  for (int c = 0; c < 2; ++c) {
    acc_t n[3][3];
    load_3x3([&](int64_t r, int64_t cc) { return d(c, r, cc); }, i, j, d.H, d.W, n);
    apply_stencil<OP, ORDER>(n, scale, g[c]);
  }
}

// ---- spatial_gradient -----------------------------------------------------------

// x [planes, H, W] -> y [planes, K, H, W].
template <typename scalar_t, Operator OP, int ORDER>
void spatial_gradient_kernel(const scalar_t* x, scalar_t* y, int64_t planes, int64_t H,
                             int64_t W, bool normalized) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int K = Stencil<OP, ORDER>::kDirections;
  acc_t scale[K];
  stencil_scales<OP, ORDER>(normalized, scale);
  const Bands bands(H, balanced_rows(planes, H, 8));
  parallel_tasks(bands.count(planes), planes * H * W, [&](const auto& next) {
    PlaneRows<scalar_t> xr(1, H, W);
    std::vector<acc_t> buf(static_cast<size_t>(K * W));
    for (int64_t t = next(); t >= 0; t = next()) {
      int64_t p, i0, i1;
      bands.get(t, &p, &i0, &i1);
      xr.reset(x + p * H * W, nullptr);
      const auto& d = xr.values();
      for (int64_t i = i0; i < i1; ++i) {
        const acc_t* r[3];
        xr.triplets(i, r);
        const acc_t* const rows[3] = {r[0], r[1], r[2]};
        acc_t* out[K];
        for (int k = 0; k < K; ++k)
          out[k] = row_target(y + ((p * K + k) * H + i) * W, buf.data() + k * W);
        vec::stencil_row<acc_t, OP, ORDER>(rows, W, scale, out);
        for (int q = 0; q < num_border_cols(W); ++q) {
          const int64_t j = border_col(q, W);
          acc_t n[3][3], g[K];
          load_3x3([&](int64_t rr, int64_t cc) { return d(0, rr, cc); }, i, j, H, W, n);
          apply_stencil<OP, ORDER>(n, scale, g);
          for (int k = 0; k < K; ++k) out[k][j] = g[k];
        }
        for (int k = 0; k < K; ++k) store_row(out[k], y + ((p * K + k) * H + i) * W, W);
      }
    }
  });
}

// grad_out [planes, K, H, W] -> grad_x [planes, H, W]: the gather.
template <typename scalar_t, Operator OP, int ORDER>
void spatial_gradient_backward_kernel(const scalar_t* grad_out, scalar_t* grad_x, int64_t planes,
                                      int64_t H, int64_t W, bool normalized) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int K = Stencil<OP, ORDER>::kDirections;
  acc_t scale[K];
  stencil_scales<OP, ORDER>(normalized, scale);
  const Bands bands(H, balanced_rows(planes, H, 8));
  parallel_tasks(bands.count(planes), planes * H * W, [&](const auto& next) {
    PlaneRows<scalar_t> gr(K, H, W);
    std::vector<acc_t> buf(static_cast<size_t>(W));
    for (int64_t t = next(); t >= 0; t = next()) {
      int64_t p, i0, i1;
      bands.get(t, &p, &i0, &i1);
      gr.reset(grad_out + p * K * H * W, nullptr);
      const auto& d = gr.values();
      for (int64_t i = i0; i < i1; ++i) {
        acc_t* out = row_target(grad_x + (p * H + i) * W, buf.data());
        const acc_t* crow[3 * K];
        for (int tt = 0; tt < 3; ++tt)
          for (int k = 0; k < K; ++k) crow[tt * K + k] = gr.row(k, clamp_index(i + tt - 1, H));
        auto coef = [&](int64_t qi, int64_t qj, acc_t* c) {
          for (int k = 0; k < K; ++k) c[k] = d(k, qi, qj);
        };
        gather_output_row<OP, ORDER>(crow, i, H, W, scale, coef, out);
        store_row(out, grad_x + (p * H + i) * W, W);
      }
    }
  });
}

// ---- gradient_regularization ---------------------------------------------------

template <typename scalar_t>
struct RegInputs {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* flow;    // [B, 2, H, W]
  const scalar_t* target;  // [B, 2, H, W] or null
  const scalar_t* image;   // [B, C, H, W] or null
  const bool* mask_b;      // [B, 1, H, W] bool, or null
  const scalar_t* mask_s;  // [B, 1, H, W] flow's dtype, or null
  int64_t B, C, H, W;

  // w[j] = the mask at pixels row0 + j of [B, H, W] (1 without a mask); branch-free
  // loops that vectorize (a branch per pixel mispredicts on a random mask).
  void mask_row(int64_t row0, int64_t W, acc_t* w) const {
    if (mask_b != nullptr) {
      const uint8_t* m = reinterpret_cast<const uint8_t*>(mask_b + row0);
      for (int64_t j = 0; j < W; ++j) w[j] = static_cast<acc_t>(m[j] != 0);
    } else if (mask_s != nullptr) {
      for (int64_t j = 0; j < W; ++j) w[j] = static_cast<acc_t>(mask_s[row0 + j]);
    } else {
      std::fill(w, w + W, acc_t(1));
    }
  }
};

// Returns sum L; writes L to loss [B, H, W] when given ("none") and w to weight
// [B, H, W] when given. need_e: the weight reads the image's edge strength.
template <typename scalar_t, Operator OP, int ORDER, Penalty PEN>
double regularization_forward_kernel(const RegInputs<scalar_t>& in, double eps,
                                     const WeightParams& wp, bool need_e, scalar_t* loss,
                                     at::opmath_type<scalar_t>* weight) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int K = Stencil<OP, ORDER>::kDirections;
  const int64_t C = in.C, H = in.H, W = in.W, HW = H * W;
  acc_t scale[K];
  stencil_scales<OP, ORDER>(true, scale);
  const acc_t eps_a = static_cast<acc_t>(eps), eps2 = eps_a * eps_a;
  const Bands bands(H, kReduceRows);
  std::vector<double> partial(static_cast<size_t>(bands.count(in.B)), 0.0);
  parallel_tasks(bands.count(in.B), in.B * HW, [&](const auto& next) {
    PlaneRows<scalar_t> flow_rows(2, H, W), image_rows(need_e ? C : 0, H, W);
    std::vector<acc_t> e(W), wbuf(W), lbuf(W);
    std::vector<const acc_t*> rows(static_cast<size_t>(3 * std::max<int64_t>(C, 2)));
    for (int64_t t = next(); t >= 0; t = next()) {
      int64_t b, i0, i1;
      bands.get(t, &b, &i0, &i1);
      flow_rows.reset(in.flow + b * 2 * HW, in.target ? in.target + b * 2 * HW : nullptr);
      const auto& d = flow_rows.values();
      const scalar_t* image_b = need_e ? in.image + b * C * HW : nullptr;
      if (need_e) image_rows.reset(image_b, nullptr);
      double sum = 0.0;
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t row0 = (b * H + i) * W;  // pixel (b, i, 0) of [B, H, W]
        acc_t* w = weight != nullptr ? weight + row0 : wbuf.data();
        in.mask_row(row0, W, w);
        if (need_e) {
          image_rows.triplets(i, rows.data());
          vec::edge_row<acc_t, OP>(rows.data(), C, W, e.data());
          for (int q = 0; q < num_border_cols(W); ++q) {
            const int64_t j = border_col(q, W);
            e[j] = edge_strength<OP, acc_t>(image_b, C, i, j, H, W);
          }
          if constexpr (std::is_same<acc_t, float>::value) {
            vec::weight_row(e.data(), W, wp, w);
          } else {
            for (int64_t j = 0; j < W; ++j) w[j] = pixel_weight(w[j], e[j], wp);
          }
        }
        flow_rows.triplets(i, rows.data());
        acc_t* out = loss != nullptr ? row_target(loss + row0, lbuf.data()) : nullptr;
        double row_sum =
            vec::loss_row<acc_t, OP, ORDER, PEN>(rows.data(), W, scale, eps2, w, out);
        for (int q = 0; q < num_border_cols(W); ++q) {
          const int64_t j = border_col(q, W);
          acc_t g[2][kMaxDirections], s = acc_t(0);
          flow_gradients<OP, ORDER>(d, i, j, scale, g);
          for (int c = 0; c < 2; ++c)
            for (int k = 0; k < K; ++k) s += penalty_value(PEN, g[c][k], eps_a);
          const acc_t l = w[j] * s;
          if (out != nullptr) {
            out[j] = l;
          } else {
            row_sum += static_cast<double>(l);
          }
        }
        if (out != nullptr) store_row(out, loss + row0, W);
        sum += row_sum;
      }
      partial[static_cast<size_t>(t)] = sum;
    }
  });
  double total = 0.0;
  for (const double s : partial) total += s;
  return total;
}

// grad_flow [B, 2, H, W]. gl: grad_loss [B, H, W] ("none"), else gl_all for every
// pixel; w: weight [B, H, W] when given, else the mask (or 1).
template <typename scalar_t, Operator OP, int ORDER, Penalty PEN>
void regularization_backward_kernel(const RegInputs<scalar_t>& in, const scalar_t* gl,
                                    at::opmath_type<scalar_t> gl_all,
                                    const at::opmath_type<scalar_t>* weight, double eps,
                                    scalar_t* grad) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int K = Stencil<OP, ORDER>::kDirections;
  const int64_t H = in.H, W = in.W, HW = H * W;
  acc_t scale[K];
  stencil_scales<OP, ORDER>(true, scale);
  const acc_t eps_a = static_cast<acc_t>(eps), eps2 = eps_a * eps_a;
  const Bands bands(H, balanced_rows(in.B, H, 32));
  parallel_tasks(bands.count(in.B), in.B * HW, [&](const auto& next) {
    PlaneRows<scalar_t> flow_rows(2, H, W);
    std::vector<acc_t> gw(W), obuf(W);
    std::vector<acc_t> ring(static_cast<size_t>(3 * 2 * K * W));  // [3][2][K][W] coefficients
    int64_t tag[3];
    const acc_t* rows[6];
    int64_t b = 0;
    // Row r's coefficients [2][K][W] (channel, direction), computed once per band.
    auto coef_row = [&](int64_t r) -> const acc_t* {
      const int64_t slot = r % 3;
      acc_t* base = ring.data() + slot * 2 * K * W;
      if (tag[slot] == r) return base;
      const int64_t row0 = (b * H + r) * W;
      acc_t* g = gw.data();  // gl * w
      const acc_t* w = weight != nullptr ? weight + row0 : g;
      if (weight == nullptr) in.mask_row(row0, W, g);
      if (gl != nullptr) {
        for (int64_t j = 0; j < W; ++j) g[j] = static_cast<acc_t>(gl[row0 + j]) * w[j];
      } else {
        for (int64_t j = 0; j < W; ++j) g[j] = gl_all * w[j];
      }
      flow_rows.triplets(r, rows);
      acc_t* coef[2 * K];
      for (int q = 0; q < 2 * K; ++q) coef[q] = base + q * W;
      vec::coef_row<acc_t, OP, ORDER, PEN>(rows, W, scale, eps2, gw.data(), coef);
      const auto& d = flow_rows.values();
      for (int q = 0; q < num_border_cols(W); ++q) {
        const int64_t j = border_col(q, W);
        acc_t g[2][kMaxDirections];
        flow_gradients<OP, ORDER>(d, r, j, scale, g);
        for (int c = 0; c < 2; ++c)
          for (int k = 0; k < K; ++k)
            coef[c * K + k][j] = gw[j] * penalty_grad(PEN, g[c][k], eps_a);
      }
      tag[slot] = r;
      return base;
    };
    for (int64_t t = next(); t >= 0; t = next()) {
      int64_t i0, i1;
      bands.get(t, &b, &i0, &i1);
      flow_rows.reset(in.flow + b * 2 * HW, in.target ? in.target + b * 2 * HW : nullptr);
      tag[0] = tag[1] = tag[2] = -1;
      for (int64_t i = i0; i < i1; ++i) {
        const acc_t* cr[3];
        for (int tt = 0; tt < 3; ++tt) cr[tt] = coef_row(clamp_index(i + tt - 1, H));
        for (int c = 0; c < 2; ++c) {
          scalar_t* dst = grad + ((b * 2 + c) * H + i) * W;
          acc_t* out = row_target(dst, obuf.data());
          const acc_t* crow[3 * K];
          for (int tt = 0; tt < 3; ++tt)
            for (int k = 0; k < K; ++k) crow[tt * K + k] = cr[tt] + (c * K + k) * W;
          auto coef = [&](int64_t qi, int64_t qj, acc_t* v) {  // row qi is in the ring
            const acc_t* base = ring.data() + (qi % 3) * 2 * K * W + c * K * W + qj;
            for (int k = 0; k < K; ++k) v[k] = base[k * W];
          };
          gather_output_row<OP, ORDER>(crow, i, H, W, scale, coef, out);
          store_row(out, dst, W);
        }
      }
    }
  });
}

// ---- textureless_mask -----------------------------------------------------------

template <typename scalar_t, Operator OP>
void textureless_kernel(const scalar_t* image, bool* out, int64_t B, int64_t C, int64_t H,
                        int64_t W, double threshold) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t thr = static_cast<acc_t>(threshold);
  const Bands bands(H, balanced_rows(B, H, 8));
  parallel_tasks(bands.count(B), B * H * W, [&](const auto& next) {
    PlaneRows<scalar_t> image_rows(C, H, W);
    std::vector<acc_t> e(W);
    std::vector<const acc_t*> rows(static_cast<size_t>(3 * C));
    for (int64_t t = next(); t >= 0; t = next()) {
      int64_t b, i0, i1;
      bands.get(t, &b, &i0, &i1);
      const scalar_t* image_b = image + b * C * H * W;
      image_rows.reset(image_b, nullptr);
      for (int64_t i = i0; i < i1; ++i) {
        image_rows.triplets(i, rows.data());
        vec::edge_row<acc_t, OP>(rows.data(), C, W, e.data());
        for (int q = 0; q < num_border_cols(W); ++q) {
          const int64_t j = border_col(q, W);
          e[j] = edge_strength<OP, acc_t>(image_b, C, i, j, H, W);
        }
        bool* o = out + (b * H + i) * W;
        for (int64_t j = 0; j < W; ++j) o[j] = e[j] < thr;
      }
    }
  });
}

template <typename F>
void dispatch_penalty(Penalty p, const F& f) {
  switch (p) {
    case Penalty::kL1:
      return f(std::integral_constant<Penalty, Penalty::kL1>{});
    case Penalty::kCharbonnier:
      return f(std::integral_constant<Penalty, Penalty::kCharbonnier>{});
    default:
      return f(std::integral_constant<Penalty, Penalty::kL2>{});
  }
}

template <typename scalar_t>
RegInputs<scalar_t> reg_inputs(const at::Tensor& flow, const at::Tensor& image,
                               const at::Tensor& mask, const at::Tensor& target) {
  RegInputs<scalar_t> in{};
  in.flow = flow.data_ptr<scalar_t>();
  in.target = target.defined() ? target.data_ptr<scalar_t>() : nullptr;
  in.image = image.defined() ? image.data_ptr<scalar_t>() : nullptr;
  if (mask.defined()) {
    if (mask.scalar_type() == at::kBool) in.mask_b = mask.data_ptr<bool>();
    else in.mask_s = mask.data_ptr<scalar_t>();
  }
  in.B = flow.size(0);
  in.C = image.defined() ? image.size(1) : 0;
  in.H = flow.size(2);
  in.W = flow.size(3);
  return in;
}

at::Tensor contiguous_or_undefined(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? t->contiguous() : at::Tensor();
}

// ---- op wrappers ------------------------------------------------------------------

at::Tensor spatial_gradient_cpu(const at::Tensor& x_in, c10::string_view op_name, int64_t order,
                                bool normalized) {
  constexpr const char* op = "spatial_gradient";
  const StencilKind kind = parse_stencil(op_name, order, op);
  check_image_like(x_in, op, "x");
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor y = at::empty({B, C, num_directions(kind), H, W}, x.options());
  if (y.numel() == 0) return y;
  advise_huge_pages(y);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), op, [&] {
    PFO_DISPATCH_STENCIL(kind, [&] {
      spatial_gradient_kernel<scalar_t, OP, ORDER>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                                                   B * C, H, W, normalized);
    });
  });
  return y;
}

at::Tensor spatial_gradient_backward_cpu(const at::Tensor& grad_out_in, c10::string_view op_name,
                                         int64_t order, bool normalized) {
  constexpr const char* op = "spatial_gradient_backward";
  const StencilKind kind = parse_stencil(op_name, order, op);
  check_gradient_grad_out(grad_out_in, kind, op);
  const at::Tensor grad_out = grad_out_in.contiguous();
  const int64_t B = grad_out.size(0), C = grad_out.size(1), H = grad_out.size(3),
                W = grad_out.size(4);
  at::Tensor grad_x = at::empty({B, C, H, W}, grad_out.options());
  if (grad_x.numel() == 0) return grad_x;
  advise_huge_pages(grad_x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), op, [&] {
    PFO_DISPATCH_STENCIL(kind, [&] {
      spatial_gradient_backward_kernel<scalar_t, OP, ORDER>(
          grad_out.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(), B * C, H, W, normalized);
    });
  });
  return grad_x;
}

std::tuple<at::Tensor, at::Tensor> gradient_regularization_cpu(
    const at::Tensor& flow_in, const c10::optional<at::Tensor>& image_in,
    const c10::optional<at::Tensor>& mask_in, const c10::optional<at::Tensor>& target_in,
    c10::string_view op_name, int64_t order, c10::string_view penalty_name, double eps,
    double edge_weight, c10::optional<double> threshold, c10::string_view reduction_name,
    bool save_weight) {
  constexpr const char* op = "gradient_regularization";
  const StencilKind kind = parse_stencil(op_name, order, op);
  const Penalty penalty = parse_penalty(penalty_name, op);
  const Reduction reduction = parse_reduction(reduction_name, op);
  check_regularization_inputs(flow_in, image_in, mask_in, target_in, eps, op);
  const at::Tensor flow = flow_in.contiguous();
  const at::Tensor image = contiguous_or_undefined(image_in);
  const at::Tensor mask = contiguous_or_undefined(mask_in);
  const at::Tensor target = contiguous_or_undefined(target_in);
  const int64_t B = flow.size(0), H = flow.size(2), W = flow.size(3);
  const auto acc_type = at::toOpMathType(flow.scalar_type());
  at::Tensor loss = reduction == Reduction::kNone ? at::empty({B, H, W}, flow.options())
                                                  : at::empty({}, flow.options());
  const bool has_weight = save_weight && image.defined();
  const std::vector<int64_t> weight_shape =
      has_weight ? std::vector<int64_t>{B, H, W} : std::vector<int64_t>{0};
  at::Tensor weight = at::empty(weight_shape, flow.options().dtype(acc_type));
  advise_huge_pages(loss);
  advise_huge_pages(weight);
  const WeightParams wp{edge_weight, threshold.value_or(0.0), threshold.has_value()};
  const bool need_e = image.defined() && (edge_weight != 0.0 || threshold.has_value());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, flow.scalar_type(), op, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    double total = 0.0;
    if (B * H * W > 0) {
      const RegInputs<scalar_t> in = reg_inputs<scalar_t>(flow, image, mask, target);
      scalar_t* loss_out = reduction == Reduction::kNone ? loss.data_ptr<scalar_t>() : nullptr;
      acc_t* weight_out = has_weight ? weight.data_ptr<acc_t>() : nullptr;
      PFO_DISPATCH_STENCIL(kind, [&] {
        dispatch_penalty(penalty, [&](auto pen) {
          total = regularization_forward_kernel<scalar_t, OP, ORDER, decltype(pen)::value>(
              in, eps, wp, need_e, loss_out, weight_out);
        });
      });
    }
    if (reduction != Reduction::kNone) {
      const acc_t sum = static_cast<acc_t>(total);
      const acc_t value =
          reduction == Reduction::kMean ? sum / static_cast<acc_t>(B * H * W) : sum;
      *loss.data_ptr<scalar_t>() = static_cast<scalar_t>(value);
    }
  });
  return {loss, weight};
}

at::Tensor gradient_regularization_backward_cpu(
    const at::Tensor& grad_loss_in, const at::Tensor& flow_in,
    const c10::optional<at::Tensor>& target_in, const c10::optional<at::Tensor>& weight_in,
    const c10::optional<at::Tensor>& mask_in, c10::string_view op_name, int64_t order,
    c10::string_view penalty_name, double eps, c10::string_view reduction_name) {
  constexpr const char* op = "gradient_regularization_backward";
  const StencilKind kind = parse_stencil(op_name, order, op);
  const Penalty penalty = parse_penalty(penalty_name, op);
  const Reduction reduction = parse_reduction(reduction_name, op);
  check_regularization_inputs(flow_in, c10::nullopt, mask_in, target_in, eps, op);
  check_regularization_backward_inputs(grad_loss_in, flow_in, weight_in, reduction, op);
  const at::Tensor flow = flow_in.contiguous();
  const at::Tensor grad_loss = grad_loss_in.contiguous();
  const at::Tensor target = contiguous_or_undefined(target_in);
  const at::Tensor weight = contiguous_or_undefined(weight_in);
  const at::Tensor mask = contiguous_or_undefined(mask_in);
  const int64_t B = flow.size(0), H = flow.size(2), W = flow.size(3);
  at::Tensor grad = at::empty(flow.sizes(), flow.options());
  if (grad.numel() == 0) return grad;
  advise_huge_pages(grad);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, flow.scalar_type(), op, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const RegInputs<scalar_t> in = reg_inputs<scalar_t>(flow, at::Tensor(), mask, target);
    const scalar_t* gl = reduction == Reduction::kNone ? grad_loss.data_ptr<scalar_t>() : nullptr;
    acc_t gl_all = acc_t(0);
    if (reduction != Reduction::kNone) {
      gl_all = static_cast<acc_t>(*grad_loss.data_ptr<scalar_t>());
      if (reduction == Reduction::kMean) gl_all = gl_all / static_cast<acc_t>(B * H * W);
    }
    const acc_t* w = weight.defined() ? weight.data_ptr<acc_t>() : nullptr;
    PFO_DISPATCH_STENCIL(kind, [&] {
      dispatch_penalty(penalty, [&](auto pen) {
        regularization_backward_kernel<scalar_t, OP, ORDER, decltype(pen)::value>(
            in, gl, gl_all, w, eps, grad.data_ptr<scalar_t>());
      });
    });
  });
  return grad;
}

at::Tensor textureless_mask_cpu(const at::Tensor& image_in, double threshold,
                                c10::string_view op_name) {
  constexpr const char* op = "textureless_mask";
  const StencilKind kind = parse_stencil(op_name, 1, op);
  check_image_like(image_in, op, "image");
  const at::Tensor image = image_in.contiguous();
  const int64_t B = image.size(0), C = image.size(1), H = image.size(2), W = image.size(3);
  at::Tensor out = at::empty({B, 1, H, W}, image.options().dtype(at::kBool));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), op, [&] {
    PFO_DISPATCH_STENCIL(kind, [&] {
      (void)ORDER;  // always 1: the edge strength is first order
      textureless_kernel<scalar_t, OP>(image.data_ptr<scalar_t>(), out.data_ptr<bool>(), B, C, H,
                                       W, threshold);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyflowops, CPU, m) {
  m.impl("spatial_gradient", &spatial_gradient_cpu);
  m.impl("spatial_gradient_backward", &spatial_gradient_backward_cpu);
  m.impl("gradient_regularization", &gradient_regularization_cpu);
  m.impl("gradient_regularization_backward", &gradient_regularization_backward_cpu);
  m.impl("textureless_mask", &textureless_mask_cpu);
}

}  // namespace gradreg
}  // namespace pyflowops
