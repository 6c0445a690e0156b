// One-hidden-layer ReLU network of the seed (fastdyn.models.OneHidden):
//   f(x_i) = scale * sum_n beta_n relu(omega_n . x_i * inv_sqrt_d + b_n)
// forward: out (p,) from x (p, d), omega (h, d), b (h,), beta (h,). Parallel over points; the neuron
// loop runs over a transposed copy of omega so the compiler vectorises across neurons.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/threads.hpp"
#include "registry.hpp"

namespace fastdyn {
namespace {

constexpr long kNeuronTile = 512;

template <typename T>
void onehidden_forward(const T* x, const T* omega, const T* b, const T* beta, T* out, long p, long d, long h,
                       T inv_sqrt_d, T scale, int n_threads) {
  use_threads(n_threads);
  std::vector<T> omega_t(static_cast<size_t>(d * h));  // (d, h), pre-scaled by inv_sqrt_d
#pragma omp parallel for schedule(static)
  for (long n = 0; n < h; ++n)
    for (long k = 0; k < d; ++k) omega_t[k * h + n] = omega[n * d + k] * inv_sqrt_d;

#pragma omp parallel
  {
    std::vector<T> pre(kNeuronTile);
#pragma omp for schedule(static)
    for (long i = 0; i < p; ++i) {
      const T* xi = x + i * d;
      T total = 0;
      for (long n0 = 0; n0 < h; n0 += kNeuronTile) {
        const long nt = std::min(kNeuronTile, h - n0);
        for (long n = 0; n < nt; ++n) pre[n] = b[n0 + n];
        for (long k = 0; k < d; ++k) {
          const T xk = xi[k];
          const T* row = omega_t.data() + k * h + n0;
#pragma omp simd
          for (long n = 0; n < nt; ++n) pre[n] += xk * row[n];
        }
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (long n = 0; n < nt; ++n) acc += beta[n0 + n] * std::max(pre[n], T(0));
        total += acc;
      }
      out[i] = scale * total;
    }
  }
}

template <typename T>
void bind_forward(pybind11::module_& m, const char* name) {
  m.def(
      name,
      [](std::uintptr_t x, std::uintptr_t omega, std::uintptr_t b, std::uintptr_t beta, std::uintptr_t out, long p,
         long d, long h, double scale, int n_threads) {
        pybind11::gil_scoped_release release;
        onehidden_forward<T>(ptr<const T>(x), ptr<const T>(omega), ptr<const T>(b), ptr<const T>(beta), ptr<T>(out),
                             p, d, h, static_cast<T>(1.0 / std::sqrt(static_cast<double>(d))),
                             static_cast<T>(scale), n_threads);
      },
      "OneHidden ReLU forward: out (p,) = scale * relu(x omega^T / sqrt(d) + b) beta");
}

}  // namespace
}  // namespace fastdyn

FASTDYN_BINDINGS(onehidden) {
  fastdyn::bind_forward<float>(m, "onehidden_forward_f32");
  fastdyn::bind_forward<double>(m, "onehidden_forward_f64");
}
