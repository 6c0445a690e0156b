// One-hidden-layer ReLU network of the seed (fastdyn.models.OneHidden):
//   f(x_i) = scale * sum_n beta_n relu(omega_n . x_i * inv_sqrt_d + b_n)
// forward: out (p,) from x (p, d), omega (h, d), b (h,), beta (h,). Parallel over points; the neuron
// loop runs over a transposed copy of omega so the compiler vectorises across neurons.
// gradient: grad_theta = sum_i g_i df(x_i)/dtheta for g (p,), with a_n(x) = [pre_n(x) > 0]:
//   grad_omega_n = scale beta_n sum_i g_i a_n(x_i) x_i / sqrt(d),  grad_b_n = scale beta_n sum_i g_i a_n(x_i),
//   grad_beta_n = scale sum_i g_i relu(pre_n(x_i)).
// Parallel over tiles of one SIMD register of neurons (16 in fp32, 8 in fp64); a tile keeps its weights and
// accumulators in registers and streams the points, blocked so a block of x stays in L2. Memory O((h + p) d).
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

// One SIMD register of T (GCC/Clang vector extension: AVX-512 zmm with -march=native, split into narrower
// registers by the compiler elsewhere), so the kernel is explicit about registers without intrinsics.
template <typename T>
struct Simd;
template <>
struct Simd<float> {
  typedef float type __attribute__((vector_size(64)));
  static constexpr long width = 16;
};
template <>
struct Simd<double> {
  typedef double type __attribute__((vector_size(64)));
  static constexpr long width = 8;
};

// Accumulate one neuron tile over points [i0, i1): w[k] = omega_tile[:, k] / sqrt(d) across lanes, acc[0..d) the
// sums of g a x_k, acc[d] of g a, acc[d + 1] of g relu(pre). D > 0 fixes d at compile time (registers); D = 0 is
// the runtime-d path (arrays in L1).
template <typename T, int D>
void gradient_tile(const T* x, const T* g, long i0, long i1, long d_runtime, const typename Simd<T>::type* w,
                   typename Simd<T>::type bias, typename Simd<T>::type* acc) {
  using V = typename Simd<T>::type;
  const long d = D > 0 ? D : d_runtime;
  constexpr int kSlots = D > 0 ? D : 1;
  V wr[kSlots], ax[kSlots];
  const V* wk = w;
  V* axk = acc;
  if constexpr (D > 0) {
    for (int k = 0; k < D; ++k) wr[k] = w[k], ax[k] = acc[k];
    wk = wr;
    axk = ax;
  }
  const V zero = V{};
  V acc_b = acc[d], acc_beta = acc[d + 1];
  for (long i = i0; i < i1; ++i) {
    const T* xi = x + i * d;
    // two partial sums halve the dependency chain of the pre-activation
    V pre_even = bias, pre_odd = zero;
    for (long k = 0; k + 1 < d; k += 2) {
      pre_even += wk[k] * xi[k];
      pre_odd += wk[k + 1] * xi[k + 1];
    }
    if (d % 2) pre_even += wk[d - 1] * xi[d - 1];
    const V pre = pre_even + pre_odd;
    const V gi = zero + g[i];
    const V gated = pre > zero ? gi : zero;
    for (long k = 0; k < d; ++k) axk[k] += gated * xi[k];
    acc_b += gated;
    acc_beta += gated * pre;
  }
  if constexpr (D > 0)
    for (int k = 0; k < D; ++k) acc[k] = ax[k];
  acc[d] = acc_b;
  acc[d + 1] = acc_beta;
}

template <typename T, int D>
void gradient_tile_dispatch(const T* x, const T* g, long i0, long i1, long d, const typename Simd<T>::type* w,
                            typename Simd<T>::type bias, typename Simd<T>::type* acc) {
  if constexpr (D == 0) {
    gradient_tile<T, 0>(x, g, i0, i1, d, w, bias, acc);
  } else {
    if (d == D)
      gradient_tile<T, D>(x, g, i0, i1, d, w, bias, acc);
    else
      gradient_tile_dispatch<T, D - 1>(x, g, i0, i1, d, w, bias, acc);
  }
}

constexpr int kMaxRegisterD = 16;  // d above this runs the runtime-d path
constexpr long kBlockBytes = 256 * 1024;  // points per block: x block of about this size (L2)

template <typename T>
void onehidden_gradient(const T* x, const T* g, const T* omega, const T* b, const T* beta, T* grad_omega, T* grad_b,
                        T* grad_beta, long p, long d, long h, T inv_sqrt_d, T scale, int n_threads) {
  using V = typename Simd<T>::type;
  constexpr long W = Simd<T>::width;
  use_threads(n_threads);
  const long tiles = (h + W - 1) / W;
  const long stride = d + 2;  // vectors per tile: d weights/accumulators, then b / acc_b, acc_beta
  // weights: (tiles, d) vectors of omega / sqrt(d); padding lanes get omega = 0, b = -1 (never active)
  std::vector<V> weights(static_cast<size_t>(tiles * d)), biases(static_cast<size_t>(tiles));
  std::vector<V> acc(static_cast<size_t>(tiles * stride));
#pragma omp parallel for schedule(static)
  for (long t = 0; t < tiles; ++t) {
    for (long k = 0; k < d; ++k) {
      V v = V{};
      for (long l = 0; l < W && t * W + l < h; ++l) v[l] = omega[(t * W + l) * d + k] * inv_sqrt_d;
      weights[t * d + k] = v;
    }
    V bias = V{} - T(1);
    for (long l = 0; l < W && t * W + l < h; ++l) bias[l] = b[t * W + l];
    biases[t] = bias;
    for (long k = 0; k < stride; ++k) acc[t * stride + k] = V{};
  }
  const long block = std::max<long>(256, kBlockBytes / static_cast<long>(sizeof(T) * d));
#pragma omp parallel
  for (long i0 = 0; i0 < p; i0 += block) {
    const long i1 = std::min(p, i0 + block);
    // static schedule with the same trip count: each tile stays with one thread across point blocks
#pragma omp for schedule(static) nowait
    for (long t = 0; t < tiles; ++t)
      gradient_tile_dispatch<T, kMaxRegisterD>(x, g, i0, i1, d, weights.data() + t * d, biases[t],
                                               acc.data() + t * stride);
  }
#pragma omp parallel for schedule(static)
  for (long n = 0; n < h; ++n) {
    const V* a = acc.data() + (n / W) * stride;
    const long l = n % W;
    const T sb = scale * beta[n];
    for (long k = 0; k < d; ++k) grad_omega[n * d + k] = sb * inv_sqrt_d * a[k][l];
    grad_b[n] = sb * a[d][l];
    grad_beta[n] = scale * a[d + 1][l];
  }
}

template <typename T>
void bind_gradient(pybind11::module_& m, const char* name) {
  m.def(
      name,
      [](std::uintptr_t x, std::uintptr_t g, std::uintptr_t omega, std::uintptr_t b, std::uintptr_t beta,
         std::uintptr_t grad_omega, std::uintptr_t grad_b, std::uintptr_t grad_beta, long p, long d, long h,
         double scale, int n_threads) {
        pybind11::gil_scoped_release release;
        onehidden_gradient<T>(ptr<const T>(x), ptr<const T>(g), ptr<const T>(omega), ptr<const T>(b),
                              ptr<const T>(beta), ptr<T>(grad_omega), ptr<T>(grad_b), ptr<T>(grad_beta), p, d, h,
                              static_cast<T>(1.0 / std::sqrt(static_cast<double>(d))), static_cast<T>(scale),
                              n_threads);
      },
      "OneHidden ReLU gradient of sum_i g_i f(x_i): writes grad_omega (h, d), grad_b (h,), grad_beta (h,)");
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
  fastdyn::bind_gradient<float>(m, "onehidden_gradient_f32");
  fastdyn::bind_gradient<double>(m, "onehidden_gradient_f64");
}
