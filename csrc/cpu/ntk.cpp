// Closed-form empirical NTK of the one-hidden-layer ReLU network (fastdyn.models.OneHidden), science.md section 2:
//   pre = omega.x / sqrt(d) + b,  A = relu(pre),  D = relu'(pre) = [pre > 0]
//   Theta(x, x') = scale^2 [ sum_n A_n(x) A_n(x') + (x.x'/d + 1) sum_n beta_n^2 D_n(x) D_n(x') ]
// The sums over neurons run tile by tile: for each tile of `tile` neurons the activations A and beta*D of all points
// are built (OpenBLAS GEMM for the pre-activations, OpenMP for the elementwise pass) and accumulated with SYRK
// (x2 absent: only the upper triangle, half the flops) or GEMM (x2 given). Memory: the result, one more N1 x N2
// accumulator and O(tile * (N1 + N2)) for the tiles -- never N x h. Accumulation is in the inputs' precision.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/blas.hpp"
#include "cpu/threads.hpp"
#include "registry.hpp"

namespace fastdyn {
namespace {

constexpr long kCombineRows = 64;  // rows of G = X1 X2^T / d + 1 formed at a time in the final combine
constexpr long kMirrorBlock = 64;  // block edge of the cache-friendly upper -> lower copy

// act (p x nt) and beta_d (p x nt), row-major, for neurons [n0, n0 + nt): act = relu(pre), beta_d = beta * [pre > 0].
template <typename T>
void relu_tile(const T* x, long p, long d, const T* omega, const T* b, const T* beta, long n0, long nt, T inv_sqrt_d,
               T* act, T* beta_d) {
  blas::gemm(false, true, static_cast<int>(p), static_cast<int>(nt), static_cast<int>(d), inv_sqrt_d, x,
             static_cast<int>(d), omega + n0 * d, static_cast<int>(d), T(0), act, static_cast<int>(nt));
#pragma omp parallel for schedule(static)
  for (long i = 0; i < p; ++i) {
    T* a = act + i * nt;
    T* g = beta_d + i * nt;
#pragma omp simd
    for (long n = 0; n < nt; ++n) {
      const T pre = a[n] + b[n0 + n];
      const bool on = pre > T(0);
      a[n] = on ? pre : T(0);
      g[n] = on ? beta[n0 + n] : T(0);
    }
  }
}

// out (n1 x n2) = scale^2 (out + (X1 X2^T / d + 1) o s2), over the upper triangle only when symmetric, then mirrored
// so the result is exactly symmetric.
template <typename T>
void combine(const T* x1, long n1, const T* x2, long n2, long d, T scale, const T* s2, T* out, bool symmetric) {
  const T scale2 = scale * scale;
  std::vector<T> gram(static_cast<size_t>(kCombineRows * n2));
  for (long r0 = 0; r0 < n1; r0 += kCombineRows) {
    const long rows = std::min(kCombineRows, n1 - r0);
    const long c0 = symmetric ? r0 : 0;  // first column needed in this row block
    const long cols = n2 - c0;
    blas::gemm(false, true, static_cast<int>(rows), static_cast<int>(cols), static_cast<int>(d), T(1) / T(d),
               x1 + r0 * d, static_cast<int>(d), x2 + c0 * d, static_cast<int>(d), T(0), gram.data(),
               static_cast<int>(cols));
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; ++r) {
      const long i = r0 + r;
      const long j0 = symmetric ? i : 0;
      const T* g = gram.data() + r * cols - c0;  // g[j] for j in [c0, n2)
      T* o = out + i * n2;
      const T* s = s2 + i * n2;
#pragma omp simd
      for (long j = j0; j < n2; ++j) o[j] = scale2 * (o[j] + (g[j] + T(1)) * s[j]);
    }
  }
  if (!symmetric) return;
  const long blocks = (n1 + kMirrorBlock - 1) / kMirrorBlock;
#pragma omp parallel for schedule(dynamic)
  for (long bi = 0; bi < blocks; ++bi)
    for (long bj = 0; bj <= bi; ++bj)
      for (long i = bi * kMirrorBlock; i < std::min(n1, (bi + 1) * kMirrorBlock); ++i)
        for (long j = bj * kMirrorBlock; j < std::min(i, (bj + 1) * kMirrorBlock); ++j) out[i * n1 + j] = out[j * n1 + i];
}

// x1 (n1 x d); x2 (n2 x d) or nullptr for Theta(x1, x1); omega (h x d), b (h,), beta (h,); out (n1 x n2).
template <typename T>
void onehidden_relu_ntk(const T* x1, long n1, const T* x2, long n2, const T* omega, const T* b, const T* beta, long d,
                        long h, T scale, T* out, long tile, int n_threads) {
  use_threads(n_threads);
  const bool symmetric = x2 == nullptr;
  if (symmetric) {
    x2 = x1;
    n2 = n1;
  }
  tile = std::max(1L, std::min(tile, h));
  const T inv_sqrt_d = T(1) / std::sqrt(T(d));
  std::vector<T> s2(static_cast<size_t>(n1 * n2));  // sum_n beta_n^2 D_n D_n'; `out` accumulates sum_n A_n A_n'
  std::vector<T> act1(static_cast<size_t>(n1 * tile)), beta_d1(act1.size());
  std::vector<T> act2(symmetric ? 0 : static_cast<size_t>(n2 * tile)), beta_d2(act2.size());
  const int in1 = static_cast<int>(n1), in2 = static_cast<int>(n2);
  for (long n0 = 0; n0 < h; n0 += tile) {
    const long nt = std::min(tile, h - n0);
    const int k = static_cast<int>(nt);
    const T keep = n0 == 0 ? T(0) : T(1);  // the first tile overwrites, so the accumulators need no zeroing
    relu_tile(x1, n1, d, omega, b, beta, n0, nt, inv_sqrt_d, act1.data(), beta_d1.data());
    if (symmetric) {
      blas::syrk(in1, k, T(1), act1.data(), k, keep, out, in1);
      blas::syrk(in1, k, T(1), beta_d1.data(), k, keep, s2.data(), in1);
    } else {
      relu_tile(x2, n2, d, omega, b, beta, n0, nt, inv_sqrt_d, act2.data(), beta_d2.data());
      blas::gemm(false, true, in1, in2, k, T(1), act1.data(), k, act2.data(), k, keep, out, in2);
      blas::gemm(false, true, in1, in2, k, T(1), beta_d1.data(), k, beta_d2.data(), k, keep, s2.data(), in2);
    }
  }
  combine(x1, n1, x2, n2, d, scale, s2.data(), out, symmetric);
}

template <typename T>
void bind_ntk(pybind11::module_& m, const char* name) {
  m.def(
      name,
      [](std::uintptr_t x1, long n1, std::uintptr_t x2, long n2, std::uintptr_t omega, std::uintptr_t b,
         std::uintptr_t beta, long d, long h, double scale, std::uintptr_t out, long tile, int n_threads) {
        pybind11::gil_scoped_release release;
        onehidden_relu_ntk<T>(ptr<const T>(x1), n1, x2 ? ptr<const T>(x2) : nullptr, n2, ptr<const T>(omega),
                              ptr<const T>(b), ptr<const T>(beta), d, h, static_cast<T>(scale), ptr<T>(out), tile,
                              n_threads);
      },
      "Closed-form NTK of a ReLU OneHidden: out (n1, n2); x2 = 0 means Theta(x1, x1) (SYRK, exactly symmetric)");
}

}  // namespace
}  // namespace fastdyn

FASTDYN_BINDINGS(ntk) {
  fastdyn::bind_ntk<float>(m, "onehidden_ntk_f32");
  fastdyn::bind_ntk<double>(m, "onehidden_ntk_f64");
}
