// CUDA kernels of the Gaussian-splatting projection and binning, and their launchers
// (the rasterization kernels are in splat_raster_cuda.cu).
//
//   projection forward/backward: one thread per Gaussian over project_one /
//     project_one_vjp of splat_math.h (the math the CPU tests check).
//   binning, in two sorts that are both cheaper than gsplat's one sort of 64-bit
//     (tile | depth) keys over all M instances (32 + log2(T) key bits):
//     1. the N Gaussians are sorted by depth (32-bit keys for float opmath, 64-bit for
//        double: exact, no depth rounding), stably, so equal depths stay in index order;
//     2. their tile counts are scanned in that order and every Gaussian writes its
//        instances' tile ids (the emit is in depth order);
//     3. the M instances are sorted stably by tile id alone, on only the
//        ceil(log2(T)) bits tile ids need (2 radix passes for up to 2^16 tiles), so
//        each tile's list stays in (depth, index) order: the contract's order exactly;
//     4. tile_offsets by a kernel that finds the segment boundaries.
//     Sorting is cub::DeviceRadixSort (stable); its scratch comes from the caching
//     allocator.
//
// No ATen operators here (allocation and checks are in splat_cuda_ops.cpp).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "splat/splat_cuda.h"
#include "splat/splat_math.h"

namespace pyflowops {
namespace splat {
namespace cuda {
namespace {

constexpr int kThreads = 256;

unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>((n + kThreads - 1) / kThreads);
}

// ---- projection ---------------------------------------------------------------------

// One thread per Gaussian: means [N,3], quats [N,4], scales [N,3] -> means2d [N,2],
// conics [N,3], depths [N], radii [N].
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    project_forward_kernel(int64_t n, const scalar_t* __restrict__ means,
                           const scalar_t* __restrict__ quats, const scalar_t* __restrict__ scales,
                           const scalar_t* __restrict__ viewmat, const scalar_t* __restrict__ Kmat,
                           int64_t width, int64_t height, at::opmath_type<scalar_t> near_plane,
                           at::opmath_type<scalar_t> far_plane, scalar_t* __restrict__ means2d,
                           scalar_t* __restrict__ conics, scalar_t* __restrict__ depths,
                           int32_t* __restrict__ radii) {
  using T = at::opmath_type<scalar_t>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= n) return;
  const Camera<T> cam = load_camera<T>(viewmat, Kmat);
  T m[3], q[4], s[3], m2[2], co[3], z;
  for (int k = 0; k < 3; ++k) m[k] = static_cast<T>(means[3 * i + k]);
  for (int k = 0; k < 4; ++k) q[k] = static_cast<T>(quats[4 * i + k]);
  for (int k = 0; k < 3; ++k) s[k] = static_cast<T>(scales[3 * i + k]);
  int32_t r;
  project_one(m, q, s, cam, width, height, near_plane, far_plane, m2, co, &z, &r);
  for (int k = 0; k < 2; ++k) means2d[2 * i + k] = static_cast<scalar_t>(m2[k]);
  for (int k = 0; k < 3; ++k) conics[3 * i + k] = static_cast<scalar_t>(co[k]);
  depths[i] = static_cast<scalar_t>(z);
  radii[i] = r;
}

// One thread per Gaussian: the VJP of the projection, zero for culled Gaussians.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    project_backward_kernel(int64_t n, const scalar_t* __restrict__ means,
                            const scalar_t* __restrict__ quats,
                            const scalar_t* __restrict__ scales,
                            const scalar_t* __restrict__ viewmat,
                            const scalar_t* __restrict__ Kmat, const int32_t* __restrict__ radii,
                            const scalar_t* __restrict__ g_means2d,
                            const scalar_t* __restrict__ g_conics,
                            const scalar_t* __restrict__ g_depths, scalar_t* __restrict__ g_means,
                            scalar_t* __restrict__ g_quats, scalar_t* __restrict__ g_scales) {
  using T = at::opmath_type<scalar_t>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= n) return;
  T gm[3] = {0, 0, 0}, gq[4] = {0, 0, 0, 0}, gs[3] = {0, 0, 0};
  if (radii[i] > 0) {
    const Camera<T> cam = load_camera<T>(viewmat, Kmat);
    T m[3], q[4], s[3], g2[2], g3[3];
    for (int k = 0; k < 3; ++k) m[k] = static_cast<T>(means[3 * i + k]);
    for (int k = 0; k < 4; ++k) q[k] = static_cast<T>(quats[4 * i + k]);
    for (int k = 0; k < 3; ++k) s[k] = static_cast<T>(scales[3 * i + k]);
    for (int k = 0; k < 2; ++k) g2[k] = static_cast<T>(g_means2d[2 * i + k]);
    for (int k = 0; k < 3; ++k) g3[k] = static_cast<T>(g_conics[3 * i + k]);
    project_one_vjp(m, q, s, cam, g2, g3, static_cast<T>(g_depths[i]), gm, gq, gs);
  }
  for (int k = 0; k < 3; ++k) g_means[3 * i + k] = static_cast<scalar_t>(gm[k]);
  for (int k = 0; k < 4; ++k) g_quats[4 * i + k] = static_cast<scalar_t>(gq[k]);
  for (int k = 0; k < 3; ++k) g_scales[3 * i + k] = static_cast<scalar_t>(gs[k]);
}

// ---- binning ------------------------------------------------------------------------

// Depth sort key: the order of torch.sort / the CPU binning (NaN last, -0 == +0) as an
// unsigned integer of the opmath type's width.
template <typename T>
using KeyOf = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;

template <typename T>
__device__ __forceinline__ KeyOf<T> depth_key(T z) {
  using U = KeyOf<T>;
  if (z != z) z = T(NAN);
  if (z == T(0)) z = T(0);
  U bits;
  memcpy(&bits, &z, sizeof(bits));
  const U sign = U(1) << (8 * sizeof(U) - 1);
  return (bits & sign) ? ~bits : (bits | sign);
}

// keys [N] = depth keys, vals [N] = 0..N-1.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    depth_keys_kernel(int64_t n, const scalar_t* __restrict__ depths,
                      KeyOf<at::opmath_type<scalar_t>>* __restrict__ keys,
                      int32_t* __restrict__ vals) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= n) return;
  keys[i] = depth_key(static_cast<at::opmath_type<scalar_t>>(depths[i]));
  vals[i] = static_cast<int32_t>(i);
}

// Tile rectangle of Gaussian g (empty for culled ones).
template <typename scalar_t>
__device__ __forceinline__ void gauss_tiles(const scalar_t* means2d, const int32_t* radii,
                                            int64_t g, const TileGrid& grid, int64_t* tx0,
                                            int64_t* tx1, int64_t* ty0, int64_t* ty1) {
  using T = at::opmath_type<scalar_t>;
  tile_bounds(static_cast<T>(means2d[2 * g]), static_cast<T>(means2d[2 * g + 1]), radii[g],
              grid.width, grid.height, grid.tile_size, tx0, tx1, ty0, ty1);
}

// counts [N] int64: tile count of the i-th Gaussian in depth order (scanned next).
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    tile_counts_kernel(int64_t n, const scalar_t* __restrict__ means2d,
                       const int32_t* __restrict__ radii, TileGrid grid,
                       const int32_t* __restrict__ order, int64_t* __restrict__ counts) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= n) return;
  int64_t tx0, tx1, ty0, ty1;
  gauss_tiles(means2d, radii, order[i], grid, &tx0, &tx1, &ty0, &ty1);
  counts[i] = (tx1 - tx0) * (ty1 - ty0);
}

// The i-th Gaussian in depth order writes its instances at [ends[i-1], ends[i]):
// tiles [M] (row-major tile ids) and ids [M] (its index).
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    emit_instances_kernel(int64_t n, const scalar_t* __restrict__ means2d,
                          const int32_t* __restrict__ radii, TileGrid grid,
                          const int32_t* __restrict__ order, const int64_t* __restrict__ ends,
                          uint32_t* __restrict__ tiles, int32_t* __restrict__ ids) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= n) return;
  const int32_t g = order[i];
  int64_t tx0, tx1, ty0, ty1;
  gauss_tiles(means2d, radii, g, grid, &tx0, &tx1, &ty0, &ty1);
  int64_t k = i > 0 ? ends[i - 1] : 0;
  for (int64_t ty = ty0; ty < ty1; ++ty)
    for (int64_t tx = tx0; tx < tx1; ++tx, ++k) {
      tiles[k] = static_cast<uint32_t>(ty * grid.tiles_x + tx);
      ids[k] = g;
    }
}

// tile_offsets [T+1] from the sorted tile ids [M]: thread k in [0, M] writes k into
// the offsets of the tiles (tiles[k-1], tiles[k]] (tiles[-1] = -1, tiles[M] = T), so
// every entry is written exactly once, empty tiles included.
__global__ void __launch_bounds__(kThreads)
    tile_offsets_kernel(int64_t m, int64_t num_tiles, const uint32_t* __restrict__ tiles,
                        int32_t* __restrict__ offsets) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (k > m) return;
  const int64_t cur = k < m ? static_cast<int64_t>(tiles[k]) : num_tiles;
  const int64_t prev = k > 0 ? static_cast<int64_t>(tiles[k - 1]) : int64_t(-1);
  for (int64_t t = prev + 1; t <= cur; ++t) offsets[t] = static_cast<int32_t>(k);
}

// Device scratch from the caching allocator (freed stream-ordered on destruction).
struct Scratch {
  c10::DataPtr ptr;
  explicit Scratch(size_t bytes)
      : ptr(c10::cuda::CUDACachingAllocator::get()->allocate(bytes > 0 ? bytes : 1)) {}
  template <typename U>
  U* as() const {
    return static_cast<U*>(ptr.get());
  }
};

// Stable radix sort of n (key, value) pairs on key bits [0, end_bit).
template <typename K>
void sort_pairs(const K* keys_in, K* keys_out, const int32_t* vals_in, int32_t* vals_out,
                int64_t n, int end_bit, cudaStream_t stream) {
  size_t bytes = 0;
  C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys_in, keys_out, vals_in,
                                                 vals_out, n, 0, end_bit, stream));
  Scratch tmp(bytes);
  C10_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(tmp.as<void>(), bytes, keys_in, keys_out,
                                                 vals_in, vals_out, n, 0, end_bit, stream));
}

}  // namespace

void project_forward(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                     const at::Tensor& viewmat, const at::Tensor& K, int64_t width,
                     int64_t height, double near_plane, double far_plane,
                     const at::Tensor& means2d, const at::Tensor& conics,
                     const at::Tensor& depths, const at::Tensor& radii) {
  const int64_t n = means.size(0);
  if (n == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, means.scalar_type(),
                                  "project_gaussians", [&] {
    using T = at::opmath_type<scalar_t>;
    project_forward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        n, means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(),
        viewmat.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(), width, height,
        static_cast<T>(near_plane), static_cast<T>(far_plane), means2d.data_ptr<scalar_t>(),
        conics.data_ptr<scalar_t>(), depths.data_ptr<scalar_t>(), radii.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void project_backward(const at::Tensor& means, const at::Tensor& quats,
                      const at::Tensor& scales, const at::Tensor& viewmat, const at::Tensor& K,
                      const at::Tensor& radii, const at::Tensor& grad_means2d,
                      const at::Tensor& grad_conics, const at::Tensor& grad_depths,
                      const at::Tensor& grad_means, const at::Tensor& grad_quats,
                      const at::Tensor& grad_scales) {
  const int64_t n = means.size(0);
  if (n == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, means.scalar_type(),
                                  "project_gaussians_backward", [&] {
    project_backward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        n, means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(), scales.data_ptr<scalar_t>(),
        viewmat.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(),
        grad_means2d.data_ptr<scalar_t>(), grad_conics.data_ptr<scalar_t>(),
        grad_depths.data_ptr<scalar_t>(), grad_means.data_ptr<scalar_t>(),
        grad_quats.data_ptr<scalar_t>(), grad_scales.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

int64_t bin_count(const at::Tensor& means2d, const at::Tensor& depths, const at::Tensor& radii,
                  const TileGrid& grid, const at::Tensor& order, const at::Tensor& ends) {
  const int64_t n = means2d.size(0);
  if (n == 0) return 0;
  TORCH_CHECK(n < (int64_t(1) << 31), "bin_count: too many Gaussians");  // cub's int item count
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  int32_t* ord = order.data_ptr<int32_t>();
  int64_t* end = ends.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, means2d.scalar_type(),
                                  "rasterize_gaussians", [&] {
    using Key = KeyOf<at::opmath_type<scalar_t>>;
    // [2N] keys (in, out), [N] index values.
    Scratch keys(2 * n * sizeof(Key)), vals(n * sizeof(int32_t));
    depth_keys_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        n, depths.data_ptr<scalar_t>(), keys.as<Key>(), vals.as<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    sort_pairs(keys.as<Key>(), keys.as<Key>() + n, vals.as<int32_t>(), ord, n,
               8 * static_cast<int>(sizeof(Key)), stream);
    tile_counts_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        n, means2d.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(), grid, ord, end);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  size_t bytes = 0;
  C10_CUDA_CHECK(cub::DeviceScan::InclusiveSum(nullptr, bytes, end, end, n, stream));
  {
    Scratch tmp(bytes);
    C10_CUDA_CHECK(cub::DeviceScan::InclusiveSum(tmp.as<void>(), bytes, end, end, n, stream));
  }
  int64_t m = 0;
  C10_CUDA_CHECK(cudaMemcpyAsync(&m, end + n - 1, sizeof(m), cudaMemcpyDeviceToHost, stream));
  C10_CUDA_CHECK(cudaStreamSynchronize(stream));
  return m;
}

void bin_fill(const at::Tensor& means2d, const at::Tensor& radii, const TileGrid& grid,
              const at::Tensor& order, const at::Tensor& ends, const at::Tensor& gaussian_ids,
              const at::Tensor& tile_offsets) {
  const int64_t n = means2d.size(0), m = gaussian_ids.size(0), num_tiles = grid.count();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  // [2M] tile ids (in, out), [M] Gaussian ids in depth order.
  Scratch tiles(2 * m * sizeof(uint32_t)), ids(m * sizeof(int32_t));
  uint32_t* tiles_in = tiles.as<uint32_t>();
  uint32_t* tiles_out = tiles_in + m;
  if (m > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, means2d.scalar_type(),
                                    "rasterize_gaussians", [&] {
      emit_instances_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
          n, means2d.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(), grid,
          order.data_ptr<int32_t>(), ends.data_ptr<int64_t>(), tiles_in, ids.as<int32_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    int end_bit = 1;  // tile ids < T need the bits of T - 1
    while (end_bit < 32 && (int64_t(1) << end_bit) < num_tiles) ++end_bit;
    sort_pairs(tiles_in, tiles_out, ids.as<int32_t>(), gaussian_ids.data_ptr<int32_t>(), m,
               end_bit, stream);
  }
  tile_offsets_kernel<<<blocks_for(m + 1), kThreads, 0, stream>>>(
      m, num_tiles, tiles_out, tile_offsets.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace splat
}  // namespace pyflowops
