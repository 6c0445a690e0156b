// Batched symmetric eigensolvers for kernel PCA (fastdyn.kpca), over a batch K (B, N, N), row-major.
// Every solver writes the top k eigenpairs in descending order: w (B, k) and V (B, k, N), row j of V[b] being the
// unit eigenvector of w[b, j] (Python transposes to (B, N, k) and fixes the signs).
//   full:     LAPACK syevd (divide and conquer), all pairs, top k kept.
//   topk:     LAPACK syevr with an index range (MRRR): the tridiagonal reduction is still O(N^3) but only the k
//             wanted eigenvectors are computed and back-transformed.
//   subspace: restarted block Krylov (block Lanczos with full reorthogonalisation, Rayleigh-Ritz) on blocks of
//             l >= k vectors; each product with K is one (l x N) x (N x N) GEMM, so it runs at BLAS-3 speed,
//             never copies K (memory ~ 4 l steps N) and optionally centres K implicitly (H K H, H = I - 11^T/N).
//             It assumes K positive semi-definite (a Gram matrix): a matrix not converged after max_iter
//             products, or showing a large negative eigenvalue, is solved again with syevr (iterations = -1).
// Batch parallelism: matrices run concurrently on OpenMP threads with single-threaded OpenBLAS when the batch has
// several matrices and their workspaces fit in kParallelWorkBytes; otherwise one matrix at a time with threaded BLAS.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/blas.hpp"
#include "cpu/lapack.hpp"
#include "cpu/threads.hpp"
#include "registry.hpp"

namespace fastdyn {
namespace {

constexpr double kParallelWorkBytes = 2.0 * (1 << 30);

// Run body(b) for b in [0, B): concurrently with 1-thread BLAS, or sequentially with n_threads-thread BLAS.
// body returns a LAPACK info code; the first non-zero one is raised after the loop.
template <typename Body>
void over_batch(long batch, double work_bytes, int n_threads, const char* what, Body&& body) {
  n_threads = use_threads(n_threads);
  std::vector<int> info(static_cast<size_t>(batch), 0);
  const bool concurrent = batch > 1 && n_threads > 1 && work_bytes * std::min<long>(batch, n_threads) <= kParallelWorkBytes;
  if (concurrent) {
    scipy_openblas_set_num_threads(1);
#pragma omp parallel for schedule(dynamic, 1)
    for (long b = 0; b < batch; ++b) info[b] = body(b);
    scipy_openblas_set_num_threads(n_threads);
  } else {
    for (long b = 0; b < batch; ++b) info[b] = body(b);
  }
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

// LAPACK's ascending pairs (w_asc, column-major vectors z with leading dim n) -> top k descending rows of out.
template <typename T>
void write_descending(const T* w_asc, const T* z, long n, long found, long k, T* w_out, T* v_out) {
  for (long j = 0; j < k; ++j) {
    const long src = found - 1 - j;
    w_out[j] = w_asc[src];
    std::copy(z + src * n, z + (src + 1) * n, v_out + j * n);
  }
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

// rows (b x n) -= (rows basis^T) basis for the orthonormal rows basis (m x n): remove span(basis), twice
// ("twice is enough"), then orthonormalise; a second pass after the QR keeps the block orthogonal to the basis
// even when the block was nearly rank deficient.
// With centre, the rows are also kept orthogonal to the constant vector (in the range of H), where H K H acts.
template <typename T>
int extend_basis(T* rows, int b, const T* basis, int m, int n, bool centre, T* coef, T* tau) {
  for (int pass = 0; pass < 2; ++pass) {
    for (int twice = 0; twice < 2 && m > 0; ++twice) {
      blas::gemm(false, true, b, m, n, T(1), rows, n, basis, n, T(0), coef, m);
      blas::gemm(false, false, b, n, m, T(-1), coef, m, basis, n, T(1), rows, n);
    }
    if (centre) centre_rows(rows, b, n);
    const int info = lapack::orthonormalise(n, b, rows, n, tau);
    if (info) return info;
  }
  return 0;
}

// Restarted block Krylov (block Lanczos with full reorthogonalisation): each cycle builds the orthonormal basis
// U = [Q, K Q, ..., K^(steps-1) Q] block by block (one GEMM with K per block), keeps W = K U, does Rayleigh-Ritz
// with H = U W^T, and restarts from the top `block` Ritz vectors, whose images K V are already known. The Krylov
// polynomial separates clustered eigenvalues far better than powers of K (plain subspace iteration).
// Returns the LAPACK info, sets iterations to the number of products with K (-1: fell back to syevr).
template <typename T>
int solve_subspace(const T* k, long n, long top, long block, long steps, bool centre, double tol, long max_iter,
                   std::uint64_t seed, T* w, T* v, int* iterations) {
  const int ni = static_cast<int>(n), b = static_cast<int>(block);
  const long width = block * steps;  // basis size
  const int m = static_cast<int>(width);
  std::vector<T> u(static_cast<size_t>(width * n)), kw(u.size()), ritz_vec(u.size()), ritz_img(u.size());
  std::vector<T> h(static_cast<size_t>(width * width)), rot(h.size()), theta(static_cast<size_t>(width));
  std::vector<T> coef(static_cast<size_t>(block * width)), tau(static_cast<size_t>(block));
  std::uint64_t state = seed;
  for (long i = 0; i < block * n; ++i)
    u[i] = static_cast<T>(static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
  int info = extend_basis(u.data(), b, u.data(), 0, ni, centre, coef.data(), tau.data());
  if (info) return info;
  bool have_image = false;  // after a restart, kw[0:block] = K u[0:block] is known
  long products = 0;
  while (products < max_iter) {
    for (long j = 0; j < steps; ++j) {
      T* uj = u.data() + j * block * n;
      T* wj = kw.data() + j * block * n;
      if (!(j == 0 && have_image)) {
        blas::gemm(false, false, b, ni, ni, T(1), uj, ni, k, ni, T(0), wj, ni);  // rows: K u_i (K symmetric)
        if (centre) centre_rows(wj, block, n);
        ++products;
      }
      if (j + 1 < steps) {
        T* next = uj + block * n;
        std::copy(wj, wj + block * n, next);
        info = extend_basis(next, b, u.data(), static_cast<int>((j + 1) * block), ni, centre, coef.data(),
                            tau.data());
        if (info) return info;
      }
    }
    blas::gemm(false, true, m, m, ni, T(1), u.data(), ni, kw.data(), ni, T(0), h.data(), m);
    for (long i = 0; i < width; ++i)
      for (long j = 0; j < i; ++j) h[i * width + j] = h[j * width + i] = (h[i * width + j] + h[j * width + i]) / 2;
    info = lapack::syevd(m, h.data(), m, theta.data());
    if (info) return info;
    // rot (row-major): row j = the eigenvector of the j-th largest Ritz value; ritz_vec = rot U, ritz_img = rot W.
    for (long j = 0; j < width; ++j)
      std::copy(h.data() + (width - 1 - j) * width, h.data() + (width - j) * width, rot.data() + j * width);
    std::reverse(theta.begin(), theta.end());
    blas::gemm(false, false, b, ni, m, T(1), rot.data(), m, u.data(), ni, T(0), ritz_vec.data(), ni);
    blas::gemm(false, false, b, ni, m, T(1), rot.data(), m, kw.data(), ni, T(0), ritz_img.data(), ni);
    double scale = 0.0;
    for (long j = 0; j < width; ++j) scale = std::max(scale, std::abs(static_cast<double>(theta[j])));
    double worst = 0.0;
    for (long j = 0; j < top; ++j) {
      double r2 = 0.0;
      for (long i = 0; i < n; ++i) {
        const double r = static_cast<double>(ritz_img[j * n + i]) - theta[j] * static_cast<double>(ritz_vec[j * n + i]);
        r2 += r * r;
      }
      worst = std::max(worst, std::sqrt(r2));
    }
    if (worst <= tol * scale) {
      // A Gram matrix has no eigenvalue below ~0; a large negative one means K is not PSD and the Krylov space
      // may have favoured it over some of the largest algebraic eigenvalues.
      if (theta[width - 1] < -0.1 * std::abs(static_cast<double>(theta[top - 1]))) break;
      std::copy(theta.begin(), theta.begin() + top, w);
      std::copy(ritz_vec.begin(), ritz_vec.begin() + top * n, v);
      *iterations = static_cast<int>(products);
      return 0;
    }
    // Restart from the top `block` Ritz pairs (orthonormal rows, images known).
    std::copy(ritz_vec.begin(), ritz_vec.begin() + block * n, u.begin());
    std::copy(ritz_img.begin(), ritz_img.begin() + block * n, kw.begin());
    have_image = true;
  }
  *iterations = -1;
  return solve_topk(k, n, top, centre, w, v);
}

// out[b] = (max |K[b]|, max |K[b] - K[b]^T|, 1 if K[b] holds NaN/Inf else 0), in one tiled pass over each matrix.
template <typename T>
void check_kernels(const T* k, long batch, long n, double* out, int n_threads) {
  use_threads(n_threads);
  constexpr long kTile = 64;
  const long tiles = (n + kTile - 1) / kTile;
  for (long b = 0; b < batch; ++b) {
    const T* kb = k + b * n * n;
    double largest = 0.0, asymmetry = 0.0;
    int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(max : largest, asymmetry, bad)
    for (long ti = 0; ti < tiles; ++ti)
      for (long tj = ti; tj < tiles; ++tj)
        for (long r = ti * kTile; r < std::min(n, (ti + 1) * kTile); ++r)
          for (long c = tj * kTile; c < std::min(n, (tj + 1) * kTile); ++c) {
            const double upper = kb[r * n + c], lower = kb[c * n + r];
            bad = std::max(bad, static_cast<int>(!std::isfinite(upper) || !std::isfinite(lower)));
            largest = std::max(largest, std::max(std::abs(upper), std::abs(lower)));
            asymmetry = std::max(asymmetry, std::abs(upper - lower));
          }
    out[3 * b] = largest;
    out[3 * b + 1] = asymmetry;
    out[3 * b + 2] = bad;
  }
}

template <typename T>
void bind_solvers(pybind11::module_& m, const std::string& suffix) {
  m.def(
      ("kpca_check_" + suffix).c_str(),
      [](std::uintptr_t k, long batch, long n, std::uintptr_t out, int n_threads) {
        pybind11::gil_scoped_release release;
        check_kernels<T>(ptr<const T>(k), batch, n, ptr<double>(out), n_threads);
      },
      "Per matrix of K (B, N, N): out (B, 3) float64 = (max|K|, max|K - K^T|, has NaN/Inf).");
  m.def(
      ("kpca_full_" + suffix).c_str(),
      [](std::uintptr_t k, long batch, long n, long top, bool centre, std::uintptr_t w, std::uintptr_t v,
         int n_threads) {
        pybind11::gil_scoped_release release;
        over_batch(batch, 2.0 * n * n * sizeof(T), n_threads, "kpca full (syevd)", [&](long b) {
          return solve_full<T>(ptr<const T>(k) + b * n * n, n, top, centre, ptr<T>(w) + b * top,
                               ptr<T>(v) + b * top * n);
        });
      },
      "Top `top` eigenpairs of each symmetric K[b] (B, N, N) by LAPACK syevd: w (B, top), V (B, top, N).");
  m.def(
      ("kpca_topk_" + suffix).c_str(),
      [](std::uintptr_t k, long batch, long n, long top, bool centre, std::uintptr_t w, std::uintptr_t v,
         int n_threads) {
        pybind11::gil_scoped_release release;
        over_batch(batch, 1.0 * (n * n + n * top) * sizeof(T), n_threads, "kpca topk (syevr)", [&](long b) {
          return solve_topk<T>(ptr<const T>(k) + b * n * n, n, top, centre, ptr<T>(w) + b * top,
                               ptr<T>(v) + b * top * n);
        });
      },
      "Top `top` eigenpairs of each symmetric K[b] by LAPACK syevr with an index range.");
  m.def(
      ("kpca_subspace_" + suffix).c_str(),
      [](std::uintptr_t k, long batch, long n, long top, long block, long steps, bool centre, double tol,
         long max_iter, std::uint64_t seed, std::uintptr_t w, std::uintptr_t v, std::uintptr_t iterations,
         int n_threads) {
        pybind11::gil_scoped_release release;
        over_batch(batch, 4.0 * n * block * steps * sizeof(T), n_threads, "kpca subspace", [&](long b) {
          return solve_subspace<T>(ptr<const T>(k) + b * n * n, n, top, block, steps, centre, tol, max_iter,
                                   seed + static_cast<std::uint64_t>(b), ptr<T>(w) + b * top,
                                   ptr<T>(v) + b * top * n, ptr<int>(iterations) + b);
        });
      },
      "Top `top` eigenpairs of each PSD K[b] by restarted block Krylov (block >= top vectors, `steps` blocks per "
      "cycle, residual <= tol * |lambda_max|); iterations (B,) int32 products with K, -1 where it fell back to syevr.");
}

}  // namespace
}  // namespace fastdyn

FASTDYN_BINDINGS(kpca) {
  fastdyn::bind_solvers<float>(m, "f32");
  fastdyn::bind_solvers<double>(m, "f64");
}
