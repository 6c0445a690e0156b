// Output derivative of the alpha-trick hinge loss on the GPU (maths in csrc/cpu/losses.cpp):
//   g_i = -y_i [F_i y_i < 1] / (p alpha),  L = sum_i relu(1 - F_i y_i) / (p alpha^2),  F = alpha (f - f0).
// hinge_gradient_kernel: grid-stride over the points, margin in T; each block reduces its loss (double) and count in
// shared memory into one partial. hinge_total_kernel: one block adds the partials in a fixed order (deterministic)
// into result (2,) float64 = (L, #{F y < 1}).
#include <algorithm>
#include <cstdint>

#include "cuda/check.cuh"
#include "registry.hpp"
#include "signatures.hpp"

namespace fastdyn {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 1024;  // partials per call; the grid strides over larger p

// Sum of value over the block into values[0] (blockDim.x == kThreads); every thread must call it.
__device__ void block_sum(double* values, double value) {
  values[threadIdx.x] = value;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) values[threadIdx.x] += values[threadIdx.x + s];
    __syncthreads();
  }
}

// partials[2 blockIdx.x] = sum of 1 - F y over the block's unsatisfied points, partials[2 blockIdx.x + 1] = their count.
template <typename T>
__global__ void hinge_gradient_kernel(const T* __restrict__ f, const T* __restrict__ f0, const T* __restrict__ y,
                                      T* __restrict__ g, long p, T alpha, T denominator, double* __restrict__ partials) {
  double total = 0.0, unsatisfied = 0.0;
  for (long i = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x; i < p;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    const T margin = alpha * (f[i] - f0[i]) * y[i];
    const bool below = margin < T(1);
    g[i] = -y[i] * T(below) / denominator;  // the bits of train's -y * mask / (p alpha), -0.0 included
    total += below ? 1.0 - static_cast<double>(margin) : 0.0;
    unsatisfied += below ? 1.0 : 0.0;
  }
  __shared__ double values[kThreads];
  block_sum(values, total);
  if (threadIdx.x == 0) partials[2 * blockIdx.x] = values[0];
  __syncthreads();
  block_sum(values, unsatisfied);
  if (threadIdx.x == 0) partials[2 * blockIdx.x + 1] = values[0];
}

// result = (sum of the loss partials * norm, sum of the counts), one block.
__global__ void hinge_total_kernel(const double* __restrict__ partials, unsigned blocks, double norm,
                                   double* __restrict__ result) {
  double total = 0.0, unsatisfied = 0.0;
  for (unsigned b = threadIdx.x; b < blocks; b += blockDim.x) {
    total += partials[2 * b];
    unsatisfied += partials[2 * b + 1];
  }
  __shared__ double values[kThreads];
  block_sum(values, total);
  if (threadIdx.x == 0) result[0] = values[0] * norm;
  __syncthreads();
  block_sum(values, unsatisfied);
  if (threadIdx.x == 0) result[1] = values[0];
}

template <typename T>
void hinge_gradient(const T* f, const T* f0, const T* y, T* g, long p, double alpha, double* result,
                    cudaStream_t stream) {
  const unsigned blocks = std::max(1u, std::min(blocks_for(p, kThreads), kMaxBlocks));
  DeviceScratch<double> partials(2 * static_cast<std::size_t>(blocks), stream, "hinge_gradient");
  hinge_gradient_kernel<T><<<blocks, kThreads, 0, stream>>>(f, f0, y, g, p, static_cast<T>(alpha),
                                                            static_cast<T>(static_cast<double>(p) * alpha),
                                                            partials.get());
  cuda_check(cudaGetLastError(), "hinge_gradient launch");
  hinge_total_kernel<<<1, kThreads, 0, stream>>>(partials.get(), blocks,
                                                 1.0 / (static_cast<double>(p) * alpha * alpha), result);
  cuda_check(cudaGetLastError(), "hinge_gradient total launch");
}

}  // namespace
}  // namespace fastdyn

FASTDYN_BINDINGS(losses) {
  fastdyn::bind_hinge_gradient<fastdyn::Cuda>(m, [](auto... args) { fastdyn::hinge_gradient(args...); });
}
