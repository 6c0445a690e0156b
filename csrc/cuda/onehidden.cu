// One-hidden-layer ReLU network forward on the GPU (see csrc/cpu/onehidden.cpp for the maths):
// one block per point, threads stride over neurons, block reduction of beta_n relu(pre_n).
#include "cuda/check.cuh"
#include "registry.hpp"

namespace fastdyn {
namespace {

constexpr int kThreads = 256;

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
  __shared__ T partial[kThreads];
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[i] = scale * partial[0];
}

template <typename T>
void bind_forward(pybind11::module_& m, const char* name) {
  m.def(
      name,
      [](std::uintptr_t x, std::uintptr_t omega, std::uintptr_t b, std::uintptr_t beta, std::uintptr_t out, long p,
         long d, long h, double scale, std::uintptr_t stream) {
        if (p == 0) return;
        const T inv_sqrt_d = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d)));
        onehidden_forward_kernel<T><<<static_cast<unsigned>(p), kThreads, 0, as_stream(stream)>>>(
            ptr<const T>(x), ptr<const T>(omega), ptr<const T>(b), ptr<const T>(beta), ptr<T>(out), d, h,
            inv_sqrt_d, static_cast<T>(scale));
        cuda_check(cudaGetLastError(), "onehidden_forward launch");
      },
      "OneHidden ReLU forward on the current stream (device pointers)");
}

}  // namespace
}  // namespace fastdyn

FASTDYN_BINDINGS(onehidden) {
  fastdyn::bind_forward<float>(m, "onehidden_forward_f32");
  fastdyn::bind_forward<double>(m, "onehidden_forward_f64");
}
