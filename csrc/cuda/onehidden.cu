// One-hidden-layer ReLU network forward on the GPU (see csrc/cpu/onehidden.cpp for the maths):
// one block per point, threads stride over neurons, block reduction of beta_n relu(pre_n); the Jacobian-vector
// product the same way, with the direction's pre-activation u_n beside pre_n.
// gradient of sum_i g_i f(x_i): one thread per neuron, the points streamed through shared memory in tiles; the
// point range is split over blockIdx.y when there are too few neurons to fill the GPU, and the partial sums are
// added with atomics into zeroed outputs. Memory O((h + p) d).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "cuda/check.cuh"
#include "registry.hpp"
#include "signatures.hpp"

namespace fastdyn {
namespace {

constexpr int kThreads = 256;

template <typename T>
__device__ T block_sum(T value) {  // the sum over the block's kThreads threads, in thread 0
  __shared__ T partial[kThreads];
  partial[threadIdx.x] = value;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  return partial[0];
}

template <typename T>
__global__ void onehidden_forward_kernel(const T* __restrict__ x, const T* __restrict__ omega,
                                         const T* __restrict__ b, const T* __restrict__ beta, T* __restrict__ out,
                                         long d, long h, T inv_sqrt_d, T scale) {
  const long i = blockIdx.x;
  const T* xi = x + i * d;
  T acc = 0;
  for (long n = threadIdx.x; n < h; n += blockDim.x) {
    const T* wn = omega + n * d;
    T pre = 0;
    for (long k = 0; k < d; ++k) pre += wn[k] * xi[k];
    pre = pre * inv_sqrt_d + b[n];
    acc += pre > T(0) ? beta[n] * pre : T(0);
  }
  const T total = block_sum(acc);
  if (threadIdx.x == 0) out[i] = scale * total;
}

template <typename T>
__global__ void onehidden_jvp_kernel(const T* __restrict__ x, const T* __restrict__ omega, const T* __restrict__ b,
                                     const T* __restrict__ beta, const T* __restrict__ v_omega,
                                     const T* __restrict__ v_b, const T* __restrict__ v_beta, T* __restrict__ out,
                                     long d, long h, T inv_sqrt_d, T scale) {
  const long i = blockIdx.x;
  const T* xi = x + i * d;
  T acc = 0;
  for (long n = threadIdx.x; n < h; n += blockDim.x) {
    const T *wn = omega + n * d, *vn = v_omega + n * d;
    T pre = 0, change = 0;
    for (long k = 0; k < d; ++k) pre += wn[k] * xi[k], change += vn[k] * xi[k];
    pre = pre * inv_sqrt_d + b[n];
    if (pre > T(0)) acc += v_beta[n] * pre + beta[n] * (change * inv_sqrt_d + v_b[n]);
  }
  const T total = block_sum(acc);
  if (threadIdx.x == 0) out[i] = scale * total;
}

// Registers hold omega_n / sqrt(d) and the accumulators for d <= MaxD (unrolled, guarded loops keep them out of
// local memory). MaxD = 0 is the path for larger d: weights read from global memory, the sums of g a x kept in
// the grad_omega row itself (then gridDim.y must be 1), scaled in place at the end.
template <typename T, int MaxD>
__global__ void onehidden_gradient_kernel(const T* __restrict__ x, const T* __restrict__ g,
                                          const T* __restrict__ omega, const T* __restrict__ b,
                                          const T* __restrict__ beta, T* __restrict__ grad_omega,
                                          T* __restrict__ grad_b, T* __restrict__ grad_beta, long p, long d, long h,
                                          long chunk, int tile_points, T inv_sqrt_d, T scale) {
  extern __shared__ unsigned char shared_bytes[];
  T* tile_x = reinterpret_cast<T*>(shared_bytes);  // (tile_points, d)
  T* tile_g = tile_x + static_cast<long>(tile_points) * d;
  const long n = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool live = n < h;
  const long i_begin = static_cast<long>(blockIdx.y) * chunk;
  const long i_end = min(p, i_begin + chunk);

  T w[MaxD > 0 ? MaxD : 1], acc[MaxD > 0 ? MaxD : 1];
  T* row = grad_omega + (live ? n : 0) * d;
  const T bias = live ? b[n] : T(-1);
  if constexpr (MaxD > 0) {
#pragma unroll
    for (int k = 0; k < MaxD; ++k) {
      w[k] = (live && k < d) ? omega[n * d + k] * inv_sqrt_d : T(0);
      acc[k] = T(0);
    }
  } else if (live) {
    for (long k = 0; k < d; ++k) row[k] = T(0);
  }
  T acc_b = 0, acc_beta = 0;
  for (long t0 = i_begin; t0 < i_end; t0 += tile_points) {
    const long count = min(static_cast<long>(tile_points), i_end - t0);
    __syncthreads();
    for (long e = threadIdx.x; e < count * d; e += blockDim.x) tile_x[e] = x[t0 * d + e];
    for (long e = threadIdx.x; e < count; e += blockDim.x) tile_g[e] = g[t0 + e];
    __syncthreads();
    if (!live) continue;
    // two-level summation: a tile's points into fresh partial sums, then the tiles (smaller fp32 rounding error)
    T part[MaxD > 0 ? MaxD : 1], part_b = 0, part_beta = 0;
    if constexpr (MaxD > 0) {
#pragma unroll
      for (int k = 0; k < MaxD; ++k) part[k] = T(0);
    }
    for (long i = 0; i < count; ++i) {
      const T* xi = tile_x + i * d;
      T pre = bias;
      if constexpr (MaxD > 0) {
#pragma unroll
        for (int k = 0; k < MaxD; ++k)
          if (k < d) pre += w[k] * xi[k];
      } else {
        for (long k = 0; k < d; ++k) pre += omega[n * d + k] * inv_sqrt_d * xi[k];
      }
      if constexpr (MaxD > 0) {  // branch-free: no warp divergence on the activation
        const T gated = pre > T(0) ? tile_g[i] : T(0);
#pragma unroll
        for (int k = 0; k < MaxD; ++k)
          if (k < d) part[k] += gated * xi[k];
        part_b += gated;
        part_beta += gated * pre;
      } else if (pre > T(0)) {  // global-memory row: skip the writes of inactive points
        const T gi = tile_g[i];
        for (long k = 0; k < d; ++k) row[k] += gi * xi[k];
        part_b += gi;
        part_beta += gi * pre;
      }
    }
    if constexpr (MaxD > 0) {
#pragma unroll
      for (int k = 0; k < MaxD; ++k) acc[k] += part[k];
    }
    acc_b += part_b;
    acc_beta += part_beta;
  }
  if (!live) return;
  const T weight = scale * beta[n];
  if constexpr (MaxD > 0) {
#pragma unroll
    for (int k = 0; k < MaxD; ++k)
      if (k < d) atomicAdd(row + k, weight * inv_sqrt_d * acc[k]);
    atomicAdd(grad_b + n, weight * acc_b);
    atomicAdd(grad_beta + n, scale * acc_beta);
  } else {
    for (long k = 0; k < d; ++k) row[k] *= weight * inv_sqrt_d;
    grad_b[n] = weight * acc_b;
    grad_beta[n] = scale * acc_beta;
  }
}

constexpr int kGradientThreads = 128;
constexpr long kTargetThreads = 1L << 17;  // split the points until about this many threads run
constexpr long kSharedBytes = 32 * 1024;

template <typename T, int MaxD>
void launch_gradient(const T* x, const T* g, const T* omega, const T* b, const T* beta, T* grad_omega, T* grad_b,
                     T* grad_beta, long p, long d, long h, T inv_sqrt_d, T scale, cudaStream_t stream) {
  const int tile_points =
      static_cast<int>(std::max<long>(1, std::min<long>(256, kSharedBytes / (static_cast<long>(sizeof(T)) * (d + 1)))));
  const long neuron_blocks = (h + kGradientThreads - 1) / kGradientThreads;
  long splits = 1;
  if (MaxD > 0) {
    const long wanted = (kTargetThreads + h - 1) / h;
    splits = std::max<long>(1, std::min<long>({wanted, (p + 255) / 256, 65535}));
    const size_t bytes = sizeof(T) * static_cast<size_t>(h);
    cuda_check(cudaMemsetAsync(grad_omega, 0, bytes * d, stream), "onehidden_gradient memset");
    cuda_check(cudaMemsetAsync(grad_b, 0, bytes, stream), "onehidden_gradient memset");
    cuda_check(cudaMemsetAsync(grad_beta, 0, bytes, stream), "onehidden_gradient memset");
  }
  const long chunk = (p + splits - 1) / splits;
  const dim3 grid(static_cast<unsigned>(neuron_blocks), static_cast<unsigned>(splits));
  const size_t shared = sizeof(T) * static_cast<size_t>(tile_points) * (d + 1);
  if (shared > 48 * 1024) throw std::invalid_argument("onehidden_gradient: d is too large for one shared-memory tile");
  onehidden_gradient_kernel<T, MaxD><<<grid, kGradientThreads, shared, stream>>>(
      x, g, omega, b, beta, grad_omega, grad_b, grad_beta, p, d, h, chunk, tile_points, inv_sqrt_d, scale);
  cuda_check(cudaGetLastError(), "onehidden_gradient launch");
}

// Gradient launch for d: MaxD the smallest register path that holds d, 0 (global-memory rows) above 32.
template <typename T>
void onehidden_gradient(const T* x, const T* g, const T* omega, const T* b, const T* beta, T* grad_omega, T* grad_b,
                        T* grad_beta, long p, long d, long h, T inv_sqrt_d, T scale, cudaStream_t stream) {
  if (h == 0) return;
  auto launch = [&](auto kernel) {
    kernel(x, g, omega, b, beta, grad_omega, grad_b, grad_beta, p, d, h, inv_sqrt_d, scale, stream);
  };
  if (d <= 8)
    launch(launch_gradient<T, 8>);
  else if (d <= 12)
    launch(launch_gradient<T, 12>);  // d = 10, the seed's inputs, with few idle registers
  else if (d <= 16)
    launch(launch_gradient<T, 16>);
  else if (d <= 32)
    launch(launch_gradient<T, 32>);
  else
    launch(launch_gradient<T, 0>);
}

template <typename T>
void onehidden_forward(const T* x, const T* omega, const T* b, const T* beta, T* out, long p, long d, long h,
                       T inv_sqrt_d, T scale, cudaStream_t stream) {
  if (p == 0) return;
  onehidden_forward_kernel<T><<<static_cast<unsigned>(p), kThreads, 0, stream>>>(x, omega, b, beta, out, d, h,
                                                                                 inv_sqrt_d, scale);
  cuda_check(cudaGetLastError(), "onehidden_forward launch");
}

template <typename T>
void onehidden_jvp(const T* x, const T* omega, const T* b, const T* beta, const T* v_omega, const T* v_b,
                   const T* v_beta, T* out, long p, long d, long h, T inv_sqrt_d, T scale, cudaStream_t stream) {
  if (p == 0) return;
  onehidden_jvp_kernel<T><<<static_cast<unsigned>(p), kThreads, 0, stream>>>(x, omega, b, beta, v_omega, v_b, v_beta,
                                                                             out, d, h, inv_sqrt_d, scale);
  cuda_check(cudaGetLastError(), "onehidden_jvp launch");
}

}  // namespace
}  // namespace fastdyn

FASTDYN_BINDINGS(onehidden) {
  fastdyn::bind_onehidden_forward<fastdyn::Cuda>(m, [](auto... args) { fastdyn::onehidden_forward(args...); });
  fastdyn::bind_onehidden_gradient<fastdyn::Cuda>(m, [](auto... args) { fastdyn::onehidden_gradient(args...); });
  fastdyn::bind_onehidden_jvp<fastdyn::Cuda>(m, [](auto... args) { fastdyn::onehidden_jvp(args...); });
}
