// Batched symmetric eigensolvers for kernel PCA (fastdyn.kpca), over a batch K (B, N, N), row-major.
// Every solver writes the top k eigenpairs in descending order: w (B, k) and V (B, N, k), column j of V[b] being the
// unit eigenvector of w[b, j] with its entry of largest magnitude positive (the first on ties).
//   full:     LAPACK syevd (divide and conquer), all pairs, top k kept.
//   topk:     LAPACK syevr with an index range (MRRR): the tridiagonal reduction is still O(N^3) but only the k
//             wanted eigenvectors are computed and back-transformed.
//   subspace: Chebyshev-filtered subspace iteration with Rayleigh-Ritz and locking on blocks of l > k vectors
//             (see chebyshev_iterate); each product with K is one (l x N) x (N x N) GEMM, so it runs at BLAS-3
//             speed, never copies K in float64 (memory ~ 4 l N besides K) and optionally centres K implicitly
//             (H K H, H = I - 11^T/N). Float64 kernels may run in mixed precision: float32 cycles on a packed
//             float32 copy of K, then a refinement whose products stay float32 (see refine).
//             It assumes K positive semi-definite (a Gram matrix): a matrix not converged after max_products
//             products, or showing a large negative eigenvalue, is solved again with syevr (iterations = -1).
// Batch parallelism: matrices run concurrently on OpenMP threads with single-threaded OpenBLAS when the batch has
// several matrices and their workspaces fit in kParallelWorkBytes; otherwise one matrix at a time with threaded BLAS.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/blas.hpp"
#include "cpu/lapack.hpp"
#include "cpu/packed_product.hpp"
#include "cpu/parallel.hpp"
#include "registry.hpp"

namespace fastdyn {
namespace {

constexpr double kParallelWorkBytes = 2.0 * (1 << 30);
// Residual (relative to theta_max) at which the float32 phase of a mixed-precision subspace solve hands over to
// float64 at the latest; float32 rounding usually stalls it near 1e-7 first.
constexpr double kMixedSwitch = 1e-6;
// The refinement starts only from a float32 phase that reached this residual; its products' errors scale with it.
constexpr double kRefineStart = 1e-5;
// Amplified float32 rounding (relative) above which the refinement projects its products (see refine).
constexpr double kProjectAbove = 0.1;

// Run body(b) for b in [0, B): concurrently with 1-thread BLAS, or sequentially with n_threads-thread BLAS (with
// 1-thread BLAS too when body threads its own products: OpenBLAS's spinning threads would compete with OpenMP's).
// body returns a LAPACK info code; the first non-zero one is raised after the loop.
template <typename Body>
void over_batch(long batch, double work_bytes, int n_threads, const char* what, Body&& body,
                bool body_threads = false) {
  n_threads = use_threads(n_threads);
  std::vector<int> info(static_cast<size_t>(batch), 0);
  const bool concurrent =
      batch > 1 && n_threads > 1 && work_bytes * std::min<long>(batch, n_threads) <= kParallelWorkBytes;
  if (concurrent || body_threads) scipy_openblas_set_num_threads(1);
  if (concurrent) {
#pragma omp parallel for schedule(dynamic, 1)
    for (long b = 0; b < batch; ++b) info[b] = body(b);
  } else {
    for (long b = 0; b < batch; ++b) info[b] = body(b);
  }
  scipy_openblas_set_num_threads(n_threads);
  for (long b = 0; b < batch; ++b)
    if (info[b] != 0)
      throw std::runtime_error(std::string(what) + ": LAPACK failed on matrix " + std::to_string(b) + " (info " +
                               std::to_string(info[b]) + ")");
}

// work (column-major n x n) = K, or H K H (double centring) when centre is set.
template <typename T>
void copy_matrix(const T* k, T* work, long n, bool centre) {
  if (!centre) {
    std::copy(k, k + n * n, work);
    return;
  }
  std::vector<double> row_mean(static_cast<size_t>(n), 0.0);
  double total = 0.0;
  for (long i = 0; i < n; ++i) {
    double s = 0.0;
    for (long j = 0; j < n; ++j) s += k[i * n + j];
    row_mean[i] = s / n;
    total += s;
  }
  total /= static_cast<double>(n) * n;
  for (long i = 0; i < n; ++i)
    for (long j = 0; j < n; ++j)
      work[i * n + j] = static_cast<T>(k[i * n + j] - row_mean[i] - row_mean[j] + total);
}

// v (n x top, row-major): column j = the unit vector vector(j) (n entries), signed so that its entry of largest
// magnitude (the first on ties) is positive. Eight columns at a time, so the writes fill whole cache lines.
template <typename T, typename Vector>
void store_columns(Vector vector, long top, long n, T* v) {
  constexpr long kColumns = 8;
  for (long j0 = 0; j0 < top; j0 += kColumns) {
    const long j1 = std::min(top, j0 + kColumns);
    const T* source[kColumns];
    T sign[kColumns];
    for (long j = j0; j < j1; ++j) {
      const T* x = source[j - j0] = vector(j);
      long largest = 0;
      for (long i = 1; i < n; ++i)
        if (std::abs(x[i]) > std::abs(x[largest])) largest = i;
      sign[j - j0] = x[largest] < 0 ? T(-1) : T(1);
    }
    for (long i = 0; i < n; ++i)
      for (long j = j0; j < j1; ++j) v[i * top + j] = sign[j - j0] * source[j - j0][i];
  }
}

// LAPACK's ascending pairs (w_asc, column-major vectors z with leading dim n) -> the top k descending: w_out (k),
// v_out (n x k) with columns signed as in store_columns.
template <typename T>
void write_descending(const T* w_asc, const T* z, long n, long found, long k, T* w_out, T* v_out) {
  for (long j = 0; j < k; ++j) w_out[j] = w_asc[found - 1 - j];
  store_columns([&](long j) { return z + (found - 1 - j) * n; }, k, n, v_out);
}

template <typename T>
int solve_full(const T* k, long n, long top, bool centre, T* w, T* v) {
  std::vector<T> work(static_cast<size_t>(n * n)), eig(static_cast<size_t>(n));
  copy_matrix(k, work.data(), n, centre);
  const int info = lapack::syevd(static_cast<int>(n), work.data(), static_cast<int>(n), eig.data());
  if (info == 0) write_descending(eig.data(), work.data(), n, n, top, w, v);
  return info;
}

template <typename T>
int solve_topk(const T* k, long n, long top, bool centre, T* w, T* v) {
  std::vector<T> work(static_cast<size_t>(n * n)), eig(static_cast<size_t>(n)), z(static_cast<size_t>(n * top));
  std::vector<int> isuppz(static_cast<size_t>(2 * top));
  copy_matrix(k, work.data(), n, centre);
  int found = 0;
  const int info = lapack::syevr_index(static_cast<int>(n), work.data(), static_cast<int>(n),
                                       static_cast<int>(n - top + 1), static_cast<int>(n), &found, eig.data(),
                                       z.data(), static_cast<int>(n), isuppz.data());
  if (info == 0 && found != top) return -1000 - found;
  if (info == 0) write_descending(eig.data(), z.data(), n, found, top, w, v);
  return info;
}

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Subtract each row's mean (rows x n, row-major): applies H to each stored vector.
template <typename T>
void centre_rows(T* a, long rows, long n) {
  for (long r = 0; r < rows; ++r) {
    T* row = a + r * n;
    double s = 0.0;
    for (long i = 0; i < n; ++i) s += row[i];
    const T mean = static_cast<T>(s / n);
    for (long i = 0; i < n; ++i) row[i] -= mean;
  }
}

// Working set of the subspace solver for one matrix: `rows` vectors of length n stored as rows.
template <typename T>
struct Subspace {
  Subspace(long n_, long rows_)
      : n(n_), rows(rows_), x(rows_ * n_), w(x.size()), y(x.size()), z(x.size()), g(rows_ * rows_),
        rot(g.size()), theta(rows_), tau(rows_), residual(rows_, 0.0) {}
  long n, rows;
  std::vector<T> x, w, y, z;  // basis, its image K x (H K x when centring), two filter work blocks
  std::vector<T> g, rot, theta, tau;
  std::vector<double> residual;  // ||K x_j - theta_j x_j||
};

// Products with K: out (rows x n) = in K, the rows of `in` being vectors (K symmetric).
template <typename T>
struct DenseMatrix {
  const T* k;
  long n;
  void multiply(const T* in, long rows, T* out) const {
    const int ni = static_cast<int>(n);
    blas::gemm(false, false, static_cast<int>(rows), ni, ni, T(1), in, ni, k, ni, T(0), out, ni);
  }
};

// out = in K, centred when centre (H K H on centred rows).
template <typename T, typename Matrix>
void apply(const Matrix& k, long n, const T* in, long rows, bool centre, T* out) {
  k.multiply(in, rows, out);
  if (centre) centre_rows(out, rows, n);
}

// Cholesky QR: x (m x n rows) <- L^-1 x with x x^T = L L^T, `passes` times, for a well-conditioned block (each
// pass leaves ~eps cond(x)^2 of non-orthogonality); the same transformation goes to `also` (the images K x) when
// given. g: m x m work. False if x is too ill conditioned for the Cholesky factorisation.
template <typename T>
bool cholesky_qr(T* x, T* also, long m, long n, T* g, int passes) {
  const int mi = static_cast<int>(m), ni = static_cast<int>(n);
  for (int pass = 0; pass < passes; ++pass) {
    blas::gemm(false, true, mi, mi, ni, T(1), x, ni, x, ni, T(0), g, mi);
    if (lapack::potrf_lower(mi, g, mi) != 0) return false;
    blas::trsm_lower(mi, ni, g, mi, x, ni);
    if (also) blas::trsm_lower(mi, ni, g, mi, also, ni);
  }
  return true;
}

// Orthonormalise rows [locked, rows) of x among themselves and against the orthonormal rows [0, locked).
template <typename T>
int orthonormalise_active(Subspace<T>& s, long locked, bool centre) {
  const int n = static_cast<int>(s.n), m = static_cast<int>(s.rows - locked), l = static_cast<int>(locked);
  T* active = s.x.data() + locked * s.n;
  // Cholesky QR three times (a third of Householder's cost here) when the block is well enough conditioned:
  // rows normalised first, a block with cond < ~1/sqrt(eps) factors and the passes leave it orthonormal to
  // rounding. Otherwise (a random start, a filtered block that collapsed onto few directions) Householder.
  if (locked == 0) {
    if (centre) centre_rows(active, m, s.n);
    std::copy(active, active + static_cast<long>(m) * s.n, s.y.data());
    for (long r = 0; r < m; ++r) {
      T* row = active + r * s.n;
      double norm2 = 0.0;
      for (long i = 0; i < s.n; ++i) norm2 += static_cast<double>(row[i]) * row[i];
      const T inv = static_cast<T>(norm2 > 0.0 ? 1.0 / std::sqrt(norm2) : 1.0);
      for (long i = 0; i < s.n; ++i) row[i] *= inv;
    }
    if (cholesky_qr(active, static_cast<T*>(nullptr), m, s.n, s.g.data(), 3)) return 0;
    std::copy(s.y.begin(), s.y.begin() + static_cast<long>(m) * s.n, active);
  }
  // Projections against the locked rows go twice ("twice is enough"), and the QR is repeated after them, so a
  // nearly rank-deficient filtered block cannot bring locked directions back.
  for (int pass = 0; pass < (locked > 0 ? 2 : 1); ++pass) {
    for (int twice = 0; twice < 2 && l > 0; ++twice) {
      blas::gemm(false, true, m, l, n, T(1), active, n, s.x.data(), n, T(0), s.g.data(), l);
      blas::gemm(false, false, m, n, l, T(-1), s.g.data(), l, s.x.data(), n, T(1), active, n);
    }
    if (centre) centre_rows(active, m, s.n);
    const int info = lapack::orthonormalise(n, m, active, n, s.tau.data());
    if (info) return info;
  }
  return 0;
}

// Rayleigh-Ritz on the active rows [locked, rows): rotate x and w to the Ritz vectors (descending Ritz values in
// theta) and update the residual norms of the rows below `top`.
template <typename T>
int rayleigh_ritz(Subspace<T>& s, long locked, long top) {
  const long n = s.n, m = s.rows - locked;
  const int mi = static_cast<int>(m), ni = static_cast<int>(n);
  T* x = s.x.data() + locked * n;
  T* w = s.w.data() + locked * n;
  blas::gemm(false, true, mi, mi, ni, T(1), x, ni, w, ni, T(0), s.g.data(), mi);
  // g[i][j] = x_i . w_j. Symmetrise from the lower triangle: x_later . w_earlier, the earlier row (larger Ritz
  // value) being the better converged one, whose image is the more accurate in the mixed-precision refinement.
  for (long i = 0; i < m; ++i)
    for (long j = 0; j < i; ++j) s.g[j * m + i] = s.g[i * m + j];
  T* values = s.theta.data() + locked;
  const int info = lapack::syevd(mi, s.g.data(), mi, values);
  if (info) return info;
  // rot (row-major): row j = the eigenvector of the j-th largest Ritz value (syevd's columns, ascending).
  for (long j = 0; j < m; ++j) std::copy(s.g.data() + (m - 1 - j) * m, s.g.data() + (m - j) * m, s.rot.data() + j * m);
  std::reverse(values, values + m);
  blas::gemm(false, false, mi, ni, mi, T(1), s.rot.data(), mi, x, ni, T(0), s.y.data(), ni);
  blas::gemm(false, false, mi, ni, mi, T(1), s.rot.data(), mi, w, ni, T(0), s.z.data(), ni);
  std::copy(s.y.begin(), s.y.begin() + m * n, x);
  std::copy(s.z.begin(), s.z.begin() + m * n, w);
  for (long j = locked; j < top; ++j) {
    const T* xj = s.x.data() + j * n;
    const T* wj = s.w.data() + j * n;
    double r2 = 0.0;
    for (long i = 0; i < n; ++i) {
      const double r = static_cast<double>(wj[i]) - static_cast<double>(s.theta[j]) * xj[i];
      r2 += r * r;
    }
    s.residual[j] = std::sqrt(r2);
  }
  return 0;
}

// Replace the active rows of x by p(K) x, p the Chebyshev polynomial of the given degree that is small on the
// unwanted interval [0, theta_last] (theta_last the smallest Ritz value of the block) and grows fast above it.
// The first term uses the known image w, so the filter costs degree - 1 products; rows are renormalised at every
// step (the polynomial's values reach ~1e30 at degree 10).
template <typename T, typename Matrix>
long chebyshev_filter(const Matrix& k, Subspace<T>& s, long locked, long degree, bool centre) {
  const long n = s.n, m = s.rows - locked;
  T* y0 = s.x.data() + locked * n;  // T_{d-1}(x), in place of the active rows
  T* y1 = s.y.data();                // T_d(x)
  const T* w = s.w.data() + locked * n;
  const double upper = static_cast<double>(s.theta[s.rows - 1]);
  if (!(upper > 0.0)) {  // the block already reaches K's null space: a plain power step
    std::copy(w, w + m * n, y0);
    return 0;
  }
  const T half = static_cast<T>(upper / 2);  // centre c and half-width e of [0, upper] are both upper / 2
  for (long i = 0; i < m * n; ++i) y1[i] = (w[i] - half * y0[i]) / half;
  long products = 0;
  for (long d = 2; d <= degree; ++d) {
    apply(k, n, y1, m, centre, s.z.data());
    ++products;
    for (long r = 0; r < m; ++r) {
      T* zr = s.z.data() + r * n;
      T* ar = y0 + r * n;
      T* br = y1 + r * n;
      double norm2 = 0.0;
      for (long i = 0; i < n; ++i) {
        zr[i] = 2 * (zr[i] - half * br[i]) / half - ar[i];
        norm2 += static_cast<double>(zr[i]) * zr[i];
      }
      const T inv = static_cast<T>(norm2 > 0.0 ? 1.0 / std::sqrt(norm2) : 1.0);
      for (long i = 0; i < n; ++i) {
        ar[i] = br[i] * inv;
        br[i] = zr[i] * inv;
      }
    }
  }
  std::copy(y1, y1 + m * n, y0);
  return products;
}

enum class Outcome { converged, stalled, exhausted };

// Chebyshev-filtered subspace iteration (Zhou & Saad 2007) with Rayleigh-Ritz and locking, from the rows of s.x:
// each cycle filters the active rows (degree - 1 products), orthonormalises them and takes their image (1
// product), then does Rayleigh-Ritz; the leading Ritz pairs whose residual is <= tol * theta_max are locked and
// leave the products. With stop_on_stall it returns when a cycle fails to halve the worst residual (the rounding
// floor of a float32 phase). products counts products with K (each a GEMM with up to `rows` vectors).
template <typename T, typename Matrix>
Outcome chebyshev_iterate(const Matrix& k, Subspace<T>& s, long top, long degree, bool centre, double tol,
                          bool stop_on_stall, long max_products, long& products, int& info,
                          double* relative_residual = nullptr) {
  long locked = 0;
  info = orthonormalise_active(s, 0, centre);
  if (info) return Outcome::exhausted;
  apply(k, s.n, s.x.data(), s.rows, centre, s.w.data());
  ++products;
  double previous = INFINITY;
  while (true) {
    info = rayleigh_ritz(s, locked, top);
    if (info) return Outcome::exhausted;
    const double bound = tol * std::abs(static_cast<double>(s.theta[0]));
    const double worst = *std::max_element(s.residual.begin(), s.residual.begin() + top);
    if (relative_residual) *relative_residual = worst / std::abs(static_cast<double>(s.theta[0]));
    if (worst <= bound) return Outcome::converged;
    if (stop_on_stall && worst > 0.5 * previous) return Outcome::stalled;
    if (products >= max_products) return Outcome::exhausted;
    previous = worst;
    while (locked < top && s.residual[locked] <= bound) ++locked;
    products += chebyshev_filter(k, s, locked, degree, centre);
    info = orthonormalise_active(s, locked, centre);
    if (info) return Outcome::exhausted;
    apply(k, s.n, s.x.data() + locked * s.n, s.rows - locked, centre, s.w.data() + locked * s.n);
    ++products;
  }
}

// out (rows x n, float64) = in K32 for float64 rows `in`, rounded to float32 row by row after scaling each row to a
// largest entry of 1 (the refinement's rows are tiny), through the float32 buffers a32 and b32.
void apply_float(const PackedMatrix32& k32, long n, const double* in, long rows, bool centre, double* out,
                 float* a32, float* b32) {
  std::vector<double> scale(static_cast<size_t>(rows));
  for (long r = 0; r < rows; ++r) {
    double largest = 0.0;
    for (long i = 0; i < n; ++i) largest = std::max(largest, std::abs(in[r * n + i]));
    scale[r] = largest > 0.0 ? largest : 1.0;
    for (long i = 0; i < n; ++i) a32[r * n + i] = static_cast<float>(in[r * n + i] / scale[r]);
  }
  apply(k32, n, a32, rows, centre, b32);
  for (long r = 0; r < rows; ++r)
    for (long i = 0; i < n; ++i) out[r * n + i] = static_cast<double>(b32[r * n + i]) * scale[r];
}

// Work blocks of the mixed-precision refinement (rows x n each).
struct RefineBuffers {
  RefineBuffers(long n, long rows) : residual_rows(n * rows), ke(n * rows), a32(n * rows), b32(n * rows) {}
  std::vector<double> residual_rows, ke;
  std::vector<float> a32, b32;
};

// Mixed-precision refinement: Chebyshev-filtered subspace iteration in float64 whose products with K run in float32.
// With Ritz pairs (Theta, x) and residuals R = K x - x Theta, the filtered block is p(K) x = x p(Theta) + E, where
// E_0 = 0, E_1 = R / e and E_(d+1) = (2/e) (R p_d(Theta) + (K - c) E_d) - E_(d-1) (the Chebyshev recurrence
// minus its value on the Ritz values), and K p(K) x = w p(Theta) + K E. E is as small as R, so K E can run on the
// float32 copy of K: its error, ~eps32 ||K|| ||E||, sits ~1e-7 below the correction it computes. One float64
// product (the anchor w = K x) starts it; after that every image w is carried along exactly by the same linear
// algebra that transforms x (the Cholesky QR and the Rayleigh-Ritz rotations), so each cycle costs `degree`
// float32 products. Rows whose E is too large for tol (the guard rows, k and beyond, converge slowly) take float64
// images instead: their float32 rounding would reach the top pairs through the rotations (it made a kernel with
// lambda_max / lambda_k = 5500 diverge). x must already be good to ~1e-6 (the float32 phase); returns stalled
// when a cycle fails to halve the worst residual, and the caller continues in plain float64.
Outcome refine(const DenseMatrix<double>& k, const PackedMatrix32& k32, Subspace<double>& s,
               RefineBuffers& buffers, long top, long degree, bool centre, double tol, long max_products,
               long& products, int& info) {
  const long n = s.n, rows = s.rows;
  const int ni = static_cast<int>(n);
  double* residual_rows = buffers.residual_rows.data();
  double* ke = buffers.ke.data();
  float* a32 = buffers.a32.data();
  float* b32 = buffers.b32.data();
  std::vector<double> d0(static_cast<size_t>(rows)), d1(d0.size());
  if (centre) centre_rows(s.x.data(), rows, n);
  // The float32 phase's block is orthonormal to ~1e-7: two passes make it so to float64 rounding.
  if (!cholesky_qr(s.x.data(), static_cast<double*>(nullptr), rows, n, s.g.data(), 2)) return Outcome::stalled;
  apply(k, n, s.x.data(), rows, centre, s.w.data());
  ++products;
  long locked = 0;
  double previous = INFINITY;
  while (true) {
    info = rayleigh_ritz(s, locked, top);
    if (info) return Outcome::exhausted;
    const double bound = tol * std::abs(s.theta[0]);
    const double worst = *std::max_element(s.residual.begin(), s.residual.begin() + top);
    if (worst <= bound) return Outcome::converged;
    if (worst > 0.5 * previous || products >= max_products) return Outcome::stalled;
    previous = worst;
    while (locked < top && s.residual[locked] <= bound) ++locked;
    const double upper = s.theta[rows - 1];
    if (!(upper > 0.0)) return Outcome::stalled;
    const long m = rows - locked;
    const int mi = static_cast<int>(m), li = static_cast<int>(locked);
    double* x = s.x.data() + locked * n;
    double* w = s.w.data() + locked * n;
    double* e0 = s.y.data();
    double* e1 = s.z.data();
    const double half = upper / 2;  // centre and half-width of the damped interval [0, upper]
    // ke = K e for the active rows e, a float32 product. Its rounding along the top eigenvectors is amplified by
    // the filter's values there, relative to the row's own, by up to (rho_0 / rho_(top-1))^(degree-1) (rho_j the
    // filter's growth per degree at theta_j); where that times eps32 is not small (a wide spectrum), the
    // components of ke along the block X are replaced by the exact x_l . K e = w_l . e.
    const auto growth = [&](double theta) {
      const double t = (2.0 * theta - upper) / upper;
      return std::log(t + std::sqrt(std::max(t * t - 1.0, 0.0)));
    };
    const bool project = std::numeric_limits<float>::epsilon() *
                             std::exp((degree - 1) * (growth(s.theta[0]) - growth(s.theta[top - 1]))) >
                         kProjectAbove;
    const int li_all = static_cast<int>(rows);
    auto image = [&](const double* e) {
      apply_float(k32, n, e, m, centre, ke, a32, b32);
      ++products;
      if (!project) return;
      blas::gemm(false, true, mi, li_all, ni, 1.0, ke, ni, s.x.data(), ni, 0.0, s.rot.data(), li_all);
      blas::gemm(false, true, mi, li_all, ni, -1.0, e, ni, s.w.data(), ni, 1.0, s.rot.data(), li_all);
      blas::gemm(false, false, mi, ni, li_all, -1.0, s.rot.data(), li_all, s.x.data(), ni, 1.0, ke, ni);
    };
    for (long j = 0; j < m; ++j) {
      const double theta = s.theta[locked + j];
      d0[j] = 1.0;
      d1[j] = (theta - half) / half;
      for (long i = 0; i < n; ++i) {
        const double r = w[j * n + i] - theta * x[j * n + i];
        residual_rows[j * n + i] = r;
        e0[j * n + i] = 0.0;
        e1[j * n + i] = r / half;
      }
    }
    for (long d = 2; d <= degree; ++d) {
      image(e1);
      for (long j = 0; j < m; ++j) {
        const double theta = s.theta[locked + j];
        const double d2 = 2.0 * (theta - half) / half * d1[j] - d0[j];
        const double inv = 1.0 / std::abs(d2);  // |p_d(theta)| >= 1 at the top of the block; renormalise rows
        for (long i = 0; i < n; ++i) {
          const long at = j * n + i;
          const double e2 = 2.0 * (residual_rows[at] * d1[j] + ke[at] - half * e1[at]) / half - e0[at];
          e0[at] = e1[at] * inv;
          e1[at] = e2 * inv;
        }
        d0[j] = d1[j] * inv;
        d1[j] = d2 * inv;
      }
    }
    image(e1);
    // y = x p(Theta) + E and K y = w p(Theta) + K E, rows normalised so that |p(theta_j)| = 1. The float32 part
    // of an image errs by ~eps32 ||K|| ||E_j||: rows whose E is too large for tol (the guard rows, far from
    // converged, and any top row still moving) take a float64 product instead, from the first such row on.
    const double exact_above = 0.1 * tol / std::numeric_limits<float>::epsilon();
    long exact_from = std::max(top - locked, 0L);
    for (long j = 0; j < m; ++j) {
      double e2 = 0.0;
      for (long i = 0; i < n; ++i) {
        x[j * n + i] = x[j * n + i] * d1[j] + e1[j * n + i];
        w[j * n + i] = w[j * n + i] * d1[j] + ke[j * n + i];
        e2 += e1[j * n + i] * e1[j * n + i];
      }
      if (j < exact_from && std::sqrt(e2) > exact_above) exact_from = j;
    }
    if (exact_from < m) {
      apply(k, n, x + exact_from * n, m - exact_from, centre, w + exact_from * n);
      ++products;
    }
    // Orthonormalise x against the locked rows and among themselves and apply every step to w as well. The
    // block is orthonormal up to ~R, so one Cholesky QR pass leaves it orthonormal to float64 rounding.
    for (int twice = 0; twice < 2 && li > 0; ++twice) {
      blas::gemm(false, true, mi, li, ni, 1.0, x, ni, s.x.data(), ni, 0.0, s.g.data(), li);
      blas::gemm(false, false, mi, ni, li, -1.0, s.g.data(), li, s.x.data(), ni, 1.0, x, ni);
      blas::gemm(false, false, mi, ni, li, -1.0, s.g.data(), li, s.w.data(), ni, 1.0, w, ni);
    }
    if (!cholesky_qr(x, w, m, n, s.g.data(), 1)) return Outcome::stalled;
  }
}

// Per-thread work memory of the subspace solver, reused across the matrices of a batch (fresh pages for every
// matrix cost the kernel ~7% of the solve in zeroing).
template <typename T>
struct SubspaceWork {
  SubspaceWork(long n, long block, bool mixed)
      : s(n, block), s32(mixed ? n : 0, mixed ? block : 0), refine(mixed ? n : 0, mixed ? block : 0) {}
  Subspace<T> s;
  Subspace<float> s32;
  PackedMatrix32 k32;  // float32 copy of K (mixed only), packed for repeated products
  RefineBuffers refine;
};

// Top `top` eigenpairs of the PSD matrix k by Chebyshev-filtered subspace iteration on `block` vectors. With
// mixed (float64 only): float32 cycles on a float32 copy of K until float32 rounding stalls them (near 1e-7 of
// theta_max), then the mixed-precision refinement to tol, then (only if the refinement stalls) plain float64
// cycles. iterations = products with K (float32 and float64), -1 when the matrix was not PSD or did not converge
// in max_products and syevr solved it instead.
template <typename T>
int solve_subspace(const T* k, long n, long top, long block, long degree, bool centre, double tol, long max_products,
                   bool mixed, std::uint64_t seed, SubspaceWork<T>& work, T* w, T* v, int* iterations) {
  Subspace<T>& s = work.s;
  const DenseMatrix<T> dense{k, n};
  std::uint64_t state = seed;
  for (T& value : s.x) value = static_cast<T>(static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
  long products = 0;
  int info = 0;
  Outcome outcome = Outcome::stalled;
  if constexpr (std::is_same_v<T, double>) {
    if (mixed) {
      work.k32.pack(k, n);
      std::copy(s.x.begin(), s.x.end(), work.s32.x.begin());
      double reached = INFINITY;
      chebyshev_iterate<float>(work.k32, work.s32, top, degree, centre, std::max(tol, kMixedSwitch), true,
                               max_products / 2, products, info, &reached);
      if (info) return info;
      std::copy(work.s32.x.begin(), work.s32.x.end(), s.x.begin());
      // The refinement's products are only as accurate as E is small: from a float32 phase that stalled early
      // (an unusual spectrum), plain float64 cycles take over instead.
      if (reached <= kRefineStart) {
        outcome = refine(dense, work.k32, s, work.refine, top, degree, centre, tol, max_products, products, info);
        if (info) return info;
      }
    }
  }
  if (outcome == Outcome::converged && s.theta[block - 1] < -0.1 * std::abs(static_cast<double>(s.theta[top - 1])))
    outcome = Outcome::stalled;  // a negative Ritz value: let float64 cycles confirm it before falling back
  if (outcome != Outcome::converged) {
    outcome = chebyshev_iterate<T>(dense, s, top, degree, centre, tol, false, max_products, products, info);
    if (info) return info;
  }
  // A Gram matrix has no eigenvalue below ~0; a large negative one means K is not PSD and the filter (which
  // damps [0, theta_last] only) may have favoured it over some of the largest algebraic eigenvalues.
  const bool psd = s.theta[block - 1] >= -0.1 * std::abs(static_cast<double>(s.theta[top - 1]));
  if (outcome != Outcome::converged || !psd) {
    *iterations = -1;
    return solve_topk(k, n, top, centre, w, v);
  }
  // Locked pairs keep the order of the cycle that locked them; sort the top pairs descending once at the end.
  std::vector<long> order(static_cast<size_t>(top));
  for (long j = 0; j < top; ++j) order[j] = j;
  std::stable_sort(order.begin(), order.end(), [&](long a, long b) { return s.theta[a] > s.theta[b]; });
  for (long j = 0; j < top; ++j) w[j] = s.theta[order[j]];
  store_columns([&](long j) { return s.x.data() + order[j] * n; }, top, n, v);
  *iterations = static_cast<int>(products);
  return 0;
}

// One row of a tile pair in check_kernels: upper = K[r][c0:c0+width], lower = K[c0:c0+width][r] (from the
// transposed tile). Accumulates the maxima, the NaN/Inf detector and, with Align, ||K||_F^2, the row sums r and
// K yc (row r from `upper`, rows c from `lower` unless Diagonal).
template <bool Align, bool Diagonal, typename T>
inline void check_row(const T* upper, const T* lower, long width, const double* yc_cols, double yc_row,
                      double* row_sum_cols, double* k_yc_cols, double& largest, double& asymmetry, double& finite,
                      double& frob2, double* row_sum_row = nullptr, double* k_yc_row = nullptr) {
  double big = largest, asym = asymmetry, nan = 0.0, f2 = 0.0, s = 0.0, q = 0.0;
#pragma omp simd reduction(max : big, asym) reduction(+ : nan, f2, s, q)
  for (long c = 0; c < width; ++c) {
    const double u = upper[c], l = lower[c];
    nan += (u - u) + (l - l);  // NaN as soon as one entry is NaN or Inf
    big = std::max(big, std::max(std::abs(u), std::abs(l)));
    asym = std::max(asym, std::abs(u - l));
    if constexpr (Align) {
      s += u;
      q += u * yc_cols[c];
      f2 += Diagonal ? u * u : u * u + l * l;
      if constexpr (!Diagonal) {
        row_sum_cols[c] += l;
        k_yc_cols[c] += l * yc_row;
      }
    }
  }
  largest = big;
  asymmetry = asym;
  finite += nan;
  if constexpr (Align) {
    frob2 += f2;
    *row_sum_row += s;
    *k_yc_row += q;
  }
}

// out[b] = (max |K[b]|, max |K[b] - K[b]^T|, 1 if K[b] holds NaN/Inf else 0, alignment) in one tiled pass over
// each matrix. With labels (1 or B rows of N, centred when centre) the same pass also gives the kernel-target
// alignment yc^T K yc / (||yc||^2 ||K||_F), using ||H K H||_F^2 = ||K||_F^2 - (2/N) |r|^2 + (1^T r)^2 / N^2 (r the
// row sums) so no centred copy of K is made; without labels out[b, 3] = NaN.
template <typename T>
void check_kernels(const T* k, long batch, long n, const T* labels, long label_rows, bool centre, double* out,
                   int n_threads) {
  n_threads = use_threads(n_threads);
  constexpr long kTile = 64;
  const long tiles = (n + kTile - 1) / kTile;
  const bool align = labels != nullptr;
  std::vector<double> yc(static_cast<size_t>(n), 0.0);
  std::vector<double> partial(align ? static_cast<size_t>(2 * n * n_threads) : 0);  // per thread: r, K yc
  for (long b = 0; b < batch; ++b) {
    const T* kb = k + b * n * n;
    if (align) {
      const T* y = labels + (label_rows > 1 ? b * n : 0);
      double mean = 0.0;
      for (long i = 0; i < n; ++i) mean += y[i];
      mean = centre ? mean / n : 0.0;
      for (long i = 0; i < n; ++i) yc[i] = y[i] - mean;
      std::fill(partial.begin(), partial.end(), 0.0);
    }
    double largest = 0.0, asymmetry = 0.0, frob2 = 0.0, finite = 0.0;
#pragma omp parallel for schedule(dynamic, 1) reduction(max : largest, asymmetry) reduction(+ : frob2, finite)
    for (long ti = 0; ti < tiles; ++ti) {
      double* row_sum = align ? partial.data() + 2 * n * omp_get_thread_num() : nullptr;
      double* k_yc = align ? row_sum + n : nullptr;
      T mirror[kTile * kTile];  // mirror[r][c] = K[c][r]: the lower tile, transposed once so both sides stream
      const long r0 = ti * kTile, r1 = std::min(n, r0 + kTile);
      for (long tj = ti; tj < tiles; ++tj) {
        const long c0 = tj * kTile, c1 = std::min(n, c0 + kTile), width = c1 - c0;
        for (long c = c0; c < c1; ++c)
          for (long r = r0; r < r1; ++r) mirror[(r - r0) * kTile + (c - c0)] = kb[c * n + r];
        for (long r = r0; r < r1; ++r) {
          const T* upper = kb + r * n + c0;
          const T* lower = mirror + (r - r0) * kTile;
          if (!align)
            check_row<false, false>(upper, lower, width, nullptr, 0.0, nullptr, nullptr, largest, asymmetry, finite,
                                    frob2);
          else if (ti == tj)  // a diagonal tile meets each of its elements once as `upper`
            check_row<true, true>(upper, lower, width, yc.data() + c0, yc[r], row_sum + c0, k_yc + c0, largest,
                                  asymmetry, finite, frob2, row_sum + r, k_yc + r);
          else
            check_row<true, false>(upper, lower, width, yc.data() + c0, yc[r], row_sum + c0, k_yc + c0, largest,
                                   asymmetry, finite, frob2, row_sum + r, k_yc + r);
        }
      }
    }
    const int bad = std::isnan(finite) ? 1 : 0;
    out[4 * b] = largest;
    out[4 * b + 1] = asymmetry;
    out[4 * b + 2] = bad;
    out[4 * b + 3] = NAN;
    if (!align) continue;
    double quad = 0.0, total = 0.0, squares = 0.0, norm2 = 0.0;
    for (long i = 0; i < n; ++i) {
      double s = 0.0, q = 0.0;
      for (int t = 0; t < n_threads; ++t) {
        s += partial[2 * n * t + i];
        q += partial[2 * n * t + n + i];
      }
      quad += yc[i] * q;
      total += s;
      squares += s * s;
      norm2 += yc[i] * yc[i];
    }
    if (centre) frob2 += -2.0 / n * squares + total * total / (static_cast<double>(n) * n);
    out[4 * b + 3] = quad / (norm2 * std::sqrt(std::max(frob2, 0.0)));
  }
}

}  // namespace
}  // namespace fastdyn

FASTDYN_BINDINGS(kpca) {
  namespace py = pybind11;
  using fastdyn::Buffer, fastdyn::Call, fastdyn::Dtype;
  // kpca_check refuses NaN/Inf before any solver runs; LAPACKE's own check would scan every N x N copy again.
  scipy_LAPACKE_set_nancheck(0);
  m.def(
      "kpca_check",
      [](Buffer k, std::optional<Buffer> labels, Buffer out, bool centre, int threads) {
        Call call("kpca_check", fastdyn::kDLCPU);
        call.check("K", k, {"B", "N", "N"});
        const bool align = call.check("labels", labels, {"L", "N"});
        call.check("out", out, {"B", "4"}, Dtype::kFloat64);
        const long batch = call.size("B"), n = call.size("N"), label_rows = align ? call.size("L") : 0;
        if (align && label_rows != 1 && label_rows != batch)
          throw py::value_error("kpca_check: labels must have 1 or B = " + std::to_string(batch) + " rows, got " +
                                std::to_string(label_rows));
        call.dispatch([&](auto zero) {
          using T = decltype(zero);
          py::gil_scoped_release release;
          fastdyn::check_kernels<T>(k.data<T>(), batch, n, align ? labels->data<T>() : nullptr, label_rows, centre,
                                    out.data<double>(), threads);
        });
      },
      "Per matrix of K (B, N, N): out (B, 4) float64 = (max|K|, max|K - K^T|, has NaN/Inf, alignment with the "
      "labels (1 or B, N) of K's dtype, centred when centre; NaN without labels).",
      py::arg("K"), py::arg("labels"), py::arg("out"), py::kw_only(), py::arg("center"), py::arg("threads"));
  // The two direct LAPACK solvers share one signature: K (B, N, N) -> w (B, k), V (B, N, k); `work` is the bytes
  // one matrix's solve holds (over_batch runs as many at once as fit).
  const auto bind_direct = [&m](const char* name, const char* what, auto solve, auto work, const char* doc) {
    m.def(
        name,
        [name, what, solve, work](Buffer k, Buffer w, Buffer v, bool centre, int threads) {
          Call call(name, fastdyn::kDLCPU);
          call.check("K", k, {"B", "N", "N"});
          call.check("w", w, {"B", "k"});
          call.check("V", v, {"B", "N", "k"});
          const long batch = call.size("B"), n = call.size("N"), top = call.size("k");
          call.dispatch([&](auto zero) {
            using T = decltype(zero);
            py::gil_scoped_release release;
            fastdyn::over_batch(batch, work(n, top) * sizeof(T), threads, what, [&](long b) {
              return solve(k.data<T>() + b * n * n, n, top, centre, w.data<T>() + b * top, v.data<T>() + b * top * n);
            });
          });
        },
        doc, py::arg("K"), py::arg("w"), py::arg("V"), py::kw_only(), py::arg("center"), py::arg("threads"));
  };
  bind_direct(
      "kpca_full", "kpca full (syevd)", [](auto... args) { return fastdyn::solve_full(args...); },
      [](long n, long) { return 2.0 * n * n; },
      "Top k eigenpairs of each symmetric K[b] (B, N, N) by LAPACK syevd: w (B, k), V (B, N, k).");
  bind_direct(
      "kpca_topk", "kpca topk (syevr)", [](auto... args) { return fastdyn::solve_topk(args...); },
      [](long n, long top) { return 1.0 * (n * n + n * top); },
      "Top k eigenpairs of each symmetric K[b] (B, N, N) by LAPACK syevr with an index range: w (B, k), V (B, N, k).");
  m.def(
      "kpca_subspace",
      [](Buffer k, Buffer w, Buffer v, Buffer iterations, long block, long degree, bool centre, double tol,
         long max_products, bool mixed, std::uint64_t seed, int threads) {
        Call call("kpca_subspace", fastdyn::kDLCPU);
        call.check("K", k, {"B", "N", "N"});
        call.check("w", w, {"B", "k"});
        call.check("V", v, {"B", "N", "k"});
        call.check("iterations", iterations, {"B"}, Dtype::kInt32);
        const long batch = call.size("B"), n = call.size("N"), top = call.size("k");
        call.dispatch([&](auto zero) {
          using T = decltype(zero);
          py::gil_scoped_release release;
          const double work = 4.0 * n * block * sizeof(T) + (mixed ? n * (n + 4.0 * block) * sizeof(float) : 0.0);
          std::vector<std::unique_ptr<fastdyn::SubspaceWork<T>>> works(
              static_cast<size_t>(std::max(1, fastdyn::use_threads(threads))));
          fastdyn::over_batch(batch, work, threads, "kpca subspace", [&](long b) {
            auto& mine = works[static_cast<size_t>(omp_get_thread_num())];
            if (!mine) mine = std::make_unique<fastdyn::SubspaceWork<T>>(n, block, mixed);
            return fastdyn::solve_subspace<T>(k.data<T>() + b * n * n, n, top, block, degree, centre, tol,
                                              max_products, mixed, seed + static_cast<std::uint64_t>(b), *mine,
                                              w.data<T>() + b * top, v.data<T>() + b * top * n,
                                              iterations.data<int>() + b);
          }, mixed && fastdyn::PackedMatrix32::kOwnThreads);
        });
      },
      "Top k eigenpairs of each PSD K[b] (B, N, N) by Chebyshev-filtered subspace iteration on `block` >= k vectors "
      "(filter `degree`, residual <= tol * |lambda_max|, float32 first when `mixed`): w (B, k), V (B, N, k); "
      "iterations (B,) int32 products with K, -1 where it fell back to syevr.",
      py::arg("K"), py::arg("w"), py::arg("V"), py::arg("iterations"), py::kw_only(), py::arg("block"),
      py::arg("degree"), py::arg("center"), py::arg("tol"), py::arg("max_products"), py::arg("mixed"), py::arg("seed"),
      py::arg("threads"));
}
