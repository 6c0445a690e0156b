// The layer recursion of the infinite-width kernels (fastdyn.kernels) over an (n1, n2) matrix, for one
// instruction-set path: compiled once per path (CMake object libraries fastdyn_isa_<path>, -DFASTDYN_ISA=<path>,
// -fno-math-errno so that sqrt vectorises); cpu/infinite_width.cpp dispatches between them.
//
// Per entry (i, j) and layer l = 1..L, with s = Sigma_l(x_i, x_j) and the per-point factors q = sqrt(var) and
// r = 1 / sqrt(var) (ReLU) or r = sqrt(2 / (1 + 2 var)) (erf) of the variances var = Sigma_l(x, x):
//   u = clamp(s (r_i r_j), -1, 1)   (ReLU: the cosine of the angle; erf: 2 s / sqrt((1 + 2 var_i)(1 + 2 var_j)))
//   ReLU:  E[act act'] = q_i q_j (sqrt(1 - u^2) + (pi - acos u) u) / (2 pi),   E[act' act'] = (pi - acos u) / (2 pi)
//   erf:   E[act act'] = (2 / pi) asin u,   E[act' act'] = (2 / pi) (r_i r_j) / sqrt(1 - u^2)
//   Sigma_{l+1} = w_l E[act act'] + c_l,    Theta_{l+1} = Theta_l w_l E[act' act'] + Sigma_{l+1}.
// Every operation is symmetric in (i, j) (products of the two points' factors are formed first), so an exactly
// symmetric Sigma_1 gives exactly symmetric kernels. asin on [0, 1/2] is its Taylor series in z = s^2 (24 terms in
// fp64, 10 in fp32: truncation below half an ulp), the rest of [-1, 1] by asin(a) = pi/2 - 2 asin(sqrt((1 - a)/2)):
// only +, *, sqrt and selects, so the loops vectorise without a vector math library. Rows are split over threads,
// each row is worked in chunks of kChunk columns that stay in L1 through the L layers. The kernel of a set of points
// with itself (symmetric) first makes Sigma_1 exactly symmetric (BLAS does not promise it of x x^T): one blocked pass,
// cheaper than working half the tiles and mirroring them (measured: the transposed writes of two outputs cost more
// than the layers they save, except deep fp64 recursions).
#include <algorithm>
#include <vector>

#include "cpu/isa/kernels.hpp"

#ifndef FASTDYN_ISA
#error "compile this with -DFASTDYN_ISA=baseline|avx2|avx512 (CMake targets fastdyn_isa_<path>)"
#endif

namespace fastdyn::cpu::FASTDYN_ISA {
namespace {

constexpr long kChunk = 256;  // columns of a row kept in L1 through the layers
constexpr long kTile = 64;    // square tiles of the symmetrisation
constexpr double kPi = 3.14159265358979323846;

// c_k of asin(s) = sum_k c_k s^(2k + 1): c_0 = 1, c_{k+1} = c_k (2k + 1)^2 / ((2k + 2)(2k + 3)).
struct AsinSeries {
  double c[24];
  constexpr AsinSeries() : c() {
    c[0] = 1.0;
    for (int k = 0; k + 1 < 24; ++k) c[k + 1] = c[k] * (2.0 * k + 1) * (2.0 * k + 1) / ((2.0 * k + 2) * (2.0 * k + 3));
  }
};
constexpr AsinSeries kAsin{};

template <typename T>
constexpr int asin_terms() {
  return sizeof(T) == 8 ? 24 : 10;
}

// asin(s) for 0 <= s <= 1/2, z = s^2.
template <typename T>
inline __attribute__((always_inline)) T asin_series(T s, T z) {
  T sum = static_cast<T>(kAsin.c[asin_terms<T>() - 1]);
#pragma GCC unroll 24
  for (int k = asin_terms<T>() - 2; k >= 0; --k) sum = sum * z + static_cast<T>(kAsin.c[k]);
  return s * sum;
}

inline __attribute__((always_inline)) float root(float v) { return __builtin_sqrtf(v); }
inline __attribute__((always_inline)) double root(double v) { return __builtin_sqrt(v); }

// (asin u, pi - acos u) for -1 <= u <= 1.
template <typename T>
inline __attribute__((always_inline)) void arcs(T u, T& asin_u, T& pi_minus_acos_u) {
  const T a = u < T(0) ? -u : u;
  const bool far = a > T(0.5);
  const T z = far ? (T(1) - a) * T(0.5) : a * a;
  const T s = far ? root(z) : a;
  const T t = asin_series(s, z);
  const T asin_a = far ? T(kPi / 2) - T(2) * t : t;  // asin |u|, in [0, pi/2]
  asin_u = u < T(0) ? -asin_a : asin_a;
  pi_minus_acos_u = T(kPi / 2) + asin_u;
}

// One layer over the columns [j0, j1) of row i: srow <- Sigma_{l+1}, trow <- Theta_{l+1}.
template <typename T, bool kErf>
inline void layer(T* srow, T* trow, T qi, T ri, const T* qj, const T* rj, T w, T c, long j0, long j1) {
  const T inv_2pi = static_cast<T>(1 / (2 * kPi)), two_over_pi = static_cast<T>(2 / kPi);
#pragma omp simd
  for (long j = j0; j < j1; ++j) {
    const T rr = ri * rj[j];
    T u = srow[j] * rr;
    u = u > T(1) ? T(1) : (u < T(-1) ? T(-1) : u);
    T asin_u, pi_minus_acos_u;
    arcs(u, asin_u, pi_minus_acos_u);
    const T cosine = root((T(1) - u) * (T(1) + u));  // sqrt(1 - u^2)
    T value, slope;
    if constexpr (kErf) {
      value = two_over_pi * asin_u;
      slope = two_over_pi * rr / cosine;
    } else {
      value = (qi * qj[j]) * (cosine + pi_minus_acos_u * u) * inv_2pi;
      slope = pi_minus_acos_u * inv_2pi;
    }
    const T next = w * value + c;
    trow[j] = trow[j] * (w * slope) + next;
    srow[j] = next;
  }
}

// sigma (n, n) <- (sigma + sigma^T) / 2 in place, by kTile x kTile tile pairs (the transposed reads stay in cache).
template <typename T>
void symmetrise(T* sigma, long n, int threads) {
  const long tiles = (n + kTile - 1) / kTile;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (n * n > 16384)
  for (long ti = 0; ti < tiles; ++ti)
    for (long tj = ti; tj < tiles; ++tj)
      for (long i = ti * kTile; i < std::min(n, (ti + 1) * kTile); ++i)
        for (long j = std::max(i + 1, tj * kTile); j < std::min(n, (tj + 1) * kTile); ++j) {
          const T mean = (sigma[i * n + j] + sigma[j * n + i]) * T(0.5);
          sigma[i * n + j] = mean;
          sigma[j * n + i] = mean;
        }
}

}  // namespace

template <typename T>
void fc_kernels(T* sigma, T* theta, const T* q1, const T* r1, const T* q2, const T* r2, const double* weight_vars,
                const double* bias_vars, long layers, long n1, long n2, bool erf, bool symmetric, int threads) {
  // The columns [j_offset, j_offset + columns) of row i through every layer.
  auto row = [&](T* srow, T* trow, long i, const T* q, const T* r, long n, long j_offset, long columns) {
#pragma omp simd
    for (long j = 0; j < columns; ++j) trow[j] = srow[j];
    for (long l = 0; l < layers; ++l) {
      const T w = static_cast<T>(weight_vars[l]), c = static_cast<T>(bias_vars[l]);
      const T qi = q1[l * n1 + i], ri = r1[l * n1 + i];
      const T* qj = q + l * n + j_offset;
      const T* rj = r + l * n + j_offset;
      if (erf)
        layer<T, true>(srow, trow, qi, ri, qj, rj, w, c, 0, columns);
      else
        layer<T, false>(srow, trow, qi, ri, qj, rj, w, c, 0, columns);
    }
  };
  if (symmetric) symmetrise(sigma, n1, threads);
#pragma omp parallel for schedule(static) num_threads(threads) if (n1 * n2 > 16384)
  for (long i = 0; i < n1; ++i)
    for (long j0 = 0; j0 < n2; j0 += kChunk)
      row(sigma + i * n2 + j0, theta + i * n2 + j0, i, q2, r2, n2, j0, std::min(kChunk, n2 - j0));
}

template void fc_kernels<float>(float*, float*, const float*, const float*, const float*, const float*,
                                const double*, const double*, long, long, long, bool, bool, int);
template void fc_kernels<double>(double*, double*, const double*, const double*, const double*, const double*,
                                 const double*, const double*, long, long, long, bool, bool, int);

}  // namespace fastdyn::cpu::FASTDYN_ISA
