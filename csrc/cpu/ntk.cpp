// Closed-form empirical NTK of the one-hidden-layer ReLU network (fastdyn.models.OneHidden), science.md section 2:
//   pre = omega.x / sqrt(d) + b,  A = relu(pre),  D = relu'(pre) = [pre > 0]
//   Theta(x, x') = scale^2 [ sum_n A_n(x) A_n(x') + (x.x'/d + 1) sum_n beta_n^2 D_n(x) D_n(x') ]
// The sums over neurons run tile by tile: for each tile of `tile` neurons the activations A and beta*D of all points
// are built and accumulated with the upper triangle only when x2 is absent (SYRK on diagonal blocks, GEMM right of
// them: half the flops) and with GEMM otherwise. Memory: the result, one more N1 x N2 accumulator and
// O(tile * (N1 + N2)) for the tiles -- never N x h. Accumulation is in the inputs' precision.
//
// Threading: OpenMP threads each call single-threaded OpenBLAS on their own row blocks. The OpenBLAS shipped by
// scipy-openblas32 runs its own pthreads pool; letting it thread inside while OpenMP threads wait for the next
// elementwise pass oversubscribes the cores (3x slower, measured on a busy 2-core machine), so one pool drives
// everything.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/blas.hpp"
#include "cpu/parallel.hpp"
#include "registry.hpp"
#include "signatures.hpp"

namespace fastdyn {
namespace {

constexpr long kRowBlock = 128;     // rows of an activation / combine work item
constexpr long kMinRowBlock = 64, kMaxRowBlock = 512;  // bounds on the rows of an accumulation work item
constexpr long kMirrorBlock = 64;   // block edge of the cache-friendly upper -> lower copy
constexpr long kSerialWork = 1L << 22;  // below this many multiply-adds one thread is faster than fork/join

inline int as_int(long v) { return static_cast<int>(v); }

// act (p x nt) and beta_d (p x nt), row-major, for neurons [n0, n0 + nt): act = relu(pre), beta_d = beta * [pre > 0],
// pre = x omega^T / sqrt(d) + b. Row blocks in parallel, each a single-threaded GEMM then an elementwise pass.
template <typename T>
void relu_tile(const T* x, long p, long d, const T* omega, const T* b, const T* beta, long n0, long nt, T inv_sqrt_d,
               T* act, T* beta_d) {
  const long blocks = (p + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(dynamic)
  for (long block = 0; block < blocks; ++block) {
    const long r0 = block * kRowBlock, rows = std::min(kRowBlock, p - r0);
    blas::gemm(false, true, as_int(rows), as_int(nt), as_int(d), inv_sqrt_d, x + r0 * d, as_int(d), omega + n0 * d,
               as_int(d), T(0), act + r0 * nt, as_int(nt));
    for (long i = r0; i < r0 + rows; ++i) {
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
}

// c (+)= left right^T for left (n1 x k), right (n2 x k), c (n1 x n2), both products of a tile (act -> sum_act,
// beta_d -> sum_deriv) as parallel work items over row blocks. Symmetric (right = left): the upper triangle only,
// SYRK on each diagonal block and GEMM to its right.
template <typename T>
void accumulate(const T* const left[2], const T* const right[2], T* const c[2], long n1, long n2, long k, T keep,
                bool symmetric, long row_block) {
  const long blocks = (n1 + row_block - 1) / row_block;
#pragma omp parallel for schedule(dynamic)
  for (long item = 0; item < 2 * blocks; ++item) {  // largest (top) row blocks first
    const int which = static_cast<int>(item % 2);
    const long r0 = (item / 2) * row_block, rows = std::min(row_block, n1 - r0);
    const T* a = left[which] + r0 * k;
    T* out = c[which] + r0 * n2;
    if (symmetric) {
      blas::syrk(as_int(rows), as_int(k), T(1), a, as_int(k), keep, out + r0, as_int(n2));
      const long r1 = r0 + rows;
      if (r1 < n2)
        blas::gemm(false, true, as_int(rows), as_int(n2 - r1), as_int(k), T(1), a, as_int(k), right[which] + r1 * k,
                   as_int(k), keep, out + r1, as_int(n2));
    } else {
      blas::gemm(false, true, as_int(rows), as_int(n2), as_int(k), T(1), a, as_int(k), right[which], as_int(k), keep,
                 out, as_int(n2));
    }
  }
}

// out (n1 x n2) = scale^2 (out + (X1 X2^T / d + 1) o s2), over the upper triangle only when symmetric, then mirrored
// so the result is exactly symmetric.
template <typename T>
void combine(const T* x1, long n1, const T* x2, long n2, long d, T scale, const T* s2, T* out, bool symmetric) {
  const T scale2 = scale * scale;
  const long blocks = (n1 + kRowBlock - 1) / kRowBlock;
#pragma omp parallel
  {
    std::vector<T> gram(static_cast<size_t>(kRowBlock * n2));  // x.x'/d of one row block
#pragma omp for schedule(dynamic)
    for (long block = 0; block < blocks; ++block) {
      const long r0 = block * kRowBlock, rows = std::min(kRowBlock, n1 - r0);
      const long c0 = symmetric ? r0 : 0;  // first column needed in this row block
      const long cols = n2 - c0;
      blas::gemm(false, true, as_int(rows), as_int(cols), as_int(d), T(1) / T(d), x1 + r0 * d, as_int(d),
                 x2 + c0 * d, as_int(d), T(0), gram.data(), as_int(cols));
      for (long r = 0; r < rows; ++r) {
        const long i = r0 + r;
        const T* g = gram.data() + r * cols - c0;  // g[j] for j in [c0, n2)
        T* o = out + i * n2;
        const T* s = s2 + i * n2;
#pragma omp simd
        for (long j = symmetric ? i : 0; j < n2; ++j) o[j] = scale2 * (o[j] + (g[j] + T(1)) * s[j]);
      }
    }
  }
  if (!symmetric) return;
  const long mirror_blocks = (n1 + kMirrorBlock - 1) / kMirrorBlock;
#pragma omp parallel for schedule(dynamic)
  for (long bi = 0; bi < mirror_blocks; ++bi)
    for (long bj = 0; bj <= bi; ++bj)
      for (long i = bi * kMirrorBlock; i < std::min(n1, (bi + 1) * kMirrorBlock); ++i)
        for (long j = bj * kMirrorBlock; j < std::min(i, (bj + 1) * kMirrorBlock); ++j)
          out[i * n1 + j] = out[j * n1 + i];
}

// x1 (n1 x d); x2 (n2 x d) or nullptr for Theta(x1, x1); omega (h x d), b (h,), beta (h,); out (n1 x n2).
template <typename T>
void onehidden_relu_ntk(const T* x1, long n1, const T* x2, long n2, const T* omega, const T* b, const T* beta, long d,
                        long h, T scale, T* out, long tile, int n_threads) {
  const bool small = (n1 * (x2 ? n2 : n1) + (n1 + n2) * d) * h < kSerialWork;
  const int blas_threads = use_threads(n_threads);
  use_threads(small ? 1 : blas_threads);
  scipy_openblas_set_num_threads(1);  // OpenMP drives the parallelism (see the header comment)
  const bool symmetric = x2 == nullptr;
  if (symmetric) {
    x2 = x1;
    n2 = n1;
  }
  tile = std::max(1L, std::min(tile, h));
  // Rows per GEMM/SYRK call: large enough that OpenBLAS's per-call packing of the right operand stays a few percent
  // of the flops, small enough to give every thread several work items.
  const long row_block = std::clamp((n1 / (3L * omp_get_max_threads()) + 15) / 16 * 16, kMinRowBlock, kMaxRowBlock);
  const T inv_sqrt_d = T(1) / std::sqrt(T(d));
  std::vector<T> sum_deriv(static_cast<size_t>(n1 * n2));  // sum_n beta_n^2 D_n D_n'; `out` holds sum_n A_n A_n'
  std::vector<T> act1(static_cast<size_t>(n1 * tile)), beta_d1(act1.size());
  std::vector<T> act2(symmetric ? 0 : static_cast<size_t>(n2 * tile)), beta_d2(act2.size());
  T* const sums[2] = {out, sum_deriv.data()};
  for (long n0 = 0; n0 < h; n0 += tile) {
    const long nt = std::min(tile, h - n0);
    const T keep = n0 == 0 ? T(0) : T(1);  // the first tile overwrites, so the accumulators need no zeroing
    relu_tile(x1, n1, d, omega, b, beta, n0, nt, inv_sqrt_d, act1.data(), beta_d1.data());
    const T* const left[2] = {act1.data(), beta_d1.data()};
    if (symmetric) {
      accumulate(left, left, sums, n1, n2, nt, keep, true, row_block);
    } else {
      relu_tile(x2, n2, d, omega, b, beta, n0, nt, inv_sqrt_d, act2.data(), beta_d2.data());
      const T* const right[2] = {act2.data(), beta_d2.data()};
      accumulate(left, right, sums, n1, n2, nt, keep, false, row_block);
    }
  }
  combine(x1, n1, x2, n2, d, scale, sum_deriv.data(), out, symmetric);
  scipy_openblas_set_num_threads(blas_threads);  // as other kernels expect after use_threads
}

}  // namespace
}  // namespace fastdyn

FASTDYN_BINDINGS(ntk) {
  fastdyn::bind_onehidden_ntk<fastdyn::Cpu>(m, [](auto... args) { fastdyn::onehidden_relu_ntk(args...); });
}
