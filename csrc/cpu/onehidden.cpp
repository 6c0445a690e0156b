// One-hidden-layer ReLU network of the seed (fastdyn.models.OneHidden):
//   f(x_i) = scale * sum_n beta_n relu(omega_n . x_i * inv_sqrt_d + b_n)
// forward: out (p,) from x (p, d), omega (h, d), b (h,), beta (h,). Parallel over points; the neuron
// loop runs over a transposed copy of omega so the compiler vectorises across neurons.
// gradient: grad_theta = sum_i g_i df(x_i)/dtheta for g (p,), with a_n(x) = [pre_n(x) > 0]:
//   grad_omega_n = scale beta_n sum_i g_i a_n(x_i) x_i / sqrt(d),  grad_b_n = scale beta_n sum_i g_i a_n(x_i),
//   grad_beta_n = scale sum_i g_i relu(pre_n(x_i)).
// Parallel over tiles of one SIMD register of neurons (16 in fp32, 8 in fp64); a tile keeps its weights and
// accumulators in registers and streams the points, in blocks of x that stay in L2. Memory O((h + p) d).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu/parallel.hpp"
#include "registry.hpp"
#include "signatures.hpp"

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

constexpr long kRun = 128;  // points summed in fresh registers before joining the tile's running sums

// Accumulate one neuron tile over points [i0, i1): w[k] = omega_tile[:, k] / sqrt(d) across lanes, acc[0..d) the
// sums of g a x_k, acc[d] of g a, acc[d + 1] of g relu(pre). Two-level summation (runs of kRun points, then the
// runs) keeps the fp32 rounding error near eps (kRun + p / kRun) instead of eps p.
// Small d (compile-time D): weights and partial sums live in registers, one pass per point.
template <typename T, int D>
void gradient_tile_registers(const T* x, const T* g, long i0, long i1, const typename Simd<T>::type* w,
                             typename Simd<T>::type bias, typename Simd<T>::type* acc) {
  using V = typename Simd<T>::type;
  constexpr long d = D;
  V wr[D], part[D];
  for (int k = 0; k < D; ++k) wr[k] = w[k];
  const V zero = V{};
  for (long s0 = i0; s0 < i1; s0 += kRun) {
    const long s1 = std::min(i1, s0 + kRun);
    for (long k = 0; k < d; ++k) part[k] = zero;
    V part_b = zero, part_beta = zero;
    for (long i = s0; i < s1; ++i) {
      const T* xi = x + i * d;
      // two partial sums halve the dependency chain of the pre-activation
      V pre_even = bias, pre_odd = zero;
      for (long k = 0; k + 1 < d; k += 2) {
        pre_even += wr[k] * xi[k];
        pre_odd += wr[k + 1] * xi[k + 1];
      }
      if (d % 2) pre_even += wr[d - 1] * xi[d - 1];
      const V pre = pre_even + pre_odd;
      const V gated = pre > zero ? zero + g[i] : zero;
      for (long k = 0; k < d; ++k) part[k] += gated * xi[k];
      part_b += gated;
      part_beta += gated * pre;
    }
    for (long k = 0; k < d; ++k) acc[k] += part[k];
    acc[d] += part_b;
    acc[d + 1] += part_beta;
  }
}

// Larger d: two passes per run of points, both streaming from L1. Pass 1 stores the gated weights g_i a_n(x_i)
// of the run (``gated``, ``pre``: kRun vectors each); pass 2 sums them against each input coordinate with four
// independent accumulators (no single long dependency chain).
template <typename T>
void gradient_tile_runs(const T* x, const T* g, long i0, long i1, long d, const typename Simd<T>::type* w,
                        typename Simd<T>::type bias, typename Simd<T>::type* acc, typename Simd<T>::type* gated,
                        typename Simd<T>::type* pre) {
  using V = typename Simd<T>::type;
  const V zero = V{};
  for (long s0 = i0; s0 < i1; s0 += kRun) {
    const long n = std::min(i1 - s0, kRun);
    const T* xs = x + s0 * d;
    V part_b = zero, part_beta = zero;
    for (long i = 0; i < n; ++i) {
      const T* xi = xs + i * d;
      V pre_a = bias, pre_b = zero, pre_c = zero, pre_d = zero;
      long k = 0;
      for (; k + 3 < d; k += 4) {
        pre_a += w[k] * xi[k];
        pre_b += w[k + 1] * xi[k + 1];
        pre_c += w[k + 2] * xi[k + 2];
        pre_d += w[k + 3] * xi[k + 3];
      }
      for (; k < d; ++k) pre_a += w[k] * xi[k];
      const V value = (pre_a + pre_b) + (pre_c + pre_d);
      const V weight = value > zero ? zero + g[s0 + i] : zero;
      pre[i] = value;
      gated[i] = weight;
      part_b += weight;
      part_beta += weight * value;
    }
    for (long k = 0; k < d; ++k) {
      V sum_a = zero, sum_b = zero, sum_c = zero, sum_d = zero;
      long i = 0;
      for (; i + 3 < n; i += 4) {
        sum_a += gated[i] * xs[i * d + k];
        sum_b += gated[i + 1] * xs[(i + 1) * d + k];
        sum_c += gated[i + 2] * xs[(i + 2) * d + k];
        sum_d += gated[i + 3] * xs[(i + 3) * d + k];
      }
      for (; i < n; ++i) sum_a += gated[i] * xs[i * d + k];
      acc[k] += (sum_a + sum_b) + (sum_c + sum_d);
    }
    acc[d] += part_b;
    acc[d + 1] += part_beta;
  }
}

template <typename T, int D>
void gradient_tile(const T* x, const T* g, long i0, long i1, long d, const typename Simd<T>::type* w,
                   typename Simd<T>::type bias, typename Simd<T>::type* acc, typename Simd<T>::type* scratch) {
  if constexpr (D == 0) {
    gradient_tile_runs<T>(x, g, i0, i1, d, w, bias, acc, scratch, scratch + kRun);
  } else {
    if (d == D)
      gradient_tile_registers<T, D>(x, g, i0, i1, w, bias, acc);
    else
      gradient_tile<T, D - 1>(x, g, i0, i1, d, w, bias, acc, scratch);
  }
}

constexpr int kMaxRegisterD = 24;  // d above this runs the two-pass path
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
  // Groups of up to 8 tiles share each block of x while it is in cache; groups are handed out dynamically, so a
  // thread the OS delays (shared machines) does not hold up the others.
  const long group = std::max<long>(1, std::min<long>(8, tiles / (4L * omp_get_max_threads())));
  const long groups = (tiles + group - 1) / group;
#pragma omp parallel
  {
    std::vector<V> scratch(static_cast<size_t>(d > kMaxRegisterD ? 2 * kRun : 0));
#pragma omp for schedule(dynamic)
    for (long q = 0; q < groups; ++q) {
      const long t_end = std::min(tiles, (q + 1) * group);
      for (long i0 = 0; i0 < p; i0 += block) {
        const long i1 = std::min(p, i0 + block);
        for (long t = q * group; t < t_end; ++t)
          gradient_tile<T, kMaxRegisterD>(x, g, i0, i1, d, weights.data() + t * d, biases[t],
                                          acc.data() + t * stride, scratch.data());
      }
    }
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

// Activation-pattern keys for kinks.attractors: for each neuron a 128-bit hash of its bits a_n(x_i), i = 0..p-1,
// and the number of points where it is active, without storing any pattern. Bits are gathered 32 points at a time
// per SIMD lane and folded into two independent multiply-xorshift streams (each step a bijection of the state).
template <typename T>
void onehidden_pattern_keys(const T* x, const T* omega, const T* b, std::uint64_t* keys, long p, long d, long h,
                            T inv_sqrt_d, int n_threads) {
  using V = typename Simd<T>::type;
  using Mask = decltype(V{} > V{});  // lanes of -1 / 0, int32 for float, int64 for double
  using Lane = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
  constexpr long W = Simd<T>::width;
  use_threads(n_threads);
  const long tiles = (h + W - 1) / W;
#pragma omp parallel
  {
    std::vector<V> w(static_cast<size_t>(d));
#pragma omp for schedule(dynamic, 16)
    for (long t = 0; t < tiles; ++t) {
      const V zero = V{};
      V bias = zero - T(1);
      for (long k = 0; k < d; ++k) w[k] = zero;
      for (long l = 0; l < W && t * W + l < h; ++l) {
        for (long k = 0; k < d; ++k) w[k][l] = omega[(t * W + l) * d + k] * inv_sqrt_d;
        bias[l] = b[t * W + l];
      }
      std::uint64_t s1[W], s2[W], count[W];
      for (long l = 0; l < W; ++l) s1[l] = 0x243F6A8885A308D3ULL, s2[l] = 0x13198A2E03707344ULL, count[l] = 0;
      for (long i0 = 0; i0 < p; i0 += 32) {
        const long i1 = std::min(p, i0 + 32);
        Mask word = Mask{};
        for (long i = i0; i < i1; ++i) {
          const T* xi = x + i * d;
          V pre = bias;
          for (long k = 0; k < d; ++k) pre += w[k] * xi[k];
          word |= (pre > zero) & (Mask{} + static_cast<Lane>(std::uint32_t(1) << (i - i0)));
        }
        for (long l = 0; l < W; ++l) {
          const std::uint64_t bits = static_cast<std::uint32_t>(word[l]);
          s1[l] = (s1[l] ^ bits) * 0x9E3779B97F4A7C15ULL;
          s1[l] ^= s1[l] >> 32;
          s2[l] = (s2[l] + bits + 1) * 0xC2B2AE3D27D4EB4FULL;
          s2[l] ^= s2[l] >> 29;
          count[l] += static_cast<std::uint64_t>(__builtin_popcountll(bits));
        }
      }
      for (long l = 0; l < W && t * W + l < h; ++l) {
        std::uint64_t* key = keys + (t * W + l) * 3;
        key[0] = s1[l], key[1] = s2[l], key[2] = count[l];
      }
    }
  }
}

}  // namespace
}  // namespace fastdyn

FASTDYN_BINDINGS(onehidden) {
  fastdyn::bind_onehidden_forward<fastdyn::Cpu>(m, [](auto... args) { fastdyn::onehidden_forward(args...); });
  fastdyn::bind_onehidden_gradient<fastdyn::Cpu>(m, [](auto... args) { fastdyn::onehidden_gradient(args...); });
  namespace py = pybind11;
  using fastdyn::Buffer, fastdyn::Call, fastdyn::Dtype, fastdyn::inv_sqrt;
  m.def(
      "onehidden_pattern_keys",
      [](Buffer x, Buffer omega, Buffer b, Buffer keys, int threads) {
        Call call("onehidden_pattern_keys", fastdyn::kDLCPU);
        call.check("x", x, {"p", "d"});
        call.check("omega", omega, {"h", "d"});
        call.check("b", b, {"h"});
        call.check("keys", keys, {"h", "3"}, Dtype::kUInt64);
        const long p = call.size("p"), d = call.size("d"), h = call.size("h");
        call.dispatch([&](auto zero) {
          using T = decltype(zero);
          py::gil_scoped_release release;
          fastdyn::onehidden_pattern_keys<T>(x.data<T>(), omega.data<T>(), b.data<T>(), keys.data<std::uint64_t>(),
                                             p, d, h, inv_sqrt<T>(d), threads);
        });
      },
      "Per-neuron activation-pattern keys (h, 3) uint64: two 64-bit hashes of the bits [pre_n(x_i) > 0] and the "
      "number of active points",
      py::arg("x"), py::arg("omega"), py::arg("b"), py::arg("keys"), py::kw_only(), py::arg("threads"));
}
