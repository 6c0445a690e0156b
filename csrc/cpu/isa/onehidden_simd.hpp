// The one-hidden-layer ReLU kernels for one instruction-set path, written once with the vector width and register
// budget of the compile flags (GCC/Clang vector extension, no intrinsics). onehidden_isa.cpp includes this with
// FASTDYN_ISA = baseline | avx2 | avx512 and that path's flags; everything here lives in fastdyn::cpu::FASTDYN_ISA,
// and no std template with code is used, so no inline function compiled with one path's instructions can be shared
// (by the linker's choice of one copy) with another path.
//
// Layout: neurons in SIMD lanes. A tile is one vector of W neurons (W = 8 fp32 / 4 fp64 on AVX2, 16 / 8 on
// AVX-512, 4 / 2 on SSE2 and NEON); its weights omega / sqrt(d) are packed as d vectors (pack_tile), padding lanes
// get omega = 0, b = -1 (never active), beta = 0.
//   forward:  runs of kRun points; per tile, the tile's weights in registers, sums[i] += beta relu(pre_i).
//   jvp:      as forward with the direction's tile beside it, sums[i] += [pre_i > 0] (v_beta pre_i + beta u_i).
//   moments:  per tile and run of points two passes through L1 buffers: pass 1 (weights in registers) stores
//             pre_i and the gated weights g_i [pre_i > 0]; pass 2 sums them against the coordinates of x (and 1 and
//             pre_i), up to kColumns accumulators in registers.
// Register budget (16 vector registers on SSE2/AVX2, 32 on AVX-512/NEON): d <= kRegisterD runs with the weights in
// registers (compile-time d), larger d reads them from L1. Each neuron's sums run over the points in a fixed order
// (runs of kRun points summed in fresh registers, then the runs), whatever the thread schedule.
#pragma once
#include <cstdint>
#include <type_traits>

#include "cpu/isa/kernels.hpp"

#ifndef FASTDYN_ISA
#error "compile this through csrc/cpu/isa/onehidden_isa.cpp with -DFASTDYN_ISA=baseline|avx2|avx512"
#endif

namespace fastdyn::cpu::FASTDYN_ISA {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64, kRegisters = 32;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32, kRegisters = 16;
#elif defined(__aarch64__)
constexpr int kVectorBytes = 16, kRegisters = 32;
#else  // SSE2, or scalar code from the vector extension
constexpr int kVectorBytes = 16, kRegisters = 16;
#endif

template <typename T>
struct Simd {
  typedef T type __attribute__((vector_size(kVectorBytes)));
  static constexpr long width = kVectorBytes / static_cast<long>(sizeof(T));
};

constexpr long kRun = 128;                // points per run (L1 buffers of kRun vectors)
constexpr int kRegisterD = kRegisters - 6;  // weights + bias, pre, broadcast, zero, g, sum
constexpr int kColumns = kRegisters - 4;    // pass-2 accumulators; + gated, broadcast, 2 for the compiler
constexpr long kBlockBytes = 256 * 1024;  // moments: blocks of x of about this size, shared by a group of tiles (L2)

// s in every lane (s - 0 is s for every s, so this compiles to one broadcast)
template <typename T>
typename Simd<T>::type splat(T s) {
  return s - typename Simd<T>::type{};
}

inline long min_long(long a, long b) { return a < b ? a : b; }
inline long max_long(long a, long b) { return a > b ? a : b; }

// An uninitialised array of n vectors (over-aligned new), freed at scope exit.
template <typename V>
class Scratch {
 public:
  explicit Scratch(long n) : data_(n > 0 ? new V[n] : nullptr) {}
  ~Scratch() { delete[] data_; }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  V* data() { return data_; }
  V& operator[](long i) { return data_[i]; }

 private:
  V* data_;
};

// The weights of one tile: in registers for a compile-time D > 0 (= d), read from L1 for D = 0.
template <typename T, int D>
struct Tile {
  using V = typename Simd<T>::type;
  V w[D], bias;
  Tile(const V* weights, V b, long) : bias(b) {
    for (int k = 0; k < D; ++k) w[k] = weights[k];
  }
  V pre(const T* xi) const {  // two chains: a point's latency stays short, more points fit the OoO window
    V even = bias, odd = V{};
    for (int k = 0; k + 1 < D; k += 2) even += w[k] * xi[k], odd += w[k + 1] * xi[k + 1];
    if constexpr (D % 2 == 1) even += w[D - 1] * xi[D - 1];
    return even + odd;
  }
};
template <typename T>
struct Tile<T, 0> {
  using V = typename Simd<T>::type;
  const V* w;
  V bias;
  long d;
  Tile(const V* weights, V b, long d_) : w(weights), bias(b), d(d_) {}
  V pre(const T* xi) const {
    V even = bias, odd = V{};  // two chains: d can be large here
    long k = 0;
    for (; k + 1 < d; k += 2) even += w[k] * xi[k], odd += w[k + 1] * xi[k + 1];
    if (k < d) even += w[k] * xi[k];
    return even + odd;
  }
};

// fn(std::integral_constant<int, D>) with D = d when 1 <= d <= kRegisterD, else D = 0.
template <int D = kRegisterD, typename Fn>
void with_d(long d, Fn&& fn) {
  if constexpr (D == 0) {
    fn(std::integral_constant<int, 0>{});
  } else {
    if (d == D)
      fn(std::integral_constant<int, D>{});
    else
      with_d<D - 1>(d, fn);
  }
}

// Pack tile t of omega (h, d) / sqrt(d) into weights (d vectors), of b into *bias and, unless null, of beta into
// *betas; padding lanes get omega = 0, b = -1, beta = 0 (never active, no contribution).
template <typename T>
void pack_tile(const T* omega, const T* b, const T* beta, long d, long h, T inv_sqrt_d, long t,
               typename Simd<T>::type* weights, typename Simd<T>::type* bias, typename Simd<T>::type* betas) {
  using V = typename Simd<T>::type;
  constexpr long W = Simd<T>::width;
  const long lanes = min_long(W, h - t * W);
  for (long k = 0; k < d; ++k) {
    V v = V{};
    for (long l = 0; l < lanes; ++l) v[l] = omega[(t * W + l) * d + k] * inv_sqrt_d;
    weights[k] = v;
  }
  V b_t = V{} - T(1), beta_t = V{};
  for (long l = 0; l < lanes; ++l) b_t[l] = b[t * W + l], beta_t[l] = beta ? beta[t * W + l] : T(0);
  *bias = b_t;
  if (betas) *betas = beta_t;
}

constexpr long kParallelPack = 1L << 16;  // forward: pack the tiles in parallel above this many vectors

// out (p,) = scale * sum_n beta_n relu(pre_n(x_i)). Parallel over runs of points; per point the tiles, then the
// lanes, are summed in a fixed order.
template <typename T>
void forward(const T* x, const T* omega, const T* b, const T* beta, T* out, long p, long d, long h, T inv_sqrt_d,
             T scale, int threads) {
  using V = typename Simd<T>::type;
  constexpr long W = Simd<T>::width;
  const long tiles = (h + W - 1) / W;
  Scratch<V> weights(tiles * d), biases(tiles), betas(tiles);
#pragma omp parallel for schedule(static) num_threads(threads) if (tiles * d > kParallelPack)
  for (long t = 0; t < tiles; ++t)
    pack_tile(omega, b, beta, d, h, inv_sqrt_d, t, weights.data() + t * d, biases.data() + t, betas.data() + t);
  const long runs = (p + kRun - 1) / kRun;
#pragma omp parallel num_threads(threads)
  {
    Scratch<V> sums(kRun);
#pragma omp for schedule(dynamic)
    for (long r = 0; r < runs; ++r) {
      const long i0 = r * kRun, n = min_long(kRun, p - i0);
      const T* xs = x + i0 * d;
      for (long i = 0; i < n; ++i) sums[i] = V{};
      with_d(d, [&](auto D) {
        for (long t = 0; t < tiles; ++t) {
          const Tile<T, decltype(D)::value> tile(weights.data() + t * d, biases[t], d);
          const V beta_t = betas[t], zero = V{};
          for (long i = 0; i < n; ++i) {
            const V value = tile.pre(xs + i * d);
            sums[i] += beta_t * (value > zero ? value : zero);
          }
        }
      });
      for (long i = 0; i < n; ++i) {
        T total = 0;
        for (long l = 0; l < W; ++l) total += sums[i][l];
        out[i0 + i] = scale * total;
      }
    }
  }
}

// The directional derivative of f along (v_omega, v_b, v_beta): out (p,) = scale * sum_n [v_beta_n relu(pre_ni)
// + beta_n [pre_ni > 0] (v_omega_n . x_i / sqrt(d) + v_b_n)], the network's Jacobian times a parameter vector.
// As forward, with a second tile of the direction's weights: both in registers for d <= kRegisterD / 2.
template <typename T>
void jvp(const T* x, const T* omega, const T* b, const T* beta, const T* v_omega, const T* v_b, const T* v_beta,
         T* out, long p, long d, long h, T inv_sqrt_d, T scale, int threads) {
  using V = typename Simd<T>::type;
  constexpr long W = Simd<T>::width;
  const long tiles = (h + W - 1) / W;
  Scratch<V> weights(tiles * d), biases(tiles), betas(tiles), v_weights(tiles * d), v_biases(tiles),
      v_betas(tiles);
#pragma omp parallel for schedule(static) num_threads(threads) if (tiles * d > kParallelPack)
  for (long t = 0; t < tiles; ++t) {
    pack_tile(omega, b, beta, d, h, inv_sqrt_d, t, weights.data() + t * d, biases.data() + t, betas.data() + t);
    pack_tile(v_omega, v_b, v_beta, d, h, inv_sqrt_d, t, v_weights.data() + t * d, v_biases.data() + t,
              v_betas.data() + t);
  }
  const long runs = (p + kRun - 1) / kRun;
#pragma omp parallel num_threads(threads)
  {
    Scratch<V> sums(kRun);
#pragma omp for schedule(dynamic)
    for (long r = 0; r < runs; ++r) {
      const long i0 = r * kRun, n = min_long(kRun, p - i0);
      const T* xs = x + i0 * d;
      for (long i = 0; i < n; ++i) sums[i] = V{};
      with_d<kRegisterD / 2>(d, [&](auto D) {
        for (long t = 0; t < tiles; ++t) {
          const Tile<T, decltype(D)::value> tile(weights.data() + t * d, biases[t], d);
          const Tile<T, decltype(D)::value> direction(v_weights.data() + t * d, v_biases[t], d);
          const V beta_t = betas[t], v_beta_t = v_betas[t], zero = V{};
          for (long i = 0; i < n; ++i) {
            const V value = tile.pre(xs + i * d), change = direction.pre(xs + i * d);
            sums[i] += value > zero ? v_beta_t * value + beta_t * change : zero;
          }
        }
      });
      for (long i = 0; i < n; ++i) {
        T total = 0;
        for (long l = 0; l < W; ++l) total += sums[i][l];
        out[i0 + i] = scale * total;
      }
    }
  }
}

// Pass 2 over one run of n points: acc[k] += sum_i gated[i] x_i[k] for k < K (x, acc offset to the first column),
// and with Tail also acc[K] += sum_i gated[i], acc[K + 1] += sum_i gated[i] pre[i].
template <typename T, int K, bool Tail>
void sum_columns(const T* x, long d, long n, const typename Simd<T>::type* gated, const typename Simd<T>::type* pre,
                 typename Simd<T>::type* acc) {
  using V = typename Simd<T>::type;
  V part[K + 2];
  for (int k = 0; k < K + 2; ++k) part[k] = V{};
  for (long i = 0; i < n; ++i) {
    const V gi = gated[i];
    const T* xi = x + i * d;
    for (int k = 0; k < K; ++k) part[k] += gi * xi[k];
    if constexpr (Tail) part[K] += gi, part[K + 1] += gi * pre[i];
  }
  for (int k = 0; k < (Tail ? K + 2 : K); ++k) acc[k] += part[k];
}

// The last r <= kColumns columns and the two tail sums, by compile-time width K = r.
template <typename T, int K = kColumns>
void sum_last_columns(const T* x, long d, long r, long n, const typename Simd<T>::type* gated,
                      const typename Simd<T>::type* pre, typename Simd<T>::type* acc) {
  if constexpr (K == 0) {
    sum_columns<T, 0, true>(x, d, n, gated, pre, acc);
  } else if (r != K) {
    sum_last_columns<T, K - 1>(x, d, r, n, gated, pre, acc);
  } else if constexpr (K + 2 <= kColumns) {
    sum_columns<T, K, true>(x, d, n, gated, pre, acc);
  } else {
    sum_columns<T, K, false>(x, d, n, gated, pre, acc);
    sum_columns<T, 0, true>(x + K, d, n, gated, pre, acc + K);
  }
}

// Pass 1 over one run of n points: pre[i] = the tile's pre-activations of x_i, gated[i] = g_i [pre[i] > 0]. The
// weights are loaded here, so they live in registers for the loop (D > 0).
template <typename T, int D>
void gate_run(const T* x, const T* g, long n, long d, const typename Simd<T>::type* weights,
              typename Simd<T>::type bias, typename Simd<T>::type* gated, typename Simd<T>::type* pre) {
  using V = typename Simd<T>::type;
  const Tile<T, D> tile(weights, bias, d);
  const V zero = V{};
  for (long i = 0; i < n; ++i) {
    const V value = tile.pre(x + i * d);
    pre[i] = value;
    gated[i] = value > zero ? splat(g[i]) : zero;
  }
}

// One tile over points [i0, i1): acc (d + 2 vectors) += the tile's moments (sums of g a x_k, g a, g a pre).
template <typename T, int D>
void moments_tile(const T* x, const T* g, long i0, long i1, long d, const typename Simd<T>::type* weights,
                  typename Simd<T>::type bias, typename Simd<T>::type* acc, typename Simd<T>::type* gated,
                  typename Simd<T>::type* pre) {
  for (long s0 = i0; s0 < i1; s0 += kRun) {
    const long n = min_long(kRun, i1 - s0);
    const T* xs = x + s0 * d;
    gate_run<T, D>(xs, g + s0, n, d, weights, bias, gated, pre);
    long k0 = 0;
    for (; d - k0 > kColumns; k0 += kColumns) sum_columns<T, kColumns, false>(xs + k0, d, n, gated, pre, acc + k0);
    sum_last_columns<T>(xs + k0, d, d - k0, n, gated, pre, acc + k0);
  }
}

// Per-neuron moments of g over the points: sx (h, d) = sum_i g_i a_ni x_i, s1 (h,) = sum_i g_i a_ni,
// sp (h,) = sum_i g_i a_ni pre_ni; with beta (h,) (else null) the gradient instead: sx scaled by
// scale beta_n inv_sqrt_d, s1 by scale beta_n, sp by scale. One parallel region over groups of tiles: a group packs
// its tiles, streams x in blocks that stay in L2 while the group's tiles use them, and writes its neurons.
template <typename T>
void moments(const T* x, const T* g, const T* omega, const T* b, const T* beta, T scale, T* sx, T* s1, T* sp, long p,
             long d, long h, T inv_sqrt_d, int threads) {
  using V = typename Simd<T>::type;
  constexpr long W = Simd<T>::width;
  const long tiles = (h + W - 1) / W, stride = d + 2;
  const long block = max_long(kRun, kBlockBytes / static_cast<long>(sizeof(T) * max_long(d, 1)));
  // groups handed out dynamically: a thread the OS delays (shared machines) does not hold up the others
  const long group = max_long(1, min_long(8, tiles / (4L * threads)));
  const long groups = (tiles + group - 1) / group;
#pragma omp parallel num_threads(threads)
  {
    Scratch<V> weights(group * d), biases(group), acc(group * stride), gated(kRun), pre(kRun);
#pragma omp for schedule(dynamic)
    for (long q = 0; q < groups; ++q) {
      const long t0 = q * group, nt = min_long(group, tiles - t0);
      for (long j = 0; j < nt; ++j)
        pack_tile<T>(omega, b, nullptr, d, h, inv_sqrt_d, t0 + j, weights.data() + j * d, biases.data() + j, nullptr);
      for (long j = 0; j < nt * stride; ++j) acc[j] = V{};
      with_d(d, [&](auto D) {
        for (long i0 = 0; i0 < p; i0 += block)
          for (long j = 0; j < nt; ++j)
            moments_tile<T, decltype(D)::value>(x, g, i0, min_long(p, i0 + block), d, weights.data() + j * d,
                                                biases[j], acc.data() + j * stride, gated.data(), pre.data());
      });
      for (long n = t0 * W; n < min_long(h, (t0 + nt) * W); ++n) {
        const V* a = acc.data() + (n / W - t0) * stride;
        const long l = n % W;
        const T sb = beta ? scale * beta[n] : T(1), cw = beta ? sb * inv_sqrt_d : T(1), cp = beta ? scale : T(1);
        for (long k = 0; k < d; ++k) sx[n * d + k] = cw * a[k][l];
        s1[n] = sb * a[d][l];
        sp[n] = cp * a[d + 1][l];
      }
    }
  }
}

// Activation-pattern keys for kinks.attractors: for each neuron a 128-bit hash of its bits a_n(x_i), i = 0..p-1,
// and the number of points where it is active, without storing any pattern. Bits are gathered 32 points at a time
// per SIMD lane and folded into two independent multiply-xorshift streams (each step a bijection of the state).
template <typename T>
void pattern_keys(const T* x, const T* omega, const T* b, std::uint64_t* keys, long p, long d, long h, T inv_sqrt_d,
                  int threads) {
  using V = typename Simd<T>::type;
  using Mask = decltype(V{} > V{});  // lanes of -1 / 0, int32 for float, int64 for double
  using Lane = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
  constexpr long W = Simd<T>::width;
  const long tiles = (h + W - 1) / W;
#pragma omp parallel num_threads(threads)
  {
    Scratch<V> weights(d);
#pragma omp for schedule(dynamic, 16)
    for (long t = 0; t < tiles; ++t) {
      std::uint64_t s1[W], s2[W], count[W];
      for (long l = 0; l < W; ++l) s1[l] = 0x243F6A8885A308D3ULL, s2[l] = 0x13198A2E03707344ULL, count[l] = 0;
      V bias;
      pack_tile<T>(omega, b, nullptr, d, h, inv_sqrt_d, t, weights.data(), &bias, nullptr);
      with_d(d, [&](auto D) {
        const Tile<T, decltype(D)::value> tile(weights.data(), bias, d);
        for (long i0 = 0; i0 < p; i0 += 32) {
          const long i1 = min_long(p, i0 + 32);
          Mask word = Mask{};
          for (long i = i0; i < i1; ++i)
            word |= (tile.pre(x + i * d) > V{}) & (Mask{} + static_cast<Lane>(std::uint32_t(1) << (i - i0)));
          for (long l = 0; l < W; ++l) {
            const std::uint64_t bits = static_cast<std::uint32_t>(word[l]);
            s1[l] = (s1[l] ^ bits) * 0x9E3779B97F4A7C15ULL;
            s1[l] ^= s1[l] >> 32;
            s2[l] = (s2[l] + bits + 1) * 0xC2B2AE3D27D4EB4FULL;
            s2[l] ^= s2[l] >> 29;
            count[l] += static_cast<std::uint64_t>(__builtin_popcountll(bits));
          }
        }
      });
      for (long l = 0; l < W && t * W + l < h; ++l) {
        std::uint64_t* key = keys + (t * W + l) * 3;
        key[0] = s1[l], key[1] = s2[l], key[2] = count[l];
      }
    }
  }
}

}  // namespace fastdyn::cpu::FASTDYN_ISA
