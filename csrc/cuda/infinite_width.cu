// The infinite-width layer recursion (fastdyn.kernels) on the GPU; the maths is that of
// csrc/cpu/isa/infinite_width_isa.cpp, with CUDA's own asin (correctly rounded to a few ulp) in place of the CPU's
// series. One thread per entry (i, j) takes it through every layer: read Sigma_1 once, write the NNGP and the NTK
// once, so the kernel runs at the memory bandwidth. The per-point factors q = sqrt(var), r are formed per entry
// from the (layers, n) variances (cached reads); products of the two points' factors come first, so an exactly
// symmetric Sigma_1 gives exactly symmetric kernels, as on the CPU. symmetric (the same points on both sides): the
// thread of (i, j), i <= j, symmetrises (S_ij + S_ji) / 2 and writes both entries; the threads of i > j return.
#include <algorithm>

#include "cuda/check.cuh"
#include "registry.hpp"
#include "signatures.hpp"

namespace fastdyn {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 65535u * 8u;  // the grid strides over larger matrices
constexpr double kPi = 3.14159265358979323846;

template <bool kErf, typename T>
__device__ __forceinline__ T factor_r(T var) {
  return kErf ? sqrt(T(2) / (T(1) + T(2) * var)) : T(1) / sqrt(var);
}

template <typename T, bool kErf>
__global__ void fc_kernels_kernel(T* __restrict__ sigma, T* __restrict__ theta, const T* __restrict__ var1,
                                  const T* __restrict__ var2, const double* __restrict__ weight_vars,
                                  const double* __restrict__ bias_vars, long layers, long n1, long n2,
                                  bool symmetric) {
  const T inv_2pi = static_cast<T>(1 / (2 * kPi)), two_over_pi = static_cast<T>(2 / kPi), half_pi = T(kPi / 2);
  const long total = n1 * n2;
  for (long k = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x; k < total;
       k += static_cast<long>(gridDim.x) * blockDim.x) {
    const long i = k / n2, j = k - i * n2;
    if (symmetric && i > j) continue;
    T s = symmetric ? (sigma[k] + sigma[j * n2 + i]) * T(0.5) : sigma[k];
    T t = s;
    for (long l = 0; l < layers; ++l) {
      const T vi = var1[l * n1 + i], vj = var2[l * n2 + j];
      const T rr = factor_r<kErf>(vi) * factor_r<kErf>(vj);
      const T u = fmin(fmax(s * rr, T(-1)), T(1));
      const T asin_u = asin(u);
      const T cosine = sqrt((T(1) - u) * (T(1) + u));
      T value, slope;
      if (kErf) {
        value = two_over_pi * asin_u;
        slope = two_over_pi * rr / cosine;
      } else {
        const T pi_minus_acos_u = half_pi + asin_u;
        value = (sqrt(vi) * sqrt(vj)) * (cosine + pi_minus_acos_u * u) * inv_2pi;
        slope = pi_minus_acos_u * inv_2pi;
      }
      const T w = static_cast<T>(weight_vars[l]), c = static_cast<T>(bias_vars[l]);
      const T next = w * value + c;
      t = t * (w * slope) + next;
      s = next;
    }
    sigma[k] = s;
    theta[k] = t;
    if (symmetric) {
      sigma[j * n2 + i] = s;
      theta[j * n2 + i] = t;
    }
  }
}

template <typename T>
void fc_kernels(T* sigma, T* theta, const T* var1, const T* var2, const double* weight_vars, const double* bias_vars,
                long layers, long n1, long n2, bool erf, bool symmetric, cudaStream_t stream) {
  if (n1 * n2 == 0) return;
  const unsigned blocks = std::min(blocks_for(n1 * n2, kThreads), kMaxBlocks);
  if (erf)
    fc_kernels_kernel<T, true><<<blocks, kThreads, 0, stream>>>(sigma, theta, var1, var2, weight_vars, bias_vars,
                                                               layers, n1, n2, symmetric);
  else
    fc_kernels_kernel<T, false><<<blocks, kThreads, 0, stream>>>(sigma, theta, var1, var2, weight_vars, bias_vars,
                                                                layers, n1, n2, symmetric);
  cuda_check(cudaGetLastError(), "fc_kernels launch");
}

}  // namespace
}  // namespace fastdyn

FASTDYN_BINDINGS(infinite_width) {
  fastdyn::bind_fc_kernels<fastdyn::Cuda>(m, [](auto... args) { fastdyn::fc_kernels(args...); });
}
