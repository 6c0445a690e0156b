// Typed wrappers over the LAPACKE interface of the OpenBLAS build shipped by scipy-openblas32 (symbols prefixed
// scipy_). All calls are column-major; a row-major (rows, n) block with leading dimension n is the column-major
// (n, rows) matrix, and a symmetric matrix reads the same in both layouts.
#pragma once
#include <lapacke.h>

namespace fastdyn::lapack {

// All eigenpairs of the symmetric n x n matrix a (overwritten by the eigenvectors, column j = pair j), ascending.
inline int syevd(int n, float* a, int lda, float* w) {
  return scipy_LAPACKE_ssyevd(LAPACK_COL_MAJOR, 'V', 'L', n, a, lda, w);
}
inline int syevd(int n, double* a, int lda, double* w) {
  return scipy_LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'L', n, a, lda, w);
}

// Eigenpairs il..iu (1-based, ascending) of the symmetric matrix a (destroyed): MRRR, only the requested vectors.
inline int syevr_index(int n, float* a, int lda, int il, int iu, int* found, float* w, float* z, int ldz,
                       int* isuppz) {
  return scipy_LAPACKE_ssyevr(LAPACK_COL_MAJOR, 'V', 'I', 'L', n, a, lda, 0.f, 0.f, il, iu, 0.f, found, w, z, ldz,
                              isuppz);
}
inline int syevr_index(int n, double* a, int lda, int il, int iu, int* found, double* w, double* z, int ldz,
                       int* isuppz) {
  return scipy_LAPACKE_dsyevr(LAPACK_COL_MAJOR, 'V', 'I', 'L', n, a, lda, 0.0, 0.0, il, iu, 0.0, found, w, z, ldz,
                              isuppz);
}

// Orthonormal basis (in place) of the m x n column-major matrix a (m >= n): Householder QR then Q explicitly.
inline int orthonormalise(int m, int n, float* a, int lda, float* tau) {
  int info = scipy_LAPACKE_sgeqrf(LAPACK_COL_MAJOR, m, n, a, lda, tau);
  return info ? info : scipy_LAPACKE_sorgqr(LAPACK_COL_MAJOR, m, n, n, a, lda, tau);
}
inline int orthonormalise(int m, int n, double* a, int lda, double* tau) {
  int info = scipy_LAPACKE_dgeqrf(LAPACK_COL_MAJOR, m, n, a, lda, tau);
  return info ? info : scipy_LAPACKE_dorgqr(LAPACK_COL_MAJOR, m, n, n, a, lda, tau);
}

// Cholesky factor L (lower triangle, in place) of the symmetric positive definite row-major n x n matrix a.
inline int potrf_lower(int n, float* a, int lda) {
  return scipy_LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'L', n, a, lda);
}
inline int potrf_lower(int n, double* a, int lda) {
  return scipy_LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, a, lda);
}

}  // namespace fastdyn::lapack
